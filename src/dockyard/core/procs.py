"""Stopping a child process for good (asyncio), imported on its own like
``dockyard.core.singleflight``.

A caller cancelled while it waits for a process it has signalled must still wait: when
``asyncio.run`` cancels what is left of a failed run and closes its loop, a process
whose exit comes after that is never reaped, and its transport and pipes are freed
unclosed ("subprocess N is still running"). Nothing here waits in a task of its own:
``asyncio.run`` cancels every task as it ends, a wait in a separate task as well.

A stop waits for the exit of the process, not for the end of its pipes: a process it
started may hold them open for as long as it lives (``Process.wait()`` of Python 3.11
waits for both). Once the process exited its pipes are closed; what still holds them is
not ours to wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as _signal
from typing import Any

__all__ = ["stop_process", "wait_through_cancel"]


async def stop_process(
    proc: asyncio.subprocess.Process, sig: int = _signal.SIGKILL, *, group: bool = False
) -> None:
    """Send ``sig`` to ``proc`` unless it has exited, wait for its exit, close its pipes
    (what it wrote and nobody read is dropped) and wait until its exit is reported (it
    is reaped), even when the caller is cancelled meanwhile (the cancellation is raised
    once it is). With a signal the process may ignore, the wait is as long as it takes
    it to exit.

    ``group``: ``proc`` leads a process group of its own (``start_new_session=True``) and
    the signal goes to the whole group, so what it started stops too (also when
    ``proc`` itself has exited already)."""
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
    elif proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    cancelled = False
    exited = _exit_future(proc)
    if exited is not None:
        try:
            await wait_through_cancel(exited)
        except asyncio.CancelledError:
            cancelled = True
        _close_pipes(proc)
    while True:
        try:
            # awaited here, not in a task of its own (see the module docstring); a
            # cancellation drops only this wait's own future
            await proc.wait()
            break
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _exit_future(proc: asyncio.subprocess.Process) -> asyncio.Future[None] | None:
    """A future done once ``proc`` has exited (a zombie is enough: the loop's child
    watcher reaps it), watched through a pidfd; ``None`` without pidfds (Linux < 5.3),
    where a stop waits for the end of the pipes as well."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    if proc.returncode is not None:
        done.set_result(None)
        return done
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # reaped already: its exit is on its way to the loop
        done.set_result(None)
        return done
    except (AttributeError, OSError):
        return None

    def readable() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    return done


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    # asyncio.subprocess.Process keeps its transport private; only the pipes are closed
    # (closing the transport itself would poll, and so perhaps reap, the process under
    # the child watcher's feet)
    transport = getattr(proc, "_transport", None)
    if not isinstance(transport, asyncio.SubprocessTransport):
        return
    for fd in (0, 1, 2):
        pipe = transport.get_pipe_transport(fd)
        if pipe is not None:
            pipe.close()


async def wait_through_cancel(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, also through cancellations of the caller, which
    are raised once it is (``future`` itself is never cancelled here; a task would be
    by ``asyncio.run`` as it ends: pass a plain future)."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
