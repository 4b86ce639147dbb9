"""Syncs into new overlayfs layers (``SyncBase``): each sync writes only its changes into
an empty upper directory over the previous layers, and the mounted stack shows exactly
the client's tree — deletions as whiteouts, type changes covering the old entry, hard
links kept — over every transport. Nothing is opened when nothing changed."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from dockyard.core import PathEscapeError, SessionError
from dockyard.session import (
    FileStat,
    Session,
    StatKey,
    SyncBase,
    SyncRequest,
    SyncResult,
    receive,
    stat_key,
)
from dockyard.snapshot.mount import mounted
from dockyard.snapshot.types import Mount
from tests.unit.session.harness import Harness
from tests.unit.session.test_receive import FakeSource, f
from tests.unit.session.trees import snapshot, write


class Stack:
    """Layer directories, bottom first, as a local source stacks them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layers: list[Path] = []
        self.base: dict[str, StatKey] = {}
        self.opened = 0

    def sync_base(self) -> SyncBase:
        async def open_layer() -> tuple[Path, bool]:
            self.opened += 1
            layer = self.root / f"layer{len(self.layers)}"
            layer.mkdir(parents=True)
            self.layers.append(layer)
            return layer, len(self.layers) > 1

        return SyncBase(entries=dict(self.base), open=open_layer)

    def done(self, result: SyncResult) -> None:
        self.base = {e.path: stat_key(e) for e in result.tree}

    def merged(self, *, owners: bool = False) -> dict[str, tuple[object, ...]]:
        lowers = ":".join(str(p) for p in reversed(self.layers))
        if len(self.layers) == 1:
            return snapshot(self.layers[0], owners=owners)
        spec = Mount(type="overlay", source="overlay", options=(f"lowerdir={lowers}", "ro"))
        with mounted([spec], parent=self.root) as root:
            return snapshot(root, owners=owners)

    def upper_files(self) -> list[str]:
        top = self.layers[-1]
        return sorted(
            os.path.relpath(os.path.join(d, n), top)
            for d, _, names in os.walk(top)
            for n in names
            if not stat.S_ISDIR(os.lstat(os.path.join(d, n)).st_mode)
        )


def _whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _context(src: Path) -> None:
    write(src, "app/main.py", "print('hi')\n")
    write(src, "app/pkg/mod.py", "X = 1\n")
    write(src, "app/pkg/data/blob.bin", os.urandom(4096))
    write(src, "docs/readme.md", "readme\n")
    write(src, "run.sh", "#!/bin/sh\n", mode=0o755)
    (src / "empty").mkdir()
    os.symlink("/etc/passwd", src / "passwd")
    os.symlink("../../../../etc", src / "up")
    os.symlink("app/main.py", src / "main")
    os.link(src / "run.sh", src / "run-again.sh")
    os.mkfifo(src / "pipe")


