"""Remote build contexts on a real ``dockyardd`` (issue 8): a git repository at a tag
and subdirectory and an http(s) context tarball, fetched by the daemon's git and http
sources, the tree streamed back to the client, which serves it as the build's context;
an unknown ref is an error naming the ref and the repository."""

from __future__ import annotations

import asyncio
import lzma
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.gitserver import GitDaemon, TestRepo
from dockyard.testing.httpserver import HttpTestServer
from tests.integration.cli.test_build_contexts import DOCKERFILE, tarball
from tests.integration.conftest import need_tools
from tests.integration.daemon.conftest import DaemonProcess


async def test_remote_contexts_on_the_daemon(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_tools("git")
    repo = TestRepo(tmp_path / "repos" / "proj")
    repo.commit({"app/Dockerfile": DOCKERFILE, "app/hello.txt": "hello\n"}, "one")
    repo.tag("v1")
    repo.commit({"app/hello.txt": "hello again\n"}, "two")
    with GitDaemon(tmp_path / "repos") as git, HttpTestServer() as server:
        await _builds(running, tmp_path, server, git, capsys)


async def _builds(
    running: DaemonProcess,
    tmp_path: Path,
    server: HttpTestServer,
    git: GitDaemon,
    capsys: pytest.CaptureFixture[str],
) -> None:
    addr = ["--addr", f"unix://{running.socket}"]

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, [*addr, "build", *args])

    out = tmp_path / "git"
    assert await cli("-q", "-o", str(out), git.url("proj") + "#v1:app") == 0
    assert (out / "ctx/hello.txt").read_text() == "hello\n"
    assert (out / "listing.txt").read_text().split() == ["Dockerfile", "hello.txt"]

    archive = tarball({"Dockerfile": DOCKERFILE.encode(), "x.txt": b"over http\n"})
    server.add("ctx.tar.xz", lzma.compress(archive), etag='"x1"')
    out = tmp_path / "http"
    assert await cli("-q", "-o", str(out), server.url("ctx.tar.xz")) == 0
    assert (out / "ctx/x.txt").read_text() == "over http\n"
    # the daemon's http source revalidated the second time: one full download in all
    assert await cli("-q", "-o", str(tmp_path / "again"), server.url("ctx.tar.xz")) == 0
    sent = [r.sent for r in server.requests_for("ctx.tar.xz") if r.method == "GET"]
    assert sum(sent) == len(lzma.compress(archive))

    capsys.readouterr()
    assert await cli("-q", git.url("proj") + "#no-such-ref") == 1
    err = capsys.readouterr().err
    assert "no-such-ref" in err
    assert "proj" in err  # the error names the ref and the repository
