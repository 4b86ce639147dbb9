"""``ADD <http url>`` through ``dockyard build`` (issue 8's acceptance): an unchanged
ETag downloads nothing the second time — asserted through the test server's request
log — and a changed file is downloaded again; a pinned ``--checksum`` that does not
match fails at its line with nothing kept; a server that keeps dropping the body is
retried, then a clear error."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.httpserver import HttpTestServer, http_date

BODY = b"#!/bin/sh\necho tool v1\n"


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


@pytest.fixture
def server() -> Iterator[HttpTestServer]:
    with HttpTestServer() as srv:
        yield srv


def test_add_with_an_unchanged_etag_downloads_nothing_the_second_time(
    state: Path, tmp_path: Path, server: HttpTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add("tool.sh", BODY, etag='"v1"', last_modified=http_date(1_650_000_000))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nADD {server.url('tool.sh')} /usr/local/bin/tool\n"
        "RUN stat -c '%a %Y' /usr/local/bin/tool > /tool.stat\n"
    )

    def run(name: str) -> tuple[Path, str]:
        out = tmp_path / name
        assert build(state, "--progress", "plain", "-o", str(out), str(ctx)) == 0
        return out, capsys.readouterr().err

    out, _ = run("first")
    assert (out / "usr/local/bin/tool").read_bytes() == BODY
    assert (out / "tool.stat").read_text() == "600 1650000000\n"  # 0600, Last-Modified

    out, err = run("second")
    assert (out / "usr/local/bin/tool").read_bytes() == BODY
    log = server.requests_for("tool.sh")
    assert [(r.method, r.status, r.sent) for r in log] == [
        ("GET", 200, len(BODY)),
        ("GET", 304, 0),  # revalidated with the stored ETag: no body
    ]
    assert log[1].headers["if-none-match"] == '"v1"'
    assert "CACHED" in err  # and the steps after it were not run again

    server.add("tool.sh", b"#!/bin/sh\necho tool v2\n", etag='"v2"')
    out, _ = run("third")
    assert (out / "usr/local/bin/tool").read_bytes() == b"#!/bin/sh\necho tool v2\n"
    assert [r.status for r in server.requests_for("tool.sh")] == [200, 304, 200]


def test_add_checksum_and_a_server_that_keeps_dropping(
    state: Path, tmp_path: Path, server: HttpTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add("tool.sh", BODY)
    server.add("flaky.bin", BODY * 1000, truncate=100)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    good = "sha256:" + hashlib.sha256(BODY).hexdigest()
    (ctx / "Dockerfile").write_text(
        f"FROM scratch\nADD --checksum={good} {server.url('tool.sh')} /tool\n"
    )
    assert build(state, "-q", "-o", str(tmp_path / "out"), str(ctx)) == 0
    assert (tmp_path / "out/tool").read_bytes() == BODY
    capsys.readouterr()

    wrong = "sha256:" + "0" * 64
    server.add("other.sh", BODY)
    (ctx / "Dockerfile").write_text(
        f"FROM scratch\nADD --checksum={wrong} {server.url('other.sh')} /tool\n"
    )
    assert build(state, "--progress", "plain", str(ctx)) == 1
    err = capsys.readouterr().err
    assert "Dockerfile:2" in err
    assert "digest mismatch" in err
    assert main(["du", "--state-dir", str(state), "--verbose"]) == 0
    records = capsys.readouterr().out
    assert server.url("tool.sh") in records  # the good download is a record
    assert server.url("other.sh") not in records  # the refused one left nothing

    (ctx / "Dockerfile").write_text(f"FROM scratch\nADD {server.url('flaky.bin')} /flaky\n")
    assert build(state, "--progress", "plain", str(ctx)) == 1
    err = capsys.readouterr().err
    assert f"downloading {server.url('flaky.bin')} failed after 3 attempts" in err
    assert "Dockerfile:2" in err
    assert "Traceback" not in err
    assert len(server.requests_for("flaky.bin")) == 3
