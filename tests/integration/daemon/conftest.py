"""A real ``dockyardd`` process per test, as root: a temporary state directory holding
the busybox base image, a socket in a short temporary directory, stopped by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import DockyardError
from tests.integration.conftest import need_tools

from .client import DaemonClient

ROOT = Path(__file__).resolve().parents[3]


def _store_image() -> Any:
    spec = importlib.util.spec_from_file_location(
        "examples_busybox_image_daemon", ROOT / "examples" / "busybox_image.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.store_image


store_busybox = _store_image()


class DaemonProcess:
    """``dockyardd`` on ``state`` listening on ``socket``; :meth:`start` waits until it
    answers. Its log is kept in ``log``."""

    def __init__(self, state: Path, socket: Path, config: Path, log: Path) -> None:
        self.state = state
        self.socket = socket
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def target(self) -> str:
        return f"unix:{self.socket}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def client(self) -> DaemonClient:
        return DaemonClient(self.target)

    async def start(self, *extra: str) -> None:
        assert self.process is None or self.process.returncode is not None
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dockyard.cli.daemon",
                "--config",
                str(self.config),
                "--addr",
                f"unix://{self.socket}",
                "--state-dir",
                str(self.state),
                *extra,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = self.process

        async def answers() -> bool:
            if process.returncode is not None:
                raise AssertionError(
                    f"dockyardd exited with {process.returncode}:\n{self.log_text()}"
                )
            if not self.socket.exists():
                return False
            try:
                async with self.client() as client:
                    await client.info()
            except DockyardError:
                return False
            return True

        await eventually(answers, 60)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, sig: int = signal.SIGTERM, limit: float = 60) -> int:
        """Signal the daemon and wait for it to exit; its exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            os.kill(self.process.pid, sig)
        return await asyncio.wait_for(self.process.wait(), limit)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 30) -> None:
    """Wait until ``check()`` is true (polling), at most ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


def mounts_under(path: Path) -> list[str]:
    """Mount points (of this mount namespace) at or below ``path``."""
    prefix = str(path)
    out: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = line.split(" ")[4]
            if point == prefix or point.startswith(prefix + "/"):
                out.append(point)
    return out


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker``."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            if marker.encode() in cmdline and int(entry) != os.getpid():
                found.append(int(entry))
    return found


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dy-dd-") as name:
        yield Path(name)


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    """The daemon's config file; tests may rewrite it before starting the daemon."""
    path = tmp_path / "dockyardd.toml"
    path.write_text('[worker]\nruntime = "crun"\n')
    return path


@pytest.fixture
async def daemon(
    busybox_rootfs: Path, tmp_path: Path, socket_dir: Path, daemon_config: Path
) -> AsyncIterator[DaemonProcess]:
    """A daemon (not started) on a state directory holding busybox; stopped (and its
    state checked for leftover mounts) at the end."""
    need_tools("crun")
    state = tmp_path / "state"
    await store_busybox(state, busybox_rootfs)
    process = DaemonProcess(state, socket_dir / "d.sock", daemon_config, tmp_path / "daemon.log")
    try:
        yield process
    finally:
        if process.alive:
            code = await process.stop()
            assert code == 0, process.log_text()
        assert not mounts_under(state), process.log_text()


@pytest.fixture
async def running(daemon: DaemonProcess) -> DaemonProcess:
    await daemon.start()
    return daemon
