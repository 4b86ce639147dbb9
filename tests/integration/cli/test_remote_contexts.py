"""Remote build contexts through ``dockyard build`` on the embedded engine (issue 8):
an http(s) context tarball in every compression (gzip, bzip2, xz, zstd, plain), named
contexts from http and git (``--build-context NAME=URL``), a hostile tarball served over
http (contained as for local archives). The same on a daemon:
``tests/integration/client/test_remote_contexts.py``."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from dockyard.cli.main import main
from dockyard.testing.gitserver import GitDaemon, TestRepo
from dockyard.testing.httpserver import HttpTestServer
from tests.integration.conftest import need_tools

from .test_build_contexts import DOCKERFILE, tarball

COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "plain": lambda data: data,
}


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


@pytest.fixture
def server() -> Iterator[HttpTestServer]:
    with HttpTestServer() as srv:
        yield srv


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[TestRepo, GitDaemon]]:
    need_tools("git")
    repos = tmp_path / "repos"
    repo = TestRepo(repos / "proj")
    repo.commit({"app/Dockerfile": DOCKERFILE, "app/hello.txt": "hello\n"}, "one")
    repo.tag("v1")
    repo.commit({"app/hello.txt": "hello again\n", "lib/lib.txt": "lib\n"}, "two")
    with GitDaemon(repos) as daemon:
        yield repo, daemon


def test_http_context_tarballs_in_every_compression(
    state: Path, tmp_path: Path, server: HttpTestServer
) -> None:
    archive = tarball({"Dockerfile": DOCKERFILE.encode(), "sub/a.txt": b"from a tarball\n"})
    for name, compress in COMPRESSIONS.items():
        data = compress(archive)
        if name != "plain":
            assert data[:6] != archive[:6]  # really compressed
        server.add(f"ctx-{name}.tar", data)
        out = tmp_path / name
        assert build(state, "-q", "-o", str(out), server.url(f"ctx-{name}.tar")) == 0, name
        assert (out / "ctx/sub/a.txt").read_text() == "from a tarball\n", name
        assert (out / "listing.txt").read_text().split() == ["Dockerfile", "sub"], name


def test_hostile_http_context_stays_contained(
    state: Path, tmp_path: Path, server: HttpTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "escaped.txt"
    depth = "../" * (len(tmp_path.parts) + 2)
    hostile = tarball(
        {
            "Dockerfile": DOCKERFILE.encode(),
            f"{depth}{str(marker).lstrip('/')}": b"gotcha\n",
            "../escaped-too.txt": b"gotcha\n",
        }
    )
    server.add("hostile.tar.gz", gzip.compress(hostile))
    out = tmp_path / "out"
    code = build(state, "-q", "-o", str(out), server.url("hostile.tar.gz"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "escaped" in err  # the error names the entry
    assert "Traceback" not in err
    assert not marker.exists()
    assert not list(state.rglob("escaped*.txt"))
    assert not list(tmp_path.rglob("escaped-too.txt"))

    # an absolute name lands inside the context, as for local archives
    absolute = tarball({"Dockerfile": DOCKERFILE.encode(), "/etc/dy-remote-ctx-abs": b"in\n"})
    server.add("absolute.tar.gz", gzip.compress(absolute))
    assert build(state, "-q", "-o", str(out), server.url("absolute.tar.gz")) == 0
    assert (out / "ctx/etc/dy-remote-ctx-abs").read_text() == "in\n"
    assert not Path("/etc/dy-remote-ctx-abs").exists()


def test_named_contexts_from_http_and_git(
    state: Path,
    tmp_path: Path,
    server: HttpTestServer,
    git_daemon: tuple[TestRepo, GitDaemon],
) -> None:
    _, daemon = git_daemon
    server.add("tool.sh", b"#!/bin/sh\necho tool\n", etag='"t1"')
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY --from=tool /context /tool.sh\n"  # an http context is the file, named "context"
        "COPY --from=src /app/hello.txt /hello-v1.txt\n"
        "COPY --from=lib / /lib/\n"
    )
    out = tmp_path / "out"
    code = build(
        state, "-q", "-o", str(out),
        "--build-context", f"tool={server.url('tool.sh')}",
        "--build-context", f"src={daemon.url('proj')}#v1",
        "--build-context", f"lib={daemon.url('proj')}#main:lib",
        str(ctx),
    )  # fmt: skip
    assert code == 0
    assert (out / "tool.sh").read_text() == "#!/bin/sh\necho tool\n"
    assert (out / "tool.sh").stat().st_mode & 0o777 == 0o600  # as BuildKit's http source
    assert (out / "hello-v1.txt").read_text() == "hello\n"
    assert sorted(p.name for p in (out / "lib").iterdir()) == ["lib.txt"]
