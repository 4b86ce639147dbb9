"""Interactive processes: the console socket over which an OCI runtime hands over the
master side of the container's pseudo-terminal, the user's terminal in raw mode, and the
copy between the two.

With ``process.terminal`` and ``--console-socket PATH``, crun (and runc) make a pty in
the container, connect to the unix socket at ``PATH`` and send its master end as
``SCM_RIGHTS`` ancillary data. :class:`ConsoleSocket` listens there and receives it;
:class:`PtyBridge` copies the user's input to the master and the master's output to the
user, and keeps the pty's window size that of the user's terminal (``SIGWINCH`` →
``TIOCSWINSZ``, or a :class:`~dockyard.executor.types.WindowFeed` for a terminal on
another host); :func:`raw_terminal` (of :mod:`dockyard.core.terminal`) puts the user's
terminal in raw mode (keys, Ctrl-C included, go to the container's shell) and restores
it however the block ends.

Everything here is driven by loop readers and futures, never tasks (as
:mod:`dockyard.executor._child`): the executor can always finish its cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.core.terminal import (
    copy_window_size,
    raw_terminal,
    set_window_size,
    wait_writable,
)

if TYPE_CHECKING:
    from .types import WindowFeed

__all__ = ["ConsoleSocket", "PtyBridge", "copy_window_size", "raw_terminal"]

_CHUNK = 1 << 16


class ConsoleSocket:
    """A listening unix socket in a fresh private directory (short: a socket path is
    limited to 108 bytes), for ``--console-socket``. :meth:`close` removes both."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="dy-console-"))
        self.path = self._dir / "sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.bind(str(self.path))
            self._sock.listen(1)
            self._sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    async def receive(self, gone: asyncio.Future[int]) -> int | None:
        """The pty master the runtime sends (a file descriptor now ours to close), or
        ``None`` when ``gone`` (the runtime's exit) comes first or the runtime connected
        and sent none (crun does when the process cannot start: its error is in its
        log)."""
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int | None] = loop.create_future()
        fd = self._sock.fileno()

        def readable() -> None:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return
            loop.remove_reader(fd)
            with conn:
                conn.setblocking(True)
                try:
                    master: int | None = receive_fd(conn)
                except OSError:
                    master = None
            if not got.done():  # (always: the reader is removed first)
                got.set_result(master)
            elif master is not None:  # pragma: no cover
                os.close(master)

        loop.add_reader(fd, readable)
        try:
            futures: list[asyncio.Future[Any]] = [got, gone]
            await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            if not got.done():
                got.cancel()
        if got.cancelled():
            return None
        return got.result()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def receive_fd(conn: socket.socket) -> int:
    """One file descriptor sent over ``conn`` with ``SCM_RIGHTS`` (any others sent
    along are closed). An ``OSError`` when none came."""
    _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
    if not fds:
        raise OSError(errno.EPROTO, "the runtime sent no terminal over the console socket")
    for extra in fds[1:]:
        os.close(extra)
    os.set_inheritable(fds[0], False)
    return fds[0]


