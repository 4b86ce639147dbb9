"""Secrets served by the client's session to a real ``dockyardd`` (issue 6's
acceptance): a file secret and an environment secret reach the step that mounts them,
and their bytes appear nowhere afterwards — not in the progress output, the daemon's
log, anywhere under its state directory, or the exported image (an OCI tarball streamed
back to the client: index, manifest, config with its history, every layer
decompressed). A rebuild with other secret values is a cache hit: the values are not
part of any cache key."""

from __future__ import annotations

import asyncio
import gzip
import secrets
import tarfile
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.cli.conftest import all_bytes_under
from tests.integration.daemon.conftest import DaemonProcess

ENV = "DY_TEST_DAEMON_SECRET"


def image_blobs(oci_tar: Path) -> list[bytes]:
    out = []
    with tarfile.open(oci_tar) as tar:
        for member in tar.getmembers():
            blob = tar.extractfile(member) if member.isfile() else None
            if blob is not None:
                data = blob.read()
                out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


def assert_nowhere(needles: list[bytes], texts: list[bytes], state: Path, image: Path) -> None:
    blobs = image_blobs(image)
    assert len(blobs) >= 4  # oci-layout, index.json, manifest, config, layers
    for needle in needles:
        for text in texts:
            assert needle not in text
        for path, data in all_bytes_under(state):
            assert needle not in data, f"a secret in {path}"
        for blob in blobs:
            assert needle not in blob, "a secret in the exported image"


async def test_secrets_leave_no_trace_on_the_daemon(
    running: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file_secret = "file-" + secrets.token_hex(16)
    env_secret = "env-" + secrets.token_hex(16)
    (tmp_path / "token").write_text(file_secret)
    monkeypatch.setenv(ENV, env_secret)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token --mount=type=secret,id=envtok "
        "wc -c < /run/secrets/token > /token-length && "
        "wc -c < /run/secrets/envtok > /env-length && "
        "cut -c1-4 /run/secrets/envtok > /env-prefix\n"
    )
    image = tmp_path / "image.tar"

    async def build(*args: str) -> tuple[int, str]:
        code = await asyncio.to_thread(
            main,
            [
                "--addr", f"unix://{running.socket}", "build", "--progress", "plain",
                "--secret", f"id=token,src={tmp_path / 'token'}",
                "--secret", f"id=envtok,env={ENV}", *args, str(ctx),
            ],
        )  # fmt: skip
        return code, capsys.readouterr().err

    code, err = await build(
        "-t",
        "secretive",
        "-o",
        f"type=oci,dest={image}",
        "-o",
        f"type=local,dest={tmp_path / 'out'}",
    )
    assert code == 0, err
    assert (tmp_path / "out/token-length").read_text().strip() == str(len(file_secret))
    assert (tmp_path / "out/env-length").read_text().strip() == str(len(env_secret))
    assert (tmp_path / "out/env-prefix").read_text() == "env-\n"  # the step did read it

    # other values: the step is not run again (the values are in no cache key)
    (tmp_path / "token").write_text("file-other-value")
    monkeypatch.setenv(ENV, "env-other-value")
    code, again = await build("-o", f"type=local,dest={tmp_path / 'again'}")
    assert code == 0, again
    run_step = [line for line in again.splitlines() if "RUN --mount=type=secret" in line]
    assert run_step
    number = run_step[0].split()[0]
    assert f"{number} CACHED" in again

    log = await asyncio.to_thread(running.log.read_bytes)
    await asyncio.to_thread(
        assert_nowhere,
        [file_secret.encode(), env_secret.encode()],
        [err.encode(), again.encode(), log],
        running.state,
        image,
    )
