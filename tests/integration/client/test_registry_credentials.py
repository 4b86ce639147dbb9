"""Registry credentials on a real ``dockyardd`` (issue 6): they live in the client's
docker config file, and the daemon asks the client for them over the session when it
needs them — to pull a base image from a password-protected registry (TLS, htpasswd)
and to push the result there. Without them the build fails naming the registry; the
password never reaches the progress output, the daemon's log or its state directory."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.cli.conftest import all_bytes_under
from tests.integration.conftest import need_tools, requirement_missing
from tests.integration.daemon.conftest import DaemonProcess, store_busybox


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"{args[0]} failed: {err.decode()}"
    return out.decode()


def _no_password_under(state: Path, password: bytes) -> None:
    for path, data in all_bytes_under(state):
        assert password not in data, f"the password in {path}"


async def test_the_daemon_asks_the_client_for_registry_credentials(
    running: DaemonProcess,
    busybox_rootfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need_tools("skopeo", "htpasswd", "openssl")
    if not await asyncio.to_thread(Path(REGISTRY_BINARY).is_file):
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    layout = tmp_path / "layout"
    await store_busybox(tmp_path / "scratch-state", busybox_rootfs, layout=layout)
    registry = await asyncio.to_thread(
        start_registry, tmp_path / "registry", auth="htpasswd", tls=True
    )
    try:
        user, password = next(iter(registry.users.items()))
        base = registry.ref("private/busybox:1")
        await run(
            "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
            "--dest-creds", f"{user}:{password}", f"oci:{layout}:latest", f"docker://{base}",
        )  # fmt: skip
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo built > /built.txt\n")
        pushed = registry.ref("private/app:1")
        addr = ["--addr", f"unix://{running.socket}"]

        async def build(*args: str) -> tuple[int, str]:
            code = await asyncio.to_thread(main, [*addr, "build", "--progress", "plain", *args])
            return code, capsys.readouterr().err

        # no credentials in the client's docker config: the pull is refused
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))
        code, err = await build(str(ctx))
        assert code == 1, err
        assert registry.host in err
        assert "Traceback" not in err

        docker_config = tmp_path / "docker-config"
        docker_config.mkdir()
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (docker_config / "config.json").write_text(
            json.dumps({"auths": {registry.host: {"auth": auth}}})
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
        code, err = await build("-t", pushed, "--push", str(ctx))
        assert code == 0, err
        assert "pushed" in err
        listing = await run(
            "skopeo", "inspect", "--tls-verify=false", "--creds", f"{user}:{password}",
            f"docker://{pushed}",
        )  # fmt: skip
        inspected = json.loads(listing)
        assert inspected["Name"] == registry.ref("private/app")
        assert len(inspected["Layers"]) == 2  # busybox's layer and the RUN step's

        for secret in (password, auth):
            assert secret not in err
            assert secret not in running.log_text()
            await asyncio.to_thread(_no_password_under, running.state, secret.encode())
    finally:
        await asyncio.to_thread(registry.stop)
