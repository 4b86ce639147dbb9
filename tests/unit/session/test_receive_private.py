"""Syncs into a private destination (a new layer, :class:`SyncBase`): new files are
written at their final names, whole files by several threads at once, and content is
read up to the size the walk saw; the result is the same tree as an ordinary sync."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from dockyard.core import DockyardError
from dockyard.session import (
    Chunk,
    FileStat,
    LocalSyncSource,
    Session,
    SyncBase,
    SyncRequest,
    SyncResult,
    _receive,
    receive,
)
from dockyard.session.types import Content

from .harness import Harness
from .trees import snapshot, write


def _tree(root: Path, files: int = 150, dirs: int = 10) -> None:
    for n in range(files):
        write(root, f"d{n % dirs:02d}/sub/f{n:04d}.txt", f"file {n}\n" * (n % 7), mode=0o640)
    write(root, "run.sh", "#!/bin/sh\n", mode=0o755)
    write(root, "empty", "")
    os.symlink("run.sh", root / "link")
    os.link(root / "run.sh", root / "run-again.sh")


def _layer(dest: Path) -> SyncBase:
    async def open_layer() -> tuple[Path, bool]:
        os.makedirs(dest)
        return dest, True

    return SyncBase(entries={}, open=open_layer)


@pytest.fixture
def renames(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the receiver's temporary files renamed into place."""
    seen: list[str] = []
    real = os.rename

    def rename(src: str, dst: str, **kw: int) -> None:
        if str(src).startswith(_receive._TEMP_PREFIX):
            seen.append(str(dst))
        real(src, dst, **kw)

    monkeypatch.setattr(os, "rename", rename)
    return seen


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Three writer threads taking four files at a time; the threads that wrote."""
    monkeypatch.setattr(_receive, "_WRITERS", 3)
    monkeypatch.setattr(_receive, "_PART", 4)
    monkeypatch.setattr(_receive, "_pool", None)
    threads: set[int] = set()
    real = _receive.Receiver._write_whole

    def write_whole(self: _receive.Receiver, pieces: Sequence[Content]) -> tuple[int, int]:
        threads.add(threading.get_ident())
        threading.Event().wait(0.002)  # let the others take parts too
        return real(self, pieces)

    monkeypatch.setattr(_receive.Receiver, "_write_whole", write_whole)
    return threads


async def test_a_private_layer_gets_its_files_without_renames(
    tmp_path: Path, renames: list[str]
) -> None:
    src = tmp_path / "src"
    _tree(src, files=20)
    result = await receive(LocalSyncSource(src), _layer(tmp_path / "layer"))
    assert snapshot(tmp_path / "layer") == snapshot(src)
    assert result.files_transferred == 22  # the hard link's content travels once
    written = {e.path.rpartition("/")[2] for e in result.tree if e.is_regular and not e.linkname}
    assert len(written) == 22
    assert not written & set(renames)  # (symlinks and hard links are still renamed)

    # a directory the user sees still gets each file whole, by a rename
    await receive(LocalSyncSource(src), tmp_path / "plain")
    assert snapshot(tmp_path / "plain") == snapshot(src)
    assert written <= set(renames)


async def test_parallel_writers_make_the_same_tree(
    harness: Harness, tmp_path: Path, writers: set[int]
) -> None:
    src = tmp_path / "src"
    _tree(src)
    write(src, "big.bin", os.urandom(3 << 20))  # several chunks over gRPC: written in order
    async with harness.open(Session(directories={"context": src})) as handle:
        result = await handle.filesync.sync(SyncRequest(name="context"), _layer(tmp_path / "l"))
    assert snapshot(tmp_path / "l", owners=True) == snapshot(src, owners=True)
    assert result.files_transferred == 153
    assert len(writers) > 1


async def test_parallel_writers_of_chunks_in_one_piece(tmp_path: Path, writers: set[int]) -> None:
    entries = [FileStat(path="d", mode=stat.S_IFDIR | 0o755, mtime_ns=10**18)]
    for n in range(60):
        entries.append(FileStat(path=f"d/f{n:02d}", mode=stat.S_IFREG | 0o600, size=2, mtime_ns=n))

    class Whole:
        async def stats(self) -> AsyncIterator[Sequence[FileStat]]:
            yield entries

        async def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]:
            yield [Chunk(i, b"%02d" % i, True) for i in ids[:30]]
            yield [Chunk(i, b"%02d" % i, True) for i in ids[30:]]

    result = await receive(Whole(), _layer(tmp_path / "l"), preserve_owner=False)
    assert result.files_transferred == 60
    for n in range(60):
        path = tmp_path / "l" / f"d/f{n:02d}"
        assert path.read_bytes() == b"%02d" % (n + 1)
        assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_mtime_ns) == (0o600, n)
    assert len(writers) > 1


async def test_a_failing_writer_fails_the_sync_and_leaves_no_partial_file(
    tmp_path: Path, writers: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _tree(src)
    real = _receive.Receiver._fill

    def fill(
        self: _receive.Receiver, fd: int, piece: Content, *args: object
    ) -> tuple[int, bytes | None]:
        if self._entries[piece.id].path == "d03/sub/f0093.txt":
            os.write(fd, b"half")
            raise OSError(errno.EIO, "I/O error")
        return real(self, fd, piece, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_receive.Receiver, "_fill", fill)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(DockyardError, match=r"d03/sub/f0093\.txt"):
        await receive(LocalSyncSource(src), _layer(tmp_path / "l"))
    assert not (tmp_path / "l/d03/sub/f0093.txt").exists()
    assert len(os.listdir("/proc/self/fd")) == fds


class _Changing:
    """The local sender, with ``change`` run between the walk and the content."""

    def __init__(self, root: Path, change: Callable[[], None]) -> None:
        self._source = LocalSyncSource(root)
        self._change = change

    async def stats(self) -> AsyncIterator[Sequence[FileStat]]:
        async for batch in self._source.stats():
            yield batch
        self._change()

    def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]:
        return self._source.fetch(ids)


@pytest.mark.parametrize("private", [True, False])
async def test_a_file_that_grew_after_the_walk_is_stored_as_walked(
    tmp_path: Path, private: bool
) -> None:
    src = tmp_path / "src"
    grows = write(src, "log.txt", "first line\n")

    def grow() -> None:
        with grows.open("a") as f:
            f.write("second line\n")

    dest = tmp_path / "dest"
    result: SyncResult = await receive(_Changing(src, grow), _layer(dest) if private else dest)
    assert (dest / "log.txt").read_bytes() == b"first line\n"
    assert [e.size for e in result.tree] == [len("first line\n")]


@pytest.mark.parametrize("target", ["absolute", "relative"])
async def test_a_directory_swapped_for_a_symlink_after_the_walk_reads_nothing_outside(
    tmp_path: Path, target: str
) -> None:
    src = tmp_path / "src"
    write(src, "a/secret.txt", "inside\n")
    write(tmp_path, "outside/a/secret.txt", "outside secret\n")

    def swap() -> None:
        os.rename(src / "a", src / "a.old")
        link = str(tmp_path / "outside" / "a") if target == "absolute" else "../outside/a"
        os.symlink(link, src / "a")

    dest = tmp_path / "dest"
    await receive(_Changing(src, swap), _layer(dest))
    assert (dest / "a/secret.txt").read_bytes() != b"outside secret\n"


def test_the_sender_reads_a_file_up_to_the_size_it_walked(tmp_path: Path) -> None:
    from dockyard.session._walk import ContentReader, walk

    root = tmp_path / "ctx"
    write(root, "a/grows.txt", "first\n")
    write(root, "a/same.bin", b"x" * 3000)
    write(root, "b/empty", b"")
    entries = walk(root)
    with (root / "a/grows.txt").open("a") as f:
        f.write("more\n")
    ids = [i for i, e in enumerate(entries) if e.is_regular]
    reader = ContentReader(root, entries, ids)
    chunks = []
    while batch := reader.next_batch(1000):  # a small budget: files span batches
        chunks.extend(batch)
    reader.close()
    content = {entries[i].path: b"".join(c.data for c in chunks if c.id == i) for i in ids}
    assert content == {"a/grows.txt": b"first\n", "a/same.bin": b"x" * 3000, "b/empty": b""}
    assert [c.id for c in chunks if c.eof] == ids


async def test_the_digests_of_what_a_sync_saw_match_what_it_stored(
    harness: Harness, tmp_path: Path
) -> None:
    import hashlib

    src = tmp_path / "src"
    _tree(src, files=40)
    write(src, "big.bin", os.urandom((1 << 20) + 5))  # several chunks over gRPC
    async with harness.open(Session(directories={"context": src})) as handle:
        result = await handle.filesync.sync(SyncRequest(name="context"), _layer(tmp_path / "l"))
    assert result.digests
    for path, (size, digest) in result.digests.items():
        data = (tmp_path / "l" / path).read_bytes()
        assert (size, digest) == (len(data), hashlib.sha256(data).digest())
    small = {e.path for e in result.tree if e.is_regular and not e.linkname} - {"big.bin"}
    assert small <= set(result.digests)  # local or chunked, every small file was seen


def test_an_index_with_known_digests_is_the_index_read_from_disk(tmp_path: Path) -> None:
    import hashlib

    from dockyard.cache._index import index_tree

    root = tmp_path / "t"
    write(root, "a/one", "one\n")
    write(root, "a/two", "two\n")
    write(root, "b", b"x" * 5000)
    meta = {p: (0, 0, 0, 0, 0, "", 0, 0) for p in ("", "a", "a/one", "a/two", "b")}
    read = index_tree(str(root), meta)
    known = {
        "a/one": (4, hashlib.sha256(b"one\n").digest()),
        "b": (5000, hashlib.sha256(b"x" * 5000).digest()),
        "a/two": (99, b"\0" * 32),  # stale (another size): read instead
    }
    given = index_tree(str(root), meta, known)
    assert given.index.nodes == read.index.nodes
    assert (read.files_hashed, given.files_hashed) == (3, 1)


async def test_the_first_content_frame_is_small(tmp_path: Path) -> None:
    """The receiver starts writing after ~64 KiB, not after the first 1 MiB."""
    from dockyard.api._gen import session_pb2 as pb
    from dockyard.session._grpc_common import send_tree

    root = tmp_path / "ctx"
    for n in range(300):
        write(root, f"f{n:03d}", b"x" * 1000)

    class Frames:
        def __init__(self) -> None:
            self.sent: list[pb.Frame] = []

        async def send(self, frame: pb.Frame) -> None:
            self.sent.append(frame)

        async def recv(self) -> pb.Frame | None:
            return pb.Frame(want=pb.Want(ids=list(range(300)), done=True))

    frames = Frames()
    assert await send_tree(frames, root, None) == (300, 300, 300_000)
    data = [f for f in frames.sent if f.WhichOneof("kind") == "data"]
    sizes = [sum(len(c.data) for c in f.data.chunks) for f in data]
    assert sizes[0] <= 64 << 10 < max(sizes)


async def test_a_layer_sync_names_the_entries_unlike_its_base(tmp_path: Path) -> None:
    """``SyncResult.different``: the positions of the entries whose stat key differs
    from the base's (new ones too) — what a file index of the layer must update."""
    from dockyard.session import stat_key

    src = tmp_path / "src"
    _tree(src, files=6, dirs=2)
    first = await receive(LocalSyncSource(src), tmp_path / "first")
    assert first.different is None  # a directory, not a layer over known entries
    base = {e.path: stat_key(e) for e in first.tree}

    write(src, "d00/sub/f0000.txt", "changed\n", mode=0o640)
    write(src, "new.txt", "new\n")
    os.chmod(src / "d01/sub/f0001.txt", 0o600)  # metadata only
    (src / "empty").unlink()
    opened: list[Path] = []

    async def open_layer() -> tuple[Path, bool]:
        layer = tmp_path / "layer"
        layer.mkdir()
        opened.append(layer)
        return layer, True

    result = await receive(LocalSyncSource(src), SyncBase(entries=base, open=open_layer))
    assert opened
    assert result.different is not None
    got = [result.tree[i].path for i in result.different]
    expected = [e.path for e in result.tree if base.get(e.path) != stat_key(e)]
    assert got == expected
    assert {"d00/sub/f0000.txt", "new.txt", "d01/sub/f0001.txt"} <= set(got)
    assert "run.sh" not in got
