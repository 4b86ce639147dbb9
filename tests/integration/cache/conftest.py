"""Cache managers over real snapshotters (overlayfs and native), as root."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard.cache import CacheManager
from dockyard.snapshot.mount import mountpoints_under
from tests.integration.conftest import need_root


@pytest.fixture(autouse=True)
def _no_leaked_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Temporary mount points live under ``tmp_path``; none may be left mounted there."""
    need_root()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    leaked = mountpoints_under(tmp_path)
    assert not leaked, f"mounts left behind: {leaked}"


@pytest.fixture(params=["overlayfs", "native"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def manager(tmp_path: Path, kind: str) -> AsyncIterator[CacheManager]:
    m = await CacheManager.open(tmp_path / "state", snapshotter=kind)  # type: ignore[arg-type]
    assert m.snapshotter.name == kind
    try:
        yield m
    finally:
        await m.close()
