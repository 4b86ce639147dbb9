"""A cache manager over a native snapshotter in a temporary state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.cache import CacheManager
from dockyard.snapshot.mount import mountpoints_under


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def manager(state_dir: Path, tmp_path: Path) -> AsyncIterator[CacheManager]:
    m = await CacheManager.open(state_dir, snapshotter="native")
    try:
        yield m
    finally:
        await m.close()
    assert not mountpoints_under(tmp_path), "mounts left behind"
