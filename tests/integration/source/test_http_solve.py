"""The http source solved by the LLB solver on the real cache (overlayfs) against a local
server: an unchanged ETag downloads nothing the second time (also after a restart),
redirects, a server that drops the body, pins, and Dockerfile ``ADD <url>``."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import ImmutableRef
from dockyard.core import ContentError, Digest, DockyardError
from dockyard.dockerfile import ConvertOptions, convert, parse_dockerfile
from dockyard.testing.httpserver import HttpTestServer, http_date

from .test_git_solve import Engine, open_engine

BODY = b"#!/bin/sh\necho tool\n"
SHA = Digest.from_hex(hashlib.sha256(BODY).hexdigest())


@pytest.fixture
async def engine(tmp_path: Path, mountinfo_unchanged: None) -> AsyncIterator[Engine]:
    async with open_engine(tmp_path / "state") as running:
        yield running


@pytest.fixture
def server() -> Iterator[HttpTestServer]:
    with HttpTestServer() as running:
        yield running


async def test_unchanged_etag_downloads_nothing_the_second_time(
    tmp_path: Path, server: HttpTestServer, mountinfo_unchanged: None
) -> None:
    server.add("tool.sh", BODY, etag='"abc"', last_modified=http_date(1_650_000_000))
    state = llb.http(server.url("tool.sh"))
    async with open_engine(tmp_path / "state") as engine:
        tree = await engine.tree(state)
        assert tree == {"tool.sh": (BODY, 0o600)}
        ref, _ = await engine.solve(state)
        assert ref.cached
        await ref.release()
    # a new engine on the same state: the stored ETag is sent, the server says 304
    async with open_engine(tmp_path / "state") as engine:
        ref, _ = await engine.solve(state)
        assert ref.cached
        await ref.release()
    log = server.requests_for("tool.sh")
    assert [(r.status, r.sent) for r in log] == [(200, len(BODY)), (304, 0), (304, 0)]
    assert all(r.headers.get("if-none-match") == '"abc"' for r in log[1:])


async def test_changed_file_is_downloaded_again(engine: Engine, server: HttpTestServer) -> None:
    server.add("data", b"v1\n", etag='"1"')
    state = llb.http(server.url("data"))
    assert await engine.tree(state) == {"data": (b"v1\n", 0o600)}
    server.add("data", b"v2\n", etag='"2"')
    ref, _ = await engine.solve(state)
    assert not ref.cached
    value = ref.value
    assert isinstance(value, ImmutableRef)
    async with value.mount() as root:
        assert (root / "data").read_bytes() == b"v2\n"
    await ref.release()


async def test_file_options(engine: Engine, server: HttpTestServer) -> None:
    server.add("dl", BODY, last_modified=http_date(1_650_000_000))
    state = llb.http(server.url("dl"), filename="tool", perm=0o755, uid=1000, gid=1000)
    ref, _ = await engine.solve(state)
    try:
        value = ref.value
        assert isinstance(value, ImmutableRef)
        async with value.mount() as root:
            st = (root / "tool").stat()
            assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o755, 1000, 1000)
            assert st.st_mtime == 1_650_000_000
    finally:
        await ref.release()


async def test_redirects(engine: Engine, server: HttpTestServer) -> None:
    server.add("files/v2/tool.sh", BODY)
    server.redirect("latest", server.url("files/v2/tool.sh"), status=302)
    assert await engine.tree(llb.http(server.url("latest"))) == {"latest": (BODY, 0o600)}


async def test_dropped_body_is_retried_then_a_clear_error(
    engine: Engine, server: HttpTestServer
) -> None:
    server.add("once", BODY * 1000, truncate=1)
    assert await engine.tree(llb.http(server.url("once"))) == {"once": (BODY * 1000, 0o600)}
    server.add("always", BODY * 1000, truncate=100)
    with pytest.raises(DockyardError) as info:
        await engine.solve(llb.http(server.url("always")))
    assert str(info.value).startswith(
        f"downloading {server.url('always')} failed after 3 attempts: "
    )


async def test_checksum(engine: Engine, server: HttpTestServer) -> None:
    server.add("tool.sh", BODY)
    state = llb.http(server.url("tool.sh"), checksum=SHA)
    assert await engine.tree(state) == {"tool.sh": (BODY, 0o600)}
    ref, _ = await engine.solve(state)
    assert ref.cached
    await ref.release()
    assert len(server.requests_for("tool.sh")) == 1  # a pin is its own key: no request
    wrong = "sha256:" + "1" * 64
    with pytest.raises(ContentError, match="digest mismatch"):
        await engine.solve(llb.http(server.url("tool.sh"), checksum=wrong, filename="other"))
    records = [r for r in await engine.cache.du() if "http url" in r.description]
    assert len(records) == 1  # only the good download


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/lib.txt")
        info.size = 4
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(b"lib\n"))
    return gzip.compress(buf.getvalue(), mtime=0)  # fixed header: equal bytes on every call


async def test_dockerfile_add_urls(engine: Engine, server: HttpTestServer) -> None:
    server.add("tool.sh", BODY, etag='"t"')
    server.add("pkg.tar.gz", _tarball())
    text = f"""\
FROM scratch
ADD --checksum={SHA} {server.url("tool.sh")} /usr/local/bin/
ADD {server.url("tool.sh")} /copy/tool
ADD {server.url("pkg.tar.gz")} /downloads/
ADD --unpack=true {server.url("pkg.tar.gz")} /opt/
"""
    result = await convert(parse_dockerfile(text), ConvertOptions())
    tree = await engine.tree(result.definition())
    assert tree["usr/local/bin/tool.sh"] == (BODY, 0o600)
    assert tree["copy/tool"] == (BODY, 0o600)
    assert tree["downloads/pkg.tar.gz"] == (_tarball(), 0o600)  # never unpacked by default
    assert tree["opt/pkg/lib.txt"] == (b"lib\n", 0o644)
    # a wrong pin fails the build at its line
    bad = f"FROM scratch\nADD --checksum=sha256:{'2' * 64} {server.url('tool.sh')} /x\n"
    result = await convert(parse_dockerfile(bad), ConvertOptions())
    with pytest.raises(ContentError) as info:
        await engine.solve(result.definition())
    assert str(info.value).startswith("Dockerfile:2: ")
    assert "digest mismatch" in str(info.value)
