"""Generated file-sync streams from a hostile sender: random entry lists (odd paths,
modes, owners, sizes, link names), content for any id, of any length, in any order,
against a destination that already holds files and symlinks. The receiver either
finishes inside its destination or fails with a Dockyard error; nothing outside the
destination changes."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.core import DockyardError
from dockyard.session import Chunk, FileStat, receive
from dockyard.session.types import Content

EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "40"))

PATHS = [
    "a",
    "b",
    "a/b",
    "a/c",
    "l",
    "l/x",
    "trap",
    "trap/x",
    "..",
    "../x",
    "/abs",
    "a//b",
    "é",
    "a\nb",
    "x" * 300,
    "\udcff",
    "d",
    "d/e",
    "d/e/f",
]
MODES = [
    stat.S_IFREG | 0o644,
    stat.S_IFDIR | 0o755,
    stat.S_IFLNK | 0o777,
    stat.S_IFREG | 0o4755,
    stat.S_IFIFO | 0o600,
    stat.S_IFCHR | 0o600,
    stat.S_IFSOCK | 0o600,
    0o777,
    -1,
    1 << 20,
    stat.S_IFDIR | 0o000,
]
LINKS = ["", "a", "/etc/passwd", "../../outside/secret.txt", "trap", "b", "\0", "x" * 5000]
NUMBERS = [0, 1, 1000, -1, 1 << 32, (1 << 63) - 1]

entry = st.builds(
    lambda path, mode, link, uid, size, mtime: FileStat(
        path=path, mode=mode, linkname=link, uid=uid, gid=uid, size=size, mtime_ns=mtime
    ),
    st.sampled_from(PATHS),
    st.sampled_from(MODES),
    st.sampled_from(LINKS),
    st.sampled_from(NUMBERS),
    st.sampled_from([0, 3, 5, -1, 1 << 40]),
    st.sampled_from([0, -1, 1 << 62, 1_600_000_000_000_000_000]),
)
chunk = st.builds(
    lambda i, data, last: Chunk(i, data, last),
    st.integers(-1, 12),
    st.sampled_from([b"", b"abc", b"x" * 70_000]),
    st.booleans(),
)


class Source:
    def __init__(self, entries: Sequence[FileStat], chunks: list[Content], sort: bool) -> None:
        self.entries = sorted(entries, key=lambda e: e.path.split("/")) if sort else entries
        self.chunks = chunks

    async def stats(self) -> AsyncIterator[Sequence[FileStat]]:
        yield self.entries

    async def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]:
        if self.chunks:
            yield self.chunks
        for i in ids:
            yield [Chunk(i, b"data", True)]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(entry, max_size=8),
    st.lists(chunk, max_size=4),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_hostile_senders(
    entries: list[FileStat], chunks: list[Content], sort: bool, devices: bool, merge: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "outside").mkdir()
        (base / "outside" / "secret.txt").write_text("keep")
        dest = base / "dest"
        (dest / "a").mkdir(parents=True)
        (dest / "b").write_text("old")
        os.symlink(base / "outside", dest / "trap")
        try:
            asyncio.run(
                receive(Source(entries, chunks, sort), dest, allow_devices=devices, merge=merge)
            )
        except DockyardError:
            pass
        assert sorted(os.listdir(base / "outside")) == ["secret.txt"]
        assert (base / "outside" / "secret.txt").read_text() == "keep"
        for dirpath, dirnames, _ in os.walk(base):
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o755)
        shutil.rmtree(base, ignore_errors=True)
