"""What ``dockyardd``'s TOML config changes in a real daemon (issue 6): the unix socket's
group (a member connects, another user cannot), allowed entitlements (a build asking for
``security.insecure`` is refused unless the config allows it), the OCI runtime (runc),
and registry mirrors with a plain-HTTP registry (``docker.io`` images pulled from a
local mirror)."""

from __future__ import annotations

import asyncio
import grp
import subprocess
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import need_tools, requirement_missing

from .conftest import DaemonProcess, store_busybox

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # one that user nobody may run (the venv's may be private)
CONNECT = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _group() -> grp.struct_group:
    for name in ("daemon", "adm", "users"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            continue
    requirement_missing("no group daemon, adm or users to give the socket to")
    raise AssertionError  # unreachable


def _connect_as_nobody(socket: Path, *extra_groups: int) -> subprocess.CompletedProcess[str]:
    # setpriv changes the user, not subprocess's user=/group=: those make Python fork
    # instead of vfork, and a fork runs gRPC's at-fork handlers (this pytest process has
    # gRPC loaded), whose "epoll_wait error" once replaced the child's own error
    groups = ",".join(str(g) for g in extra_groups)
    ids = [f"--reuid={NOBODY}", f"--regid={NOBODY}"]
    ids.append(f"--groups={groups}" if groups else "--clear-groups")
    return subprocess.run(
        ["setpriv", *ids, SYSTEM_PYTHON, "-I", "-c", CONNECT, str(socket)],
        capture_output=True,
        text=True,
        check=False,
    )


async def cli(daemon: DaemonProcess, *args: str) -> int:
    return await asyncio.to_thread(main, ["--addr", f"unix://{daemon.socket}", "build", *args])


async def test_the_socket_group_lets_its_members_in(
    daemon: DaemonProcess, daemon_config: Path, socket_dir: Path
) -> None:
    group = _group()
    await asyncio.to_thread(
        _write, daemon_config, f'[grpc]\ngroup = "{group.gr_name}"\n[worker]\nruntime = "crun"\n'
    )
    await daemon.start()
    st = daemon.socket.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, group.gr_gid, 0o660)
    await asyncio.to_thread(socket_dir.chmod, 0o711)  # others reach the socket: its mode decides
    refused = await asyncio.to_thread(_connect_as_nobody, daemon.socket)
    assert refused.returncode != 0
    assert "PermissionError" in refused.stderr
    member = await asyncio.to_thread(_connect_as_nobody, daemon.socket, group.gr_gid)
    assert member.returncode == 0, member.stderr


async def test_entitlements_are_granted_by_the_config_only(
    daemon: DaemonProcess,
    daemon_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN --security=insecure grep CapEff /proc/self/status > /caps\n"
    )
    out = tmp_path / "out"
    await daemon.start()
    code = await cli(daemon, "-q", "--allow", "security.insecure", "-o", str(out), str(ctx))
    err = capsys.readouterr().err
    assert code == 1  # refused by the daemon: a failed build, not a usage error
    assert "granting entitlement security.insecure is not allowed" in err
    assert "allowed-entitlements" in err
    assert "Traceback" not in err
    assert not (out / "caps").exists()
    await daemon.stop()

    await asyncio.to_thread(
        _write,
        daemon_config,
        'allowed-entitlements = ["security.insecure"]\n[worker]\nruntime = "crun"\n',
    )
    await daemon.start()
    assert await cli(daemon, "-q", "--allow", "security.insecure", "-o", str(out), str(ctx)) == 0
    effective = int((out / "caps").read_text().split()[1], 16)
    assert effective & (1 << 21)  # CAP_SYS_ADMIN: a privileged step
    # still only when the build asks for it
    assert await cli(daemon, "-q", "-o", str(tmp_path / "unasked"), str(ctx)) == 2
    assert "needs the security.insecure entitlement" in capsys.readouterr().err


async def test_runc_as_the_runtime(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path
) -> None:
    need_tools("runc")
    await asyncio.to_thread(_write, daemon_config, '[worker]\nruntime = "runc"\n')
    await daemon.start()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo ran under runc > /ran.txt\n")
    assert await cli(daemon, "-q", "-o", str(tmp_path / "out"), str(ctx)) == 0
    assert (tmp_path / "out/ran.txt").read_text() == "ran under runc\n"
    async with daemon.client() as client:
        (worker,) = (await client.workers()).record
    assert "runc" in " ".join(f"{k}={v}" for k, v in worker.labels.items())


async def test_docker_io_images_come_from_the_configured_mirror(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path, busybox_rootfs: Path
) -> None:
    need_tools("skopeo")
    if not await asyncio.to_thread(Path(REGISTRY_BINARY).is_file):
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    layout = tmp_path / "layout"
    await store_busybox(tmp_path / "scratch-state", busybox_rootfs, layout=layout)
    with start_registry(tmp_path / "registry") as registry:
        copied = await asyncio.create_subprocess_exec(
            "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
            f"oci:{layout}:latest", f"docker://{registry.ref('library/mirrored:1')}",
        )  # fmt: skip
        assert await copied.wait() == 0
        await asyncio.to_thread(
            _write,
            daemon_config,
            '[worker]\nruntime = "crun"\n'
            f'[registry."docker.io"]\nmirrors = ["{registry.host}"]\n'
            f'[registry."{registry.host}"]\nhttp = true\n',
        )
        await daemon.start()
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM mirrored:1\nRUN head -1 /etc/passwd > /first-user\n")
        assert await cli(daemon, "-q", "-o", str(tmp_path / "out"), str(ctx)) == 0
        assert (tmp_path / "out/first-user").read_text().startswith("root:")
        assert "/v2/library/mirrored/manifests/1" in registry.log()
