"""Stopping a child process for good (asyncio), imported on its own like
``dockyard.core.singleflight``.

A caller cancelled while it waits for a process it has signalled must still wait: when
``asyncio.run`` cancels what is left of a failed run and closes its loop, a process
whose exit comes after that is never reaped, and its transport and pipes are freed
unclosed ("subprocess N is still running").
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as _signal
from typing import Any

__all__ = ["stop_process", "wait_through_cancel"]


async def stop_process(proc: asyncio.subprocess.Process, sig: int = _signal.SIGKILL) -> None:
    """Send ``sig`` to ``proc`` unless it has exited, and wait for its exit, even when the
    caller is cancelled meanwhile (the cancellation is raised once it exited). With a
    signal the process may ignore, the wait is as long as it takes it to exit."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    await wait_through_cancel(asyncio.ensure_future(proc.wait()))


async def wait_through_cancel(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, also through cancellations of the caller, which
    are raised once it is (``future`` itself is never cancelled here)."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
