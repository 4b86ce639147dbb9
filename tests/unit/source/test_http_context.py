"""Remote build contexts: telling git, http and local contexts apart, sniffing archives,
reading a context tarball (every compression) or a Dockerfile from a stream or a URL,
and keeping hostile tarballs inside the tree."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import zstandard

from dockyard import llb
from dockyard.cache import CacheManager, ImmutableRef
from dockyard.core import ContentError, PathEscapeError
from dockyard.snapshot.mount import mountpoints_under
from dockyard.source import (
    ContextFormat,
    GitContext,
    HttpContext,
    HttpSource,
    fetch_http_context,
    parse_remote_context,
    read_context_stream,
    sniff_context,
)
from dockyard.testing.httpserver import HttpTestServer

DOCKERFILE = b"FROM scratch\nCOPY app.txt /\n"


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[CacheManager]:
    manager = await CacheManager.open(tmp_path / "state", snapshotter="native")
    try:
        yield manager
        assert manager.statistics().in_use == 0, "cache records still in use"
    finally:
        await manager.close()
    assert not mountpoints_under(tmp_path), "mounts left behind"


@pytest.fixture
def server() -> Iterator[HttpTestServer]:
    with HttpTestServer() as running:
        yield running


def context_tar(members: dict[str, bytes | None] | None = None) -> bytes:
    members = (
        members
        if members is not None
        else {
            "Dockerfile": DOCKERFILE,
            "app.txt": b"app\n",
            "src/": None,
            "src/main.py": b"print(1)\n",
        }
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_700_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


COMPRESS: dict[ContextFormat, Callable[[bytes], bytes]] = {
    ContextFormat.TAR: lambda b: b,
    ContextFormat.GZIP: gzip.compress,
    ContextFormat.BZIP2: bz2.compress,
    ContextFormat.XZ: lzma.compress,
    ContextFormat.ZSTD: lambda b: zstandard.ZstdCompressor().compress(b),
}


def walk(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[Path(dirpath, name).relative_to(root).as_posix() + "/"] = None
        for name in filenames:
            path = Path(dirpath, name)
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def exists(path: str) -> bool:
    return os.path.lexists(path)


async def tree(ref: ImmutableRef) -> dict[str, bytes | None]:
    try:
        async with ref.mount() as root:
            return walk(root)
    finally:
        await ref.release()


EXPECTED = {
    "Dockerfile": DOCKERFILE,
    "app.txt": b"app\n",
    "src/": None,
    "src/main.py": b"print(1)\n",
}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("https://example.com/ctx.tar.gz", "http"),
        ("http://example.com/Dockerfile", "http"),
        ("https://example.com/org/repo.git", "git"),
        ("https://example.com/org/repo.git#v1:docs", "git"),
        ("git://example.com/repo", "git"),
        ("ssh://git@example.com/repo.git", "git"),
        ("git@github.com:moby/buildkit.git#main", "git"),
        ("github.com/moby/buildkit", "git"),
        (".", None),
        ("./sub", None),
        ("/abs/dir", None),
        ("-", None),
        ("some/dir", None),
    ],
)
def test_what_a_context_is(text: str, kind: str | None) -> None:
    found = parse_remote_context(text)
    if kind is None:
        assert found is None
    elif kind == "git":
        assert isinstance(found, GitContext)
    else:
        assert isinstance(found, HttpContext)


def test_git_context_fragment_and_state() -> None:
    found = parse_remote_context("https://example.com/org/repo.git#v1:docs", keep_git_dir=True)
    assert isinstance(found, GitContext)
    assert (found.spec.ref, found.spec.subdir, found.spec.keep_git_dir) == ("v1", "docs", True)
    state = found.state()
    assert state.output is not None
    op = state.output.vertex
    assert isinstance(op, llb.SourceOp)
    assert op.identifier == "git://example.com/org/repo.git#v1:docs"
    assert op.attrs["git.keepgitdir"] == "true"


def test_http_context_states() -> None:
    found = parse_remote_context("https://example.com/ctx.tar.gz")
    assert isinstance(found, HttpContext)
    file_op = found.file_state().output
    assert file_op is not None
    source = file_op.vertex
    assert isinstance(source, llb.SourceOp)
    assert source.attrs["http.filename"] == "context"
    ops = [entry["Op"] for entry in found.unpacked_state().marshal().dump()]
    copies = [action["copy"] for op in ops for action in op.get("file", {}).get("actions", [])]
    assert copies == [
        {
            "src": "/context",
            "dest": "/",
            "mode": -1,
            "attemptUnpackDockerCompatibility": True,
            "timestamp": "-1",
        }
    ]


@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_sniffing_archives(fmt: ContextFormat) -> None:
    assert sniff_context(COMPRESS[fmt](context_tar())[:512]) is fmt


@pytest.mark.parametrize("head", [DOCKERFILE, b"", b"x" * 600, b"\x1f\x8b"])
def test_sniffing_text(head: bytes) -> None:
    assert sniff_context(head) is ContextFormat.TEXT


class _Pipe(io.RawIOBase):
    """A stream that cannot seek and hands out small pieces (like stdin)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), 7, len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def pipe(data: bytes) -> IO[bytes]:
    return _Pipe(data)  # type: ignore[return-value]


