"""Where snapshot directories go: the root is marked as a top of directory hierarchies
(ext4 spreads new snapshot trees over block groups) and a new store's ids start at
random, so a state directory made right after another was deleted does not allocate its
files among the inodes that deletion freed."""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

from dockyard.snapshot import new_snapshotter
from dockyard.snapshot._base import _FS_IOC_GETFLAGS, _FS_TOPDIR_FL, mark_top_directory
from dockyard.snapshot._metadata import FIRST_IDS, MetaStore
from dockyard.snapshot.types import Kind


def _topdir(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        return bool(flags[0] & _FS_TOPDIR_FL)
    except OSError:
        return False
    finally:
        os.close(fd)


def test_mark_top_directory_says_whether_it_could(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    assert mark_top_directory(tmp_path / "d") == _topdir(tmp_path / "d")
    assert mark_top_directory(tmp_path / "d") == _topdir(tmp_path / "d")  # already marked
    assert not mark_top_directory(tmp_path / "missing")


def test_a_snapshotter_root_is_a_top_directory(tmp_path: Path) -> None:
    (tmp_path / "probe").mkdir()
    supported = mark_top_directory(tmp_path / "probe")
    sn = new_snapshotter(tmp_path, "native")
    try:
        assert _topdir(sn.root) == supported
    finally:
        sn.close()


def test_a_new_store_starts_its_ids_at_random_and_keeps_counting(tmp_path: Path) -> None:
    firsts = []
    for n in range(3):
        store = MetaStore(tmp_path / f"s{n}" / "metadata.db")
        first = store.create("a", Kind.COMMITTED, None).id
        assert first in FIRST_IDS
        assert store.create("b", Kind.ACTIVE, "a").id == first + 1
        store.remove("b")
        store.close()
        firsts.append(first)
        # reopened: the sequence goes on (ids are never reused), no new start
        store = MetaStore(tmp_path / f"s{n}" / "metadata.db")
        assert store.create("c", Kind.COMMITTED, None).id == first + 2
        store.close()
    assert len(set(firsts)) > 1
