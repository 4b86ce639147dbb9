"""``BaseSnapshotter`` is abstract: each backend implements what it leaves open."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.snapshot import BaseSnapshotter, NativeSnapshotter, OverlaySnapshotter


def test_the_backends_implement_every_abstract_method() -> None:
    assert BaseSnapshotter.__abstractmethods__ == {
        "_fill_computed",
        "_mounts",
        "apply",
        "diff",
        "view_mounts",
    }
    assert not NativeSnapshotter.__abstractmethods__
    assert not OverlaySnapshotter.__abstractmethods__


def test_the_base_cannot_be_made(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="abstract"):
        BaseSnapshotter(tmp_path)  # type: ignore[abstract]
