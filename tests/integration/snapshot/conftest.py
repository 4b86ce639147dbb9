from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.snapshot.mount import mountpoints_under


@pytest.fixture(autouse=True)
def _root_and_no_leaked_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Runs as root only; every temporary mount point lives under ``tmp_path``, and none
    may be left mounted there afterwards (other processes' mounts are not our concern)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts)")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    leaked = mountpoints_under(tmp_path)
    assert not leaked, f"mounts left behind: {leaked}"
