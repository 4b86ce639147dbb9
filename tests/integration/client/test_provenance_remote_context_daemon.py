"""Provenance of a remote git context through a real ``dockyardd`` (``--addr``): the
client fetches the context through the daemon, and the URL and the commit it learned
travel as frontend attributes (``context``, ``context-digest``) into the daemon's
predicate, ``configSource.uri``/``digest`` of the ``provenance.json`` synced back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.gitserver import GitHttpServer, TestRepo
from tests.integration.conftest import need_tools
from tests.integration.daemon.conftest import DaemonProcess


async def test_daemon_records_the_git_context(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_tools("git")
    repo = TestRepo(tmp_path / "repos" / "proj.git")
    repo.commit({"Dockerfile": "FROM scratch\nCOPY hello.txt /\n", "hello.txt": "hi\n"}, "one")
    commit = repo.rev_parse("HEAD")
    out = tmp_path / "out"
    with GitHttpServer(tmp_path / "repos") as server:
        url = server.url("proj.git") + "#main"
        argv = [
            "--addr", f"unix://{running.socket}", "build", "--progress", "plain",
            "--provenance", "mode=min", "-o", f"type=local,dest={out}", url,
        ]  # fmt: skip
        code = await asyncio.to_thread(main, argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "hello.txt").read_text() == "hi\n"
    predicate = json.loads((out / "provenance.json").read_text())["predicate"]
    assert predicate["invocation"]["configSource"] == {
        "uri": url,
        "digest": {"sha1": commit},
        "entryPoint": "Dockerfile",
    }
    assert {"uri": url, "digest": {"sha1": commit}} in predicate["materials"]
    # the checkout the client served is no local source, as BuildKit lists none
    assert "locals" not in predicate["invocation"]["parameters"]
    assert predicate["metadata"]["completeness"]["materials"] is True
    assert predicate["metadata"]["https://mobyproject.org/buildkit@v1#hermetic"] is True
