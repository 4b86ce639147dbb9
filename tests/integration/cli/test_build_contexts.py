"""Where a build's context comes from: a git repository (``#ref:subdir``), an http(s)
tarball or Dockerfile, stdin (a tarball or a Dockerfile, and ``-f -``), named contexts
(a directory, an image) — through ``dockyard build`` on the embedded engine."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.gitserver import GitDaemon, TestRepo
from dockyard.testing.httpserver import HttpTestServer
from tests.integration.conftest import need_tools

DOCKERFILE = "FROM busybox\nCOPY . /ctx\nRUN ls /ctx > /listing.txt\n"


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


def dockyard(state: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    command = [str(Path(sys.executable).parent / "dockyard"), "build", "--state-dir", str(state)]
    return subprocess.run([*command, *args], input=stdin, capture_output=True, check=False)


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def git_repo(tmp_path: Path) -> Iterator[tuple[TestRepo, GitDaemon]]:
    need_tools("git")
    repos = tmp_path / "repos"
    repo = TestRepo(repos / "proj")
    repo.commit(
        {"README": "root\n", "app/Dockerfile": DOCKERFILE, "app/hello.txt": "hello\n"}, "one"
    )
    repo.branch("release")
    repo.commit({"app/hello.txt": "hello again\n"}, "two")
    with GitDaemon(repos) as daemon:
        yield repo, daemon


def test_a_git_context_at_a_ref_and_subdir(
    state: Path,
    tmp_path: Path,
    git_repo: tuple[TestRepo, GitDaemon],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, daemon = git_repo
    out = tmp_path / "out"
    assert (
        build(state, "--progress", "plain", "-o", str(out), daemon.url("proj") + "#main:app") == 0
    )
    assert (out / "ctx/hello.txt").read_text() == "hello again\n"
    assert (out / "listing.txt").read_text().split() == ["Dockerfile", "hello.txt"]
    assert "[internal] load git source git://127.0.0.1:" in capsys.readouterr().err
    out = tmp_path / "release"
    assert build(state, "-q", "-o", str(out), daemon.url("proj") + "#release:app") == 0
    assert (out / "ctx/hello.txt").read_text() == "hello\n"
    # -f names a file inside the repository
    out = tmp_path / "dash-f"
    assert build(state, "-q", "-f", "app/Dockerfile", "-o", str(out), daemon.url("proj")) == 0
    assert sorted((out / "ctx").iterdir()) == [out / "ctx/README", out / "ctx/app"]
    capsys.readouterr()
    assert build(state, "-q", "-o", str(out), daemon.url("proj") + "#nosuchref") == 1
    assert "nosuchref" in capsys.readouterr().err


def test_http_contexts(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = HttpTestServer()
    server.start()
    try:
        archive = gzip.compress(
            tarball({"Dockerfile": DOCKERFILE.encode(), "a.txt": b"from a tarball\n"})
        )
        server.add("ctx.tar.gz", archive, etag='"v1"')
        server.add("Dockerfile", b"FROM busybox\nRUN echo from a url > /url.txt\n")
        out = tmp_path / "tar"
        assert build(state, "-q", "-o", str(out), server.url("ctx.tar.gz")) == 0
        assert (out / "ctx/a.txt").read_text() == "from a tarball\n"
        # again: the engine's http source revalidates, nothing is downloaded twice
        assert build(state, "-q", "-o", str(tmp_path / "again"), server.url("ctx.tar.gz")) == 0
        sent = [r.sent for r in server.requests_for("ctx.tar.gz") if r.method == "GET"]
        assert sum(sent) == len(archive)
        out = tmp_path / "file"
        assert build(state, "-q", "-o", str(out), server.url("Dockerfile")) == 0
        assert (out / "url.txt").read_text() == "from a url\n"
    finally:
        server.stop()


def test_stdin_contexts(state: Path, tmp_path: Path) -> None:
    archive = tarball(
        {
            "Dockerfile": DOCKERFILE.encode(),
            "b.txt": b"from stdin\n",
            "sub/Other": b"FROM busybox\nCOPY b.txt /\n",
        }
    )
    out = tmp_path / "tar"
    result = dockyard(state, "-q", "-o", str(out), "-", stdin=gzip.compress(archive))
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "ctx/b.txt").read_text() == "from stdin\n"
    out = tmp_path / "tar-f"
    result = dockyard(state, "-q", "-f", "sub/Other", "-o", str(out), "-", stdin=archive)
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "b.txt").read_text() == "from stdin\n"

    out = tmp_path / "dockerfile"
    result = dockyard(
        state, "-q", "-o", str(out), "-", stdin=b"FROM busybox\nRUN echo piped > /p.txt\n"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "p.txt").read_text() == "piped\n"

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "c.txt").write_text("context file\n")
    out = tmp_path / "dash-f"
    result = dockyard(
        state, "-q", "-f", "-", "-o", str(out), str(ctx), stdin=b"FROM scratch\nCOPY c.txt /\n"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "c.txt").read_text() == "context file\n"

    hostile = tarball({"Dockerfile": b"FROM scratch\n", "../escape.txt": b"x"})
    result = dockyard(state, "-q", "-o", str(tmp_path / "h"), "-", stdin=hostile)
    assert result.returncode == 1
    assert b"escape.txt" in result.stderr
    assert not (tmp_path / "escape.txt").exists()


def test_named_contexts(state: Path, tmp_path: Path) -> None:
    ctx, extra = tmp_path / "ctx", tmp_path / "extra"
    ctx.mkdir()
    extra.mkdir()
    (extra / "e.txt").write_text("extra\n")
    (extra / ".dockerignore").write_text("ignored.txt\n")
    (extra / "ignored.txt").write_text("no\n")
    (ctx / "Dockerfile").write_text(
        "FROM base AS b\nRUN echo based > /based.txt\n"
        "FROM scratch\nCOPY --from=b /based.txt /\nCOPY --from=extra / /extra/\n"
    )
    out = tmp_path / "out"
    code = build(
        state, "-q", "--build-context", f"extra={extra}", "--build-context",
        "base=docker-image://busybox", "-o", str(out), str(ctx),
    )  # fmt: skip
    assert code == 0
    assert (out / "based.txt").read_text() == "based\n"
    assert sorted(p.name for p in (out / "extra").iterdir()) == [".dockerignore", "e.txt"]


def test_a_dockerfile_from_a_pipe(state: Path, tmp_path: Path) -> None:
    """``-f <(...)`` (bash's /dev/fd/N): the Dockerfile is read from the pipe, as docker's
    CLI does; an empty one is a usage error naming it."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    out = tmp_path / "out"
    for dockerfile, expected in ((b"FROM busybox\nCOPY hello.txt /piped.txt\n", 0), (b"", 2)):
        read_end, write_end = os.pipe()
        os.write(write_end, dockerfile)
        os.close(write_end)
        try:
            command = [str(Path(sys.executable).parent / "dockyard"), "build"]
            result = subprocess.run(
                [
                    *command,
                    "--state-dir",
                    str(state),
                    "-f",
                    f"/dev/fd/{read_end}",
                    "-o",
                    f"type=local,dest={out}",
                    str(ctx),
                ],
                capture_output=True,
                check=False,
                pass_fds=(read_end,),
            )
        finally:
            os.close(read_end)
        assert result.returncode == expected, result.stderr
    assert (out / "piped.txt").read_text() == "hello\n"
    assert f"the Dockerfile on /dev/fd/{read_end} is empty" in result.stderr.decode()
