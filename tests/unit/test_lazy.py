"""``dockyard._lazy``: the packages' lazy exports."""

from __future__ import annotations

import sys
import types

import pytest

from dockyard._lazy import lazy_getattr


def test_loads_on_first_use_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("lazytest_pkg_h")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "lazytest_pkg_h", package)
    calls: list[str] = []
    impl = types.ModuleType("lazytest_pkg_h._impl")
    impl.Thing = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lazytest_pkg_h._impl", impl)
    getattr_ = lazy_getattr("lazytest_pkg_h", {"Thing": "._impl"})

    def counting(name: str) -> object:
        calls.append(name)
        return getattr_(name)

    package.__getattr__ = counting  # type: ignore[method-assign]
    assert package.Thing is impl.Thing
    assert package.Thing is impl.Thing
    assert calls == ["Thing"]  # the second access found it in the namespace
    with pytest.raises(AttributeError, match="'lazytest_pkg_h' has no attribute 'Other'"):
        package.Other  # noqa: B018


def test_a_package_loads_its_lazy_parts_on_use() -> None:
    import dockyard.snapshot

    value = dockyard.snapshot.copy_tree
    assert value is sys.modules["dockyard.snapshot._copy"].copy_tree
    assert vars(dockyard.snapshot)["copy_tree"] is value
