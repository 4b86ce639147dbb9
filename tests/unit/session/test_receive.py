"""The receiver against a hostile sender: every path stays inside the destination,
symlinks are never followed, malformed streams are refused."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from dockyard.core import PathEscapeError, SessionError
from dockyard.session import Chunk, FileStat, LocalSyncSource, receive
from dockyard.session.types import Content

from .trees import snapshot, write

REG = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755
LNK = stat.S_IFLNK | 0o777


class FakeSource:
    """A sender that says whatever the test wants."""

    def __init__(
        self,
        entries: Sequence[FileStat],
        contents: dict[int, bytes] | None = None,
        *,
        extra: Sequence[Content] = (),
        stop_early: bool = False,
    ) -> None:
        self.entries = entries
        self.contents = contents or {}
        self.extra = extra
        self.stop_early = stop_early
        self.wanted: list[int] = []

    async def stats(self) -> AsyncIterator[Sequence[FileStat]]:
        yield self.entries

    async def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]:
        self.wanted = list(ids)
        if self.extra:
            yield self.extra
        for i in ids:
            if self.stop_early:
                return
            data = self.contents.get(i, b"")
            yield [Chunk(i, data[:3], False), Chunk(i, data[3:], True)]


def f(path: str, mode: int = REG, **kw: object) -> FileStat:
    return FileStat(path=path, mode=mode, mtime_ns=1_600_000_000_000_000_000, **kw)  # type: ignore[arg-type]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the destination that nothing may touch."""
    return write(tmp_path, "outside/secret.txt", "do not touch")


def untouched(outside: Path) -> bool:
    return outside.read_text() == "do not touch" and sorted(os.listdir(outside.parent)) == [
        "secret.txt"
    ]


@pytest.mark.parametrize(
    "path",
    [
        "../escape",
        "/etc/passwd",
        "a/../../x",
        "./a",
        "a//b",
        "",
        "a/",
        ".",
        "..",
        "a\0b",
        "x" * 4097,  # longer than PATH_MAX
        "\u20ac" * 1400,  # 1,400 characters, 4,200 bytes encoded
    ],
)
async def test_unclean_paths_are_refused(tmp_path: Path, outside: Path, path: str) -> None:
    dest = tmp_path / "dest"
    entries = [f("a", DIR), f(path)] if path.startswith("a/") else [f(path)]
    with pytest.raises(PathEscapeError, match="clean relative path"):
        await receive(FakeSource(entries, {0: b"evil"}), dest)
    assert untouched(outside)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "x").exists()


async def test_entries_through_a_symlink_are_refused(tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "dest"
    entries = [f("link", LNK, linkname=str(outside.parent)), f("link/secret.txt")]
    with pytest.raises(SessionError, match="before its parent directory"):
        await receive(FakeSource(entries, {1: b"overwritten"}), dest)
    assert untouched(outside)


async def test_existing_symlinks_in_dest_are_replaced_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside.parent, dest / "d")  # a directory symlink pointing out
    os.symlink(outside, dest / "f")  # a file symlink pointing out
    entries = [f("d", DIR), f("d/secret.txt"), f("f", size=3)]
    result = await receive(FakeSource(entries, {1: b"new", 2: b"new"}), dest)
    assert untouched(outside)
    assert (dest / "d").is_dir()
    assert not (dest / "d").is_symlink()
    assert (dest / "d/secret.txt").read_bytes() == b"new"
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"new"
    assert result.files_transferred == 2


async def test_symlink_targets_are_stored_verbatim(tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "dest"
    entries = [f("abs", LNK, linkname="/etc/shadow"), f("up", LNK, linkname="../../outside")]
    await receive(FakeSource(entries), dest)
    assert os.readlink(dest / "abs") == "/etc/shadow"
    assert os.readlink(dest / "up") == "../../outside"
    # turning the link into a file replaces the link, never writes through it
    os.symlink(outside, dest / "trap")
    entries = [entries[0], f("trap", size=4), entries[1]]
    await receive(FakeSource(entries, {1: b"evil"}), dest)
    assert untouched(outside)
    assert (dest / "trap").read_bytes() == b"evil"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([f("b"), f("a")], "out of order"),
        ([f("a"), f("a")], "out of order or repeated"),
        ([f("a/b")], "before its parent"),
        ([f("a"), f("a/b")], "before its parent"),
        ([f("x", linkname="missing")], "not an earlier regular file"),
        ([f("x", linkname="y"), f("y")], "not an earlier regular file"),
        ([f("l", LNK, linkname="t"), f("x", linkname="l")], "not an earlier regular file"),
        ([f("x", linkname="../../outside/secret.txt")], "not an earlier regular file"),
        ([f("l", LNK)], "invalid target"),
        ([f("s", stat.S_IFSOCK | 0o600)], "unsupported mode"),
        ([f("d", stat.S_IFCHR | 0o600, devmajor=1, devminor=3)], "device node"),
        ([f("n", uid=-1)], "invalid ownership"),
        ([f("n", gid=1 << 32)], "invalid ownership"),
        ([f("n", size=-1)], "invalid ownership or size"),
        ([f("n", -stat.S_IFREG)], "unsupported mode"),
    ],
)
async def test_malformed_streams_are_refused(
    tmp_path: Path, outside: Path, entries: list[FileStat], message: str
) -> None:
    with pytest.raises(SessionError, match=message):
        await receive(FakeSource(entries), tmp_path / "dest")
    assert untouched(outside)


