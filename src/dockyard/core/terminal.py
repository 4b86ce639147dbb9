"""The user's terminal: raw mode for an interactive process, window sizes, and waiting
until a non-blocking descriptor (a pty, a relayed pipe) takes more. Imported
on its own (like ``dockyard.core.procs``) by the two places a debug shell meets a
terminal: the executor (a shell on this process's terminal) and the session's client
side (a shell on a daemon's host, on the client's terminal)."""

from __future__ import annotations

import contextlib
import fcntl
import struct
import termios
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["copy_window_size", "raw_terminal", "set_window_size", "wait_writable", "window_size"]

_WINSIZE = struct.Struct("HHHH")  # struct winsize: rows, columns, x and y pixels


def window_size(fd: int) -> tuple[int, int] | None:
    """The window size (rows, columns) of the terminal ``fd``; ``None`` when ``fd`` is
    no terminal or its size is unknown (0 x 0)."""
    try:
        rows, cols, _, _ = _WINSIZE.unpack(
            fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * _WINSIZE.size)
        )
    except OSError:
        return None
    if rows == 0 and cols == 0:
        return None
    return rows, cols


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Give the terminal ``fd`` (a pty's master or slave) the size ``rows`` x ``cols``
    (values beyond 65535 are clipped); nothing when ``fd`` is no terminal."""
    rows, cols = (max(0, min(v, 0xFFFF)) for v in (rows, cols))
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))


def copy_window_size(source: int, target: int) -> None:
    """Give the terminal ``target`` the window size of ``source`` (when it has one)."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * _WINSIZE.size)
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode for the block, its settings restored after (on
    an exception and a cancellation too). Nothing when ``fd`` is no terminal."""
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


async def wait_writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Return once the non-blocking ``fd`` can take more (a write raised
    ``BlockingIOError``)."""
    ready: asyncio.Future[None] = loop.create_future()

    def writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, writable)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
