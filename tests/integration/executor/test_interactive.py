"""Interactive processes (``--invoke``'s shell) with crun: plain pipes without a
terminal, a pty through the console socket with one, and nothing left behind when the
shell is cancelled (no mount, no container, the terminal's settings back)."""

from __future__ import annotations

import asyncio
import os
import termios
import uuid
from pathlib import Path

from dockyard.executor import OciExecutor, ProcessSpec, SecretMount
from dockyard.executor.types import Stdio
from dockyard.testing.processes import processes_with
from tests.integration.conftest import Overlay


async def _read_until(fd: int, want: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    deadline = loop.time() + 30.0
    while want not in data and loop.time() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.02)
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


async def test_without_a_terminal_the_process_uses_the_pipes(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    script = tmp_path / "in"
    script.write_text("cat /run/secrets/s; echo in-$((2*3)) > /made; tty; exit 4\n")
    out = tmp_path / "out"
    stdin = os.open(script, os.O_RDONLY)
    stdout = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        status = await executor.run_interactive(
            root=busybox_overlay.mounts,
            mounts=[SecretMount(dest="/run/secrets/s", data=b"the-secret\n")],
            process=ProcessSpec(args=("/bin/sh",)),
            stdio=Stdio(stdin=stdin, stdout=stdout, stderr=stdout),
        )
    finally:
        os.close(stdin)
        os.close(stdout)
    assert status == 4
    text = out.read_text()
    assert "the-secret" in text
    assert "not a tty" in text
    assert (busybox_overlay.upper / "made").read_text() == "in-6\n"


async def test_a_terminal_comes_through_the_console_socket(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    saved = termios.tcgetattr(slave)
    try:
        running = asyncio.ensure_future(
            executor.run_interactive(
                root=busybox_overlay.mounts,
                process=ProcessSpec(args=("/bin/sh",)),
                stdio=Stdio(stdin=slave, stdout=slave, stderr=slave),
            )
        )
        assert b"# " in await _read_until(master, b"# ")
        assert termios.tcgetattr(slave) != saved  # raw while the shell runs
        os.write(master, b"tty; grep -c Seccomp /proc/self/status; exit 6\n")
        status = await asyncio.wait_for(running, 60)
        assert status == 6
        rest = await _read_until(master, b"/dev/pts/0")
        assert b"/dev/pts/0" in rest
        assert termios.tcgetattr(slave) == saved
    finally:
        os.close(master)
        os.close(slave)


async def test_cancelling_the_shell_leaves_nothing(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    marker = "dy-invoke-" + uuid.uuid4().hex
    master, slave = os.openpty()
    os.set_blocking(master, False)
    saved = termios.tcgetattr(slave)
    try:
        running = asyncio.ensure_future(
            executor.run_interactive(
                root=busybox_overlay.mounts,
                process=ProcessSpec(args=("/bin/sh",)),
                stdio=Stdio(stdin=slave, stdout=slave, stderr=slave),
            )
        )
        await _read_until(master, b"# ")
        os.write(master, f"sh -c 'sleep 1000; echo {marker}'\n".encode())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60  # only against a hang
        while loop.time() < deadline:
            if processes_with(marker):
                break
            await asyncio.sleep(0.02)
        assert processes_with(marker)
        running.cancel()
        try:
            await running
        except asyncio.CancelledError:
            pass
        assert not processes_with(marker)
        assert termios.tcgetattr(slave) == saved
    finally:
        os.close(master)
        os.close(slave)
    # (the executor fixture checks bundles, runtime state and mounts)
