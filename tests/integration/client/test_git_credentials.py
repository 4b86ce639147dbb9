"""Git credentials from the client's session secrets through a real ``dockyard build``
(issue 8), on the embedded engine and on a real ``dockyardd``: ``ADD <private repo>``
authenticates with ``--secret id=GIT_AUTH_TOKEN,env=…`` (BuildKit's name), and the token
appears nowhere afterwards — not in the progress output, the state directory (layers,
cache keys and records in ``metadata.db``, the repository cache, the kept ``.git``),
the exported image (config, history, every layer decompressed) or the daemon's log.
Without the secret the build fails with an error naming the repository."""

from __future__ import annotations

import asyncio
import base64
import gzip
import secrets
import tarfile
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.gitserver import GitHttpServer, TestRepo
from tests.integration.cli.conftest import all_bytes_under
from tests.integration.conftest import need_tools
from tests.integration.daemon.conftest import DaemonProcess
from tests.integration.engine.conftest import store_busybox

ENV = "DY_TEST_GIT_TOKEN"


def image_bytes(oci_tar: Path) -> list[bytes]:
    """Every blob of an OCI tarball, gzip layers decompressed."""
    out = []
    with tarfile.open(oci_tar) as tar:
        for member in tar.getmembers():
            blob = tar.extractfile(member) if member.isfile() else None
            if blob is None:
                continue
            data = blob.read()
            out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


async def build_private_repo(
    where: list[str],
    state: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    daemon_log: Path | None = None,
) -> None:
    need_tools("git")
    token = "ghs_" + secrets.token_hex(16)
    wanted = "basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    repo = TestRepo(tmp_path / "private" / "secret-proj.git")
    repo.commit({"data.txt": "private data\n"}, "private")
    monkeypatch.setenv(ENV, token)
    before, after = (where, []) if where[0] == "--addr" else ([], where)
    with GitHttpServer(tmp_path / "private", auth=wanted) as server:
        url = server.url("secret-proj.git")
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM busybox\nADD {url} /repo\nADD --keep-git-dir=true {url} /kept\n"
            "RUN cat /repo/data.txt > /copied.txt && ls -a /kept > /kept.txt\n"
        )
        image = tmp_path / "image.tar"

        async def cli(*args: str) -> int:
            return await asyncio.to_thread(main, [*before, "build", *after, *args])

        # no credentials: refused by the server, an error naming the repository
        code = await cli("--progress", "plain", str(ctx))
        err = capsys.readouterr().err
        assert code == 1, err
        assert "secret-proj.git" in err
        assert "Traceback" not in err

        code = await cli(
            "--progress", "plain", "--secret", f"id=GIT_AUTH_TOKEN,env={ENV}",
            "-o", f"type=oci,dest={image}", "-o", f"type=local,dest={tmp_path / 'out'}",
            str(ctx),
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        assert any(r.authorization == wanted and r.status == 200 for r in server.requests)
    assert (tmp_path / "out/copied.txt").read_text() == "private data\n"
    assert ".git" in (tmp_path / "out/kept.txt").read_text().split()

    needles = (token.encode(), wanted.split()[1].encode())
    logs = [err.encode()]
    if daemon_log is not None:
        logs.append(await asyncio.to_thread(daemon_log.read_bytes))
    await asyncio.to_thread(assert_nowhere, needles, logs, state, tmp_path / "out", image)


def assert_nowhere(
    needles: tuple[bytes, ...], logs: list[bytes], state: Path, out: Path, image: Path
) -> None:
    for needle in needles:
        for log in logs:
            assert needle not in log, "the token in the progress output or the daemon's log"
        for path, data in all_bytes_under(state):
            assert needle not in data, f"the token in {path}"
        for path, data in all_bytes_under(out):
            assert needle not in data, f"the token in the output's {path}"
        for blob in image_bytes(image):
            assert needle not in blob, "the token in the exported image"


async def test_git_token_from_secrets_embedded(
    busybox_rootfs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mountinfo_unchanged: None,
) -> None:
    need_tools("crun")
    state = tmp_path / "state"
    await store_busybox(state, busybox_rootfs)
    await build_private_repo(["--state-dir", str(state)], state, tmp_path, capsys, monkeypatch)


async def test_git_token_from_secrets_on_the_daemon(
    running: DaemonProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = ["--addr", f"unix://{running.socket}"]
    await build_private_repo(where, running.state, tmp_path, capsys, monkeypatch, running.log)
