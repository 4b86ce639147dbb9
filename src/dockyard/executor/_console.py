"""Interactive processes: the console socket over which an OCI runtime hands over the
master side of the container's pseudo-terminal, the user's terminal in raw mode, and the
copy between the two.

With ``process.terminal`` and ``--console-socket PATH``, crun (and runc) make a pty in
the container, connect to the unix socket at ``PATH`` and send its master end as
``SCM_RIGHTS`` ancillary data. :class:`ConsoleSocket` listens there and receives it;
:class:`PtyBridge` copies the user's input to the master and the master's output to the
user, and keeps the pty's window size that of the user's terminal (``SIGWINCH`` →
``TIOCSWINSZ``); :func:`raw_terminal` puts the user's terminal in raw mode (keys, Ctrl-C
included, go to the container's shell) and restores it however the block ends.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def copy_window_size(source: int, target: int) -> None:
    """Give the terminal ``target`` the window size of ``source`` (when it has one)."""
    import fcntl
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode for the block, its settings restored after (on
    an exception and a cancellation too). Nothing when ``fd`` is no terminal."""
    import termios
    import tty

    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    try:
        tty.setraw(fd, termios.TCSADRAIN)
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class PtyBridge:
    """Copies ``stdin`` → ``master`` and ``master`` → ``stdout`` on the running loop
    until :meth:`close`; owns ``master`` (closed then). ``SIGWINCH`` copies the size of
    the terminal at ``stdin`` (or ``stdout``) to the pty. The user's descriptors stay
    as they are (their blocking mode is shared with other processes)."""

    def __init__(self, master: int, *, stdin: int, stdout: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._master = master
        self._stdin = stdin
        self._stdout = stdout
        self._reading_stdin = False
        self._reading_master = False
        self._winch = False
        self.hangup: asyncio.Future[None] = self._loop.create_future()
        """Done when the pty's last user closed it (the shell and what it started)."""

    def start(self) -> None:
        os.set_blocking(self._master, False)
        self._resize()
        self._loop.add_reader(self._master, self._from_pty)
        self._reading_master = True
        with contextlib.suppress(OSError, ValueError):  # (a closed or odd stdin)
            self._loop.add_reader(self._stdin, self._from_user)
            self._reading_stdin = True
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
            self._loop.add_signal_handler(signal.SIGWINCH, self._resize)
            self._winch = True

    def _resize(self) -> None:
        source = self._stdin if os.isatty(self._stdin) else self._stdout
        copy_window_size(source, self._master)

    def _from_user(self) -> None:
        try:
            data = os.read(self._stdin, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of the user's input: the shell reads no more
            self._stop_stdin()
            return
        self._write_all(self._master, data)

    def _from_pty(self) -> None:
        try:
            data = os.read(self._master, _CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process has the pty open any more
            data = b""
        if not data:
            self._stop_master()
            if not self.hangup.done():
                self.hangup.set_result(None)
            return
        self._write_all(self._stdout, data)

    def drain(self) -> None:
        """Copy what the pty still holds to ``stdout`` (after the process ended)."""
        if not self._reading_master:
            return
        for _ in range(1024):
            try:
                data = os.read(self._master, _CHUNK)
            except OSError:
                return
            if not data:
                return
            self._write_all(self._stdout, data)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                import select

                select.select([], [fd], [], 1.0)
            except OSError:
                return  # the reader is gone (the user's terminal, or the shell)

    def _stop_stdin(self) -> None:
        if self._reading_stdin:
            self._reading_stdin = False
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._stdin)

    def _stop_master(self) -> None:
        if self._reading_master:
            self._reading_master = False
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._master)

    def close(self) -> None:
        self._stop_stdin()
        self._stop_master()
        if self._winch:
            self._winch = False
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGWINCH)
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1