class PtyBridge:
    """Copies ``stdin`` → ``master`` and ``master`` → ``stdout`` on the running loop
    until :meth:`close`; owns ``master`` (closed then). The pty's window size is that of
    ``window`` when given (followed as it changes), else that of the terminal at
    ``stdin`` (or ``stdout``), copied again on ``SIGWINCH``. The user's descriptors stay
    as they are (their blocking mode is shared with other processes): one that is
    non-blocking and full holds its source back until it can take more, without
    blocking the loop."""

    def __init__(
        self, master: int, *, stdin: int, stdout: int, window: WindowFeed | None = None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._master = master
        self._stdin = stdin
        self._stdout = stdout
        self._window = window
        self._unwatch: Callable[[], None] | None = None
        self._winch = False
        self.hangup: asyncio.Future[None] = self._loop.create_future()
        """Done when the pty's last user closed it (the shell and what it started)."""
        self._in = _Copy(self._loop, stdin, master, ended=lambda: None)
        self._out = _Copy(self._loop, master, stdout, ended=self._hung_up)

    def start(self) -> None:
        os.set_blocking(self._master, False)
        self._resize()
        self._out.start()
        with contextlib.suppress(OSError, ValueError):  # (a closed or odd stdin)
            self._in.start()
        if self._window is not None:
            self._unwatch = self._window.watch(self._resize)
            return
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
            self._loop.add_signal_handler(signal.SIGWINCH, self._resize)
            self._winch = True

    def _resize(self) -> None:
        if self._master < 0:
            return
        if self._window is not None:
            size = self._window.size()
            if size is not None:
                set_window_size(self._master, *size)
            return
        source = self._stdin if os.isatty(self._stdin) else self._stdout
        copy_window_size(source, self._master)

    def _hung_up(self) -> None:
        if not self.hangup.done():
            self.hangup.set_result(None)

    async def drain(self) -> None:
        """Copy what the pty still holds to ``stdout`` (after the process ended); gives
        up on a ``stdout`` that takes nothing for ``_DRAIN_LIMIT`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_LIMIT):
                await self._out.finish()

    def close(self) -> None:
        self._in.stop()
        self._out.stop()
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            with contextlib.suppress(Exception):
                unwatch()
        if self._winch:
            self._winch = False
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGWINCH)
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1


_DRAIN_LIMIT = 10.0


class _Copy:
    """One direction of a :class:`PtyBridge`: what ``src`` has, written to ``dst``.
    While ``dst`` cannot take more (a non-blocking one answered ``EAGAIN``), ``src`` is
    not read: its data waits where it is. ``ended`` is called once ``src`` reached its
    end (or failed: ``EIO`` from a pty's master nobody holds the slave of). Writes to a
    ``dst`` whose reader is gone are dropped."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, src: int, dst: int, *, ended: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._src = src
        self._dst = dst
        self._ended = ended
        self._pending = b""
        self._reading = False
        self._writing = False
        self._stopped = False
        self.at_end = False

    def start(self) -> None:
        self._loop.add_reader(self._src, self._readable)
        self._reading = True

    def _readable(self) -> None:
        data = self._read()
        if data is None:
            return
        if not data:
            self.at_end = True
            self.stop()
            self._ended()
            return
        self._write(data)

    def _read(self) -> bytes | None:
        """The next chunk of ``src`` (``b""`` at its end), ``None`` when it has none now."""
        try:
            return os.read(self._src, _CHUNK)
        except BlockingIOError:
            return None
        except OSError:  # EIO: no process has the pty open any more
            return b""

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._dst, view) :]
            except BlockingIOError:
                self._pending = bytes(view)
                self._pause()
                return
            except OSError:
                return  # the reader is gone (the user's terminal, or the shell)

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._src)
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._dst, self._writable)

    def _writable(self) -> None:
        data, self._pending = self._pending, b""
        self._writing = False
        self._loop.remove_writer(self._dst)
        self._write(data)
        if not self._pending and not self._stopped and not self._reading:
            self._loop.add_reader(self._src, self._readable)
            self._reading = True

    async def finish(self) -> None:
        """Stop copying on the loop, then write what is pending and what ``src`` still
        has (up to its end, or until it has nothing right now) to ``dst``, waiting for
        ``dst`` to take it."""
        was_stopped = self._stopped
        self.stop()
        pending, self._pending = self._pending, b""
        if pending:
            await self._write_waiting(pending)
        if was_stopped and self.at_end:
            return
        for _ in range(1024):
            data = self._read()
            if not data:
                return
            await self._write_waiting(data)

    async def _write_waiting(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._dst, view) :]
            except BlockingIOError:
                await wait_writable(self._loop, self._dst)
            except OSError:
                return

    def stop(self) -> None:
        self._stopped = True
        if self._reading:
            self._reading = False
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._src)
        if self._writing:
            self._writing = False
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._dst)
