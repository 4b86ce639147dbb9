"""Child processes and thread work watched with futures and loop callbacks, not tasks.

asyncio's subprocess API runs its own tasks and a waiter thread per child, and
``asyncio.to_thread`` is a task too. When a loop shuts down it cancels every task; those
helpers could then be cancelled half-way and a runtime process (with its container), or
a mount made by a thread that was still running, be lost. Here thread work is a plain
executor future, the output pipes and a pidfd are readers on the loop, and completion is
a plain future: nothing that "cancel every task" reaches, so the executor can always
kill, reap and unmount what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Child", "in_thread", "settle"]

_T = TypeVar("_T")
_READ_CHUNK = 1 << 16


async def settle(fut: asyncio.Future[Any]) -> bool:
    """Wait until ``fut`` is done even if we are cancelled meanwhile (``fut`` is never
    cancelled by us). Returns whether a cancellation arrived while waiting."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run blocking ``fn(*args)`` in the loop's default thread pool to the end.

    Cancelling the caller does not abandon the work: the call waits for it to finish
    (so whatever it made can be cleaned up), then raises the cancellation.
    """
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, functools.partial(fn, *args))
    if await settle(fut):
        if not fut.cancelled():
            fut.exception()  # mark retrieved; the cancellation wins
        raise asyncio.CancelledError
    return fut.result()


class Child:
    """A started process whose stdout/stderr (when piped) go to ``sink(stream, data)``.

    :attr:`done` resolves to the exit status (negative for a signal, as ``Popen``) once
    the process has exited and both pipes reached end of file.
    """

    def __init__(self, popen: subprocess.Popen[bytes], sink: Callable[[int, bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.popen = popen
        self._sink = sink
        self._open = 0
        self._status: int | None = None
        self.done: asyncio.Future[int] = self._loop.create_future()
        self._pipes: dict[int, tuple[int, Any]] = {}
        for stream, pipe in ((1, popen.stdout), (2, popen.stderr)):
            if pipe is not None:
                fd = pipe.fileno()
                os.set_blocking(fd, False)
                self._pipes[fd] = (stream, pipe)
                self._open += 1
                self._loop.add_reader(fd, self._readable, fd)
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            # no pidfd (Linux < 5.3): a thread blocks in waitpid instead
            wait = self._loop.run_in_executor(None, popen.wait)
            wait.add_done_callback(lambda f: self._exited(popen.returncode))
        else:
            self._loop.add_reader(self._pidfd, self._pid_readable)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def exited(self) -> bool:
        return self._status is not None

    def _readable(self, fd: int) -> None:
        stream, pipe = self._pipes[fd]
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            with contextlib.suppress(Exception):  # a faulty sink must not wedge the child
                self._sink(stream, data)
            return
        self._loop.remove_reader(fd)
        pipe.close()
        self._open -= 1
        self._maybe_done()

    def _pid_readable(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._exited(self.popen.wait())

    def _exited(self, status: int | None) -> None:
        self._status = status if status is not None else -9
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._status is not None and self._open == 0 and not self.done.done():
            self.done.set_result(self._status)

    def kill(self) -> None:
        """SIGKILL the process itself (not what it started)."""
        if self._status is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def close_pipes(self) -> None:
        """Stop reading (when the process is gone but something else holds the pipes)."""
        for fd, (_stream, pipe) in list(self._pipes.items()):
            if not pipe.closed:
                self._loop.remove_reader(fd)
                pipe.close()
                self._open -= 1
        self._maybe_done()
