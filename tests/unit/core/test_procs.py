"""Stopping a child process even when the caller is cancelled while it waits."""

from __future__ import annotations

import asyncio
import signal

import pytest

from dockyard.core.procs import stop_process


async def _start(script: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec("sh", "-c", script)


async def test_a_running_process_is_killed_and_reaped() -> None:
    proc = await _start("sleep 30")
    await stop_process(proc)
    assert proc.returncode == -signal.SIGKILL


async def test_an_exited_process_is_only_reaped() -> None:
    proc = await _start("exit 3")
    await proc.wait()
    await stop_process(proc)
    assert proc.returncode == 3


async def test_a_cancelled_stop_waits_for_the_exit_then_raises() -> None:
    """The process ignores SIGTERM for a while: cancelling the stop does not leave it
    unreaped (the old terminate-then-wait returned at once, with the process running)."""
    proc = await _start("trap '' TERM; sleep 0.5")
    await asyncio.sleep(0.2)  # the trap is set
    stopping = asyncio.ensure_future(stop_process(proc, signal.SIGTERM))
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert proc.returncode == 0  # it exited by itself, and was reaped
