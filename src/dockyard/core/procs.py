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

__all__ = ["stop_process"]


async def stop_process(proc: asyncio.subprocess.Process, sig: int = _signal.SIGKILL) -> None:
    """Send ``sig`` to ``proc`` unless it has exited, and wait for its exit, even when the
    caller is cancelled meanwhile (the cancellation is raised once it exited). With a
    signal the process may ignore, the wait is as long as it takes it to exit."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    cancelled = False
    while True:
        try:
            await asyncio.shield(proc.wait())
        except asyncio.CancelledError:
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
