from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.snapshot.mount import mountpoints_under


@pytest.fixture(autouse=True)
def _root_and_no_leaked_mounts(tmp_path: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts)")
    before = set(mountpoints_under(Path("/")))
    yield
    leaked = [p for p in mountpoints_under(Path("/")) if p not in before]
    assert not leaked, f"mounts left behind: {leaked}"