async def test_content_for_an_entry_not_asked_for_is_refused(tmp_path: Path) -> None:
    entries = [f("a"), f("b")]
    source = FakeSource(entries, {0: b"aaa"}, extra=[Chunk(1, b"sneaky", True)])
    with pytest.raises(SessionError, match="unexpected content"):
        await receive(source, tmp_path / "dest")
    assert not [p for p in (tmp_path / "dest").iterdir() if p.name.startswith(".dockyard")]


async def test_a_sender_that_stops_early_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="before all content arrived"):
        await receive(FakeSource([f("a")], stop_early=True), tmp_path / "dest")


async def test_partial_files_are_removed_after_an_error(tmp_path: Path) -> None:
    class Broken(FakeSource):
        async def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]:
            yield [Chunk(ids[0], b"half", False)]
            raise SessionError("connection lost")

    dest = tmp_path / "dest"
    with pytest.raises(SessionError, match="connection lost"):
        await receive(Broken([f("a")]), dest)
    assert os.listdir(dest) == []


async def test_devices_when_allowed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod of a device needs root")
    dest = tmp_path / "dest"
    entries = [
        f("null", stat.S_IFCHR | 0o666, devmajor=1, devminor=3),
        f("fifo", stat.S_IFIFO | 0o600),
    ]
    entries.sort(key=lambda e: e.path)
    await receive(FakeSource(entries), dest, allow_devices=True)
    st = os.lstat(dest / "null")
    assert stat.S_ISCHR(st.st_mode)
    assert os.major(st.st_rdev) == 1
    assert os.minor(st.st_rdev) == 3
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)


async def test_only_changed_files_are_wanted(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "a", "1")
    write(src, "b", "2")
    await receive(LocalSyncSource(src), dest)
    write(src, "b", "22")
    entries = [f("a"), f("b")]
    # the same stat as the source says for "a"; "b" differs
    real = {p.name: p.stat() for p in src.iterdir()}
    entries = [
        FileStat(
            path=name,
            mode=real[name].st_mode,
            uid=real[name].st_uid,
            gid=real[name].st_gid,
            size=real[name].st_size,
            mtime_ns=real[name].st_mtime_ns,
        )
        for name in ("a", "b")
    ]
    source = FakeSource(entries, {1: b"22"})
    result = await receive(source, dest)
    assert source.wanted == [1]
    assert result.changed == ("b",)


async def test_merge_keeps_unrelated_files(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "new/file", "n")
    write(dest, "mine.txt", "keep me")
    write(dest, "new/other", "keep me too")
    result = await receive(LocalSyncSource(src), dest, merge=True)
    assert (dest / "mine.txt").read_text() == "keep me"
    assert (dest / "new/other").read_text() == "keep me too"
    assert (dest / "new/file").read_text() == "n"
    assert result.deleted == ()
    without = snapshot(dest)
    del without["mine.txt"], without["new/other"]
    assert without == snapshot(src)


async def test_unwritable_directories_when_not_root(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "ro/a", "a")
    (src / "ro").chmod(0o555)
    try:
        await receive(LocalSyncSource(src), dest, preserve_owner=False)
        (src / "ro").chmod(0o755)
        write(src, "ro/b", "b")
        (src / "ro").chmod(0o555)
        result = await receive(LocalSyncSource(src), dest, preserve_owner=False)
        assert result.files_transferred == 1
        assert (dest / "ro").stat().st_mode & 0o777 == 0o555
        assert snapshot(dest) == snapshot(src)
    finally:
        (src / "ro").chmod(0o755)
        if (dest / "ro").exists():
            (dest / "ro").chmod(0o755)


async def test_a_sync_base_opens_only_for_a_difference(tmp_path: Path) -> None:
    """``SyncBase``: the sender's entries are compared with the base's stat keys (owners
    only when they are kept); the destination is opened only when something differs,
    and a destination that is not a layer is synced like any directory."""
    from dockyard.session import SyncBase, stat_key

    entries = [f("d", DIR), f("d/a", size=3), f("l", LNK, linkname="d/a")]
    base = {e.path: stat_key(e) for e in entries}
    opened: list[Path] = []

    async def open_copy() -> tuple[Path, bool]:
        dest = tmp_path / f"copy{len(opened)}"
        opened.append(dest)
        return dest, False

    def chowned(entry: FileStat) -> FileStat:
        return FileStat(
            path=entry.path,
            mode=entry.mode,
            uid=1234,
            gid=5678,
            size=entry.size,
            mtime_ns=entry.mtime_ns,
            linkname=entry.linkname,
        )

    same = await receive(
        FakeSource([chowned(e) for e in entries]),
        SyncBase(entries=base, open=open_copy),
        preserve_owner=False,
    )
    assert same.unchanged
    assert not opened
    assert [e.path for e in same.tree] == ["d", "d/a", "l"]

    changed = [*entries[:2], f("l", LNK, linkname="elsewhere")]
    result = await receive(
        FakeSource(changed, {1: b"abc"}),
        SyncBase(entries=base, open=open_copy),
        preserve_owner=False,
    )
    assert len(opened) == 1
    assert (result.files_transferred, os.readlink(opened[0] / "l")) == (1, "elsewhere")
    assert (opened[0] / "d" / "a").read_bytes() == b"abc"

    # one entry fewer is a difference too
    await receive(
        FakeSource(entries[:2], {1: b"abc"}),
        SyncBase(entries=base, open=open_copy),
        preserve_owner=False,
    )
    assert len(opened) == 2
    assert sorted(os.listdir(opened[1])) == ["d"]
