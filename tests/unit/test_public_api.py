"""Keeps each package's ``__all__`` honest: every name listed exists, and nothing public
is left out of it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import dockyard

PACKAGES = sorted(
    m.name
    for m in pkgutil.iter_modules(dockyard.__path__, "dockyard.")
    if m.ispkg and not m.name.endswith("_gen")
)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_existing_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        public = [n for n in vars(module) if not n.startswith("_") and n != "annotations"]
        assert not [n for n in public if not isinstance(getattr(module, n), type(module))], (
            f"{name} exposes public names without __all__"
        )
        return
    assert len(set(exported)) == len(exported)
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ lists missing {item}"
