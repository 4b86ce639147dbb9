from __future__ import annotations

from pathlib import Path

from dockyard.engine._engine import _has_entries
from dockyard.engine._executor import LazyExecutor


def test_stale_only_when_a_bundle_or_runtime_state_is_left(tmp_path: Path) -> None:
    executor = LazyExecutor(tmp_path / "executor", runtime="crun", binary=None)
    assert not executor.stale()  # nothing there yet
    (tmp_path / "executor" / "bundles").mkdir(parents=True)
    (tmp_path / "executor" / "runtime" / "crun").mkdir(parents=True)
    assert not executor.stale()  # empty directories: a clean exit
    (tmp_path / "executor" / "runtime" / "crun" / "c1").mkdir()
    assert executor.stale()
    (tmp_path / "executor" / "runtime" / "crun" / "c1").rmdir()
    (tmp_path / "executor" / "bundles" / "b1").mkdir()
    assert executor.stale()


def test_has_entries(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    assert not _has_entries(scratch)
    scratch.mkdir()
    assert not _has_entries(scratch)
    (scratch / "client-files-x").mkdir()
    assert _has_entries(scratch)
    plain = tmp_path / "file"
    plain.write_text("x")
    assert _has_entries(plain)  # not a directory: the removal is left to say so
