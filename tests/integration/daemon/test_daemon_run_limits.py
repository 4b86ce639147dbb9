"""``dockyard --addr ... build --add-host/--ulimit/--shm-size/--cgroup-parent`` through a
real ``dockyardd``: the flags travel as BuildKit's frontend attributes (``add-hosts``,
``ulimit``, ``shm-size``, ``cgroup-parent``) and reach the daemon's RUN steps."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.conftest import need_tools

from .conftest import DaemonProcess

REPORT = (
    "FROM busybox\n"
    "RUN (grep -E '\\s(db|gw)$' /etc/hosts; echo soft=$(ulimit -n) hard=$(ulimit -Hn);"
    " df -k /dev/shm | tail -n 1; cut -d: -f3 /proc/self/cgroup | sort -u) > /report\n"
)


async def cli(daemon: DaemonProcess, *args: str) -> int:
    return await asyncio.to_thread(main, ["--addr", f"unix://{daemon.socket}", "build", *args])


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(REPORT)
    return ctx


def _remove_cgroups(parent: str) -> None:
    """The parent cgroup runc made in every hierarchy (runc removes the steps' own)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for leftover in sorted(hierarchy.glob(f"{parent}/**/"), reverse=True):
            with contextlib.suppress(OSError):
                leftover.rmdir()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{parent}"))


def _report(out: Path) -> list[str]:
    return (out / "report").read_text().splitlines()


async def test_run_limits_reach_the_daemons_run_steps(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    out = tmp_path / "out"
    code = await cli(
        running, "-q", "-o", str(out), "--add-host", "db=10.9.8.7", "--add-host",
        "gw:host-gateway", "--ulimit", "nofile=1000:1500", "--shm-size", "32m", str(ctx),
    )  # fmt: skip
    assert code == 0, running.log_text()
    lines = await asyncio.to_thread(_report, out)
    assert lines[:3] == ["10.9.8.7\tdb", "127.0.0.1\tgw", "soft=1000 hard=1500"]
    assert lines[3].split()[1] == "32768"  # df's 1K-blocks of /dev/shm


async def test_bad_values_are_refused_before_the_daemon_is_asked(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path)
    assert await cli(running, "--ulimit", "nofile=9:8", str(ctx)) == 2
    assert "--ulimit nofile=9:8" in capsys.readouterr().err


async def test_cgroup_parent_on_a_runc_daemon(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path
) -> None:
    need_tools("runc")
    await asyncio.to_thread(daemon_config.write_text, '[worker]\nruntime = "runc"\n')
    await daemon.start()
    parent = f"dy-test-{secrets.token_hex(4)}"
    out = tmp_path / "out"
    try:
        code = await cli(
            daemon, "-q", "-o", str(out), "--cgroup-parent", parent, str(_context(tmp_path))
        )
        assert code == 0, daemon.log_text()
        cgroups = (await asyncio.to_thread(_report, out))[-1:]
        assert cgroups[0].startswith(f"/{parent}/dockyard/dy-"), cgroups
    finally:
        await asyncio.to_thread(_remove_cgroups, parent)
