"""``dockyard build --provenance`` of a remote context (the client fetches it and serves
it as a directory): ``configSource`` names the URL as given, its password masked, and
its digest — the commit of a git context, the sha256 of an http download — which is a
material too, as when BuildKit's frontend fetches the URL itself."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from dockyard.source import redact_url
from dockyard.testing.gitserver import GitHttpServer, TestRepo
from dockyard.testing.httpserver import HttpTestServer
from tests.integration.conftest import need_tools

PASSWORD = "pw-9d7c1e0b"
DOCKERFILE = "FROM scratch\nCOPY hello.txt /\n"


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[TestRepo, GitHttpServer]]:
    need_tools("git")
    repo = TestRepo(tmp_path / "repos" / "proj.git")
    repo.commit({"app/Dockerfile": DOCKERFILE, "app/hello.txt": "hello v1\n"}, "one")
    repo.tag("v1")
    repo.commit({"app/hello.txt": "hello main\n"}, "two")
    with GitHttpServer(tmp_path / "repos") as server:
        yield repo, server


def _statement(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "provenance.json").read_text())
    return data


def _build(state: Path, out: Path, context: str, *extra: str) -> list[str]:
    return [
        "build", "--state-dir", str(state), "--progress", "plain",
        "--provenance", "mode=min", *extra, "-o", f"type=local,dest={out}", context,
    ]  # fmt: skip


def test_git_context_records_uri_and_commit(
    state: Path,
    tmp_path: Path,
    git_server: tuple[TestRepo, GitHttpServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, server = git_server
    url = server.url("proj.git", userinfo=f"builder:{PASSWORD}") + "#v1:app"
    out = tmp_path / "out"
    code = main(_build(state, out, url))
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "hello.txt").read_text() == "hello v1\n"
    assert sorted(p.name for p in out.iterdir()) == ["hello.txt", "provenance.json"]
    predicate = _statement(out)["predicate"]
    commit = repo.rev_parse("v1")
    uri = redact_url(url)
    assert "builder:xxxxx@" in uri
    assert predicate["invocation"]["configSource"] == {
        "uri": uri,
        "digest": {"sha1": commit},
        "entryPoint": "Dockerfile",
    }
    assert {"uri": uri, "digest": {"sha1": commit}} in predicate["materials"]
    args = predicate["invocation"]["parameters"].get("args", {})
    assert "context" not in args
    assert "context-digest" not in args
    assert PASSWORD not in (out / "provenance.json").read_text()
    assert PASSWORD not in err


def test_git_context_keeps_no_git_dir(
    state: Path,
    tmp_path: Path,
    git_server: tuple[TestRepo, GitHttpServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The checkout fetched with its .git (to read the commit) is served without it."""
    repo, server = git_server
    repo.commit({"Dockerfile": "FROM scratch\nCOPY . /all/\n"}, "three")
    out = tmp_path / "out"
    code = main(_build(state, out, server.url("proj.git") + "#main"))
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in (out / "all").iterdir()) == ["Dockerfile", "app"]
    predicate = _statement(out)["predicate"]
    assert predicate["invocation"]["configSource"]["digest"] == {"sha1": repo.rev_parse("main")}


def test_http_context_records_uri_and_sha256(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("Dockerfile", DOCKERFILE.encode()), ("hello.txt", b"from http\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    with HttpTestServer() as server:
        server.add("ctx.tar.gz", archive, etag='"c1"')
        url = server.url("ctx.tar.gz")
        out = tmp_path / "out"
        code = main(_build(state, out, url))
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "hello.txt").read_text() == "from http\n"
    predicate = _statement(out)["predicate"]
    digest = {"sha256": hashlib.sha256(archive).hexdigest()}
    assert predicate["invocation"]["configSource"] == {
        "uri": url,
        "digest": digest,
        "entryPoint": "Dockerfile",
    }
    assert {"uri": url, "digest": digest} in predicate["materials"]