@pytest.mark.parametrize("fmt", list(COMPRESS))
async def test_context_tarball_from_a_stream(cache: CacheManager, fmt: ContextFormat) -> None:
    fetched = await read_context_stream(cache, pipe(COMPRESS[fmt](context_tar())))
    assert fetched.format is fmt
    assert fetched.dockerfile is None
    assert fetched.tree is not None
    assert await tree(fetched.tree) == EXPECTED


async def test_dockerfile_from_a_stream(cache: CacheManager) -> None:
    fetched = await read_context_stream(cache, pipe(DOCKERFILE))
    assert fetched.format is ContextFormat.TEXT
    assert fetched.tree is None
    assert fetched.dockerfile == DOCKERFILE
    assert await cache.du() == []


async def test_hostile_tarball_stays_contained(cache: CacheManager, tmp_path: Path) -> None:
    evil = context_tar({"ok.txt": b"ok\n", "../../escaped.txt": b"gotcha\n"})
    with pytest.raises(PathEscapeError):
        await read_context_stream(cache, pipe(gzip.compress(evil)))
    assert not exists(str(tmp_path / "escaped.txt"))
    assert await cache.du() == []  # the half-made tree is gone
    absolute = context_tar({"/etc/dockyard-test-escape": b"x\n"})
    fetched = await read_context_stream(cache, pipe(absolute))
    assert fetched.tree is not None
    assert await tree(fetched.tree) == {"etc/": None, "etc/dockyard-test-escape": b"x\n"}
    assert not exists("/etc/dockyard-test-escape")


async def test_corrupt_archive(cache: CacheManager) -> None:
    data = gzip.compress(context_tar())
    with pytest.raises(ContentError, match="corrupt"):
        await read_context_stream(cache, pipe(data[: len(data) // 2] + b"\x00" * 40))
    assert await cache.du() == []


async def test_http_contexts(cache: CacheManager, server: HttpTestServer) -> None:
    server.add("ctx.tar.xz", lzma.compress(context_tar()), etag='"1"')
    server.add("Dockerfile", DOCKERFILE)
    source = HttpSource(cache=cache)
    found = parse_remote_context(server.url("ctx.tar.xz"))
    assert isinstance(found, HttpContext)
    fetched = await fetch_http_context(source, found)
    assert fetched.format is ContextFormat.XZ
    assert fetched.tree is not None
    assert await tree(fetched.tree) == EXPECTED
    found = parse_remote_context(server.url("Dockerfile"))
    assert isinstance(found, HttpContext)
    fetched = await fetch_http_context(source, found)
    assert (fetched.format, fetched.dockerfile, fetched.tree) == (
        ContextFormat.TEXT,
        DOCKERFILE,
        None,
    )
    # the tarball again: revalidated, not downloaded
    found = parse_remote_context(server.url("ctx.tar.xz"))
    assert isinstance(found, HttpContext)
    again = await fetch_http_context(source, found)
    assert again.tree is not None
    await again.tree.release()
    assert [r.status for r in server.requests_for("ctx.tar.xz")] == [200, 304]