async def test_layers_show_the_clients_tree(harness: Harness, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _context(src)
    stack = Stack(tmp_path / "layers")
    request = SyncRequest(name="context")
    async with harness.open(Session(directories={"context": src})) as handle:

        async def sync() -> SyncResult:
            result = await handle.filesync.sync(request, stack.sync_base())
            stack.done(result)
            assert stack.merged(owners=True) == snapshot(src, owners=True)
            return result

        first = await sync()
        assert first.files_transferred == 5  # the hard link's content travels once
        assert stack.opened == 1

        # nothing changed: no layer is opened, nothing travels
        again = await sync()
        assert again.unchanged
        assert (stack.opened, again.files_transferred) == (1, 0)
        assert len(again.tree) == len(first.tree)

        # one file changed: the layer holds that file and the directories above it
        (src / "app/pkg/mod.py").write_text("X = 2\n")
        one = await sync()
        assert (one.files_transferred, one.deleted) == (1, ())
        assert stack.upper_files() == ["app/pkg/mod.py"]
        assert sorted(os.listdir(stack.layers[-1])) == ["app"]

        # deletions become whiteouts: one for a whole directory
        shutil.rmtree(src / "app/pkg")
        (src / "docs/readme.md").unlink()
        gone = await sync()
        assert gone.files_transferred == 0
        assert set(gone.deleted) == {
            "app/pkg",
            "app/pkg/data",
            "app/pkg/data/blob.bin",
            "app/pkg/mod.py",
            "docs/readme.md",
        }
        top = stack.layers[-1]
        assert _whiteout(top / "app/pkg")
        assert _whiteout(top / "docs/readme.md")
        assert not (top / "app/pkg").is_dir()

        # types change both ways; a directory comes back where a whiteout hides the old
        (src / "run.sh").unlink()
        (src / "run.sh").mkdir()
        write(src, "run.sh/inner", "inner")
        shutil.rmtree(src / "docs")
        (src / "docs").write_text("now a file")
        write(src, "app/pkg/new.py", "new")
        (src / "main").unlink()
        os.symlink("run.sh/inner", src / "main")
        await sync()

        # a mode-only change, a new hard link to an unchanged file, a new empty dir
        (src / "app/main.py").chmod(0o600)
        os.link(src / "run-again.sh", src / "third.sh")
        (src / "empty/deeper").mkdir()
        await sync()

        # and back to a tree like the first: still exact
        shutil.rmtree(src)
        _context(src)
        await sync()
    assert len(stack.layers) == 6


async def test_unchanged_layer_is_never_opened(tmp_path: Path) -> None:
    entries = [f("a", stat.S_IFDIR | 0o755), f("a/b", size=3)]
    base = {e.path: stat_key(e) for e in entries}

    async def fail() -> tuple[Path, bool]:
        raise AssertionError("opened")

    source = FakeSource(entries, {1: b"abc"})
    result = await receive(source, SyncBase(entries=base, open=fail), preserve_owner=False)
    assert result.unchanged
    assert source.wanted == []

    # compare=False: every file travels again, so a layer is opened
    opened: list[Path] = []

    async def open_layer() -> tuple[Path, bool]:
        opened.append(tmp_path / "upper")
        return opened[-1], True

    source = FakeSource(entries, {1: b"abc"})
    result = await receive(
        source, SyncBase(entries=base, open=open_layer), preserve_owner=False, compare=False
    )
    assert (result.files_transferred, source.wanted) == (1, [1])
    assert (tmp_path / "upper/a/b").read_bytes() == b"abc"


async def test_hostile_entries_are_refused_before_a_layer_opens(tmp_path: Path) -> None:
    opened: list[bool] = []

    async def open_layer() -> tuple[Path, bool]:
        opened.append(True)
        return tmp_path / "upper", True

    base: dict[str, StatKey] = {"a": stat_key(f("a", stat.S_IFDIR | 0o755))}
    with pytest.raises(PathEscapeError):
        await receive(FakeSource([f("../x")]), SyncBase(entries=base, open=open_layer))
    link = f("a", stat.S_IFLNK | 0o777, linkname="/etc")
    with pytest.raises(SessionError, match="before its parent"):
        await receive(
            FakeSource([link, f("a/passwd")], {1: b"evil"}),
            SyncBase(entries=base, open=open_layer),
        )
    assert not opened
    assert not (tmp_path / "upper").exists()


async def test_layer_over_a_base_the_sender_contradicts(tmp_path: Path) -> None:
    """A base with a file where the sender has a directory: the new directory covers
    the old entry, and the entries below it are written whole."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    write(lower, "x", "old file")
    base = {"x": stat_key(f("x", size=8))}

    async def open_layer() -> tuple[Path, bool]:
        return upper, True

    entries: list[FileStat] = [f("x", stat.S_IFDIR | 0o755), f("x/y", size=3)]
    result = await receive(
        FakeSource(entries, {1: b"new"}),
        SyncBase(entries=base, open=open_layer),
        preserve_owner=False,
    )
    assert (result.files_transferred, set(result.changed)) == (1, {"x", "x/y"})
    spec = Mount(type="overlay", source="overlay", options=(f"lowerdir={upper}:{lower}", "ro"))
    with mounted([spec], parent=tmp_path) as root:
        assert (root / "x/y").read_bytes() == b"new"
        assert os.listdir(root / "x") == ["y"]
