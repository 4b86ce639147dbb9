"""Debug shells over the gRPC transport (``session.proto``: ``ShellRequest``): the
client's terminal (:func:`serve_shell`) and the engine's view of it
(:class:`FramesShell`), both over the frames of one ``Stream`` call.

The client's end reads its stdin as it comes once the process runs (the daemon's
``started`` frame, when its request announces one: keys typed before wait in the
terminal, and a process that never ran reads nothing; a terminal goes into raw mode then
too, so Ctrl-C cancels the build until the shell runs and is the shell's key after) and
sends it on in ``Bytes`` frames (``eof`` when it ends), sends its window size at the start and after each ``SIGWINCH``, and writes the
``Output`` frames to its stdout and stderr until ``ShellEnd``. Nothing blocks its event
loop: descriptors are polled (a regular file, which cannot be, is read in a thread) and
a full non-blocking stdout is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

from dockyard.api._gen import session_pb2 as pb
from dockyard.core import SessionError

from ._grpc_common import Frames, error_from_pb
from ._values import UserTerminal, WindowSize

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["FramesShell", "serve_shell"]

_CHUNK = 1 << 16
_OUTPUT_CHUNK = 256 << 10  # the largest Output frame (a pipe read is at most 64 KiB)
_MAX_CELLS = 0xFFFF  # struct winsize holds 16-bit counts


def _window(message: pb.WindowSize) -> WindowSize | None:
    """A window size from the wire (counts clipped to what a terminal holds; ``None``
    for an unknown one)."""
    rows = min(message.rows, _MAX_CELLS)
    cols = min(message.cols, _MAX_CELLS)
    if rows == 0 or cols == 0:
        return None
    return WindowSize(rows=rows, cols=cols)


def _window_to_pb(size: tuple[int, int] | None) -> pb.WindowSize:
    if size is None:
        return pb.WindowSize()
    return pb.WindowSize(rows=size[0], cols=size[1])


# -- the engine's side ------------------------------------------------------------------


class FramesShell:
    """A :class:`~dockyard.session.types.ShellChannel` over the frames of a shell's
    ``Stream`` call, once the client's ``shell_start`` arrived. Everything the client
    sends is untrusted: only input bytes, window sizes (clipped) and an error are taken;
    input after its end is dropped."""

    def __init__(self, frames: Frames, start: pb.ShellStart) -> None:
        self._frames = frames
        self.tty = start.tty
        self.size = _window(start.size)
        self._input_ended = False
        self._eof_due = False
        self._announce_start = start.await_start  # an older client knows no `started`

    async def started(self) -> None:
        if self._announce_start:
            self._announce_start = False
            await self._frames.send(pb.Frame(started=pb.ShellStarted()))

    async def receive(self) -> bytes | WindowSize | None:
        if self._eof_due:
            self._eof_due = False
            return b""
        while True:
            frame = await self._frames.recv()
            if frame is None:
                return None
            kind = frame.WhichOneof("kind")
            if kind == "bytes":
                if self._input_ended:
                    continue
                data, eof = frame.bytes.data, frame.bytes.eof
                if eof:
                    self._input_ended = True
                    if data:
                        self._eof_due = True
                        return data
                    return b""
                if data:
                    return data
            elif kind == "resize":
                size = _window(frame.resize)
                if size is not None:
                    return size
            elif kind == "error":
                raise error_from_pb(frame.error)
            else:
                raise SessionError(f"unexpected {kind!r} frame from the client's terminal")

    async def output(self, fd: int, data: bytes) -> None:
        for start in range(0, len(data), _OUTPUT_CHUNK):
            chunk = data[start : start + _OUTPUT_CHUNK]
            await self._frames.send(pb.Frame(output=pb.Output(fd=fd, data=chunk)))

    async def end(self, status: int | None, notice: str = "") -> None:
        await self._frames.send(
            pb.Frame(
                shell_end=pb.ShellEnd(ran=status is not None, status=status or 0, notice=notice)
            )
        )


# -- the client's side ------------------------------------------------------------------


class _Sender:
    """One frame at a time on the call (grpc takes one write at a time), from the input
    task and the window size changes alike."""

    def __init__(self, frames: Frames) -> None:
        self._frames = frames
        self._lock = asyncio.Lock()

    async def send(self, frame: pb.Frame) -> None:
        async with self._lock:
            await self._frames.send(frame)


async def serve_shell(
    frames: Frames, terminal: UserTerminal, *, await_start: bool = False
) -> int | None:
    """Attach ``terminal`` to the debug shell whose ``Stream`` call ``frames`` is (the
    ``open`` frame sent) until the engine sends ``ShellEnd``; its exit status (``None``:
    it did not run). With ``await_start`` (the request announces ``started``) stdin is
    read, and a terminal put in raw mode, only once the engine says the process runs.
    The terminal is restored however this ends; the end's notice is announced after.
    Raises :class:`~dockyard.core.SessionError` when the engine ends the call before,
    and the engine's error when it sends one."""
    from dockyard.core.terminal import raw_terminal, window_size

    tty = terminal.uses_terminal()
    size = (window_size(terminal.stdin) or window_size(terminal.stdout)) if tty else None
    sender = _Sender(frames)
    await sender.send(
        pb.Frame(
            shell_start=pb.ShellStart(tty=tty, size=_window_to_pb(size), await_start=await_start)
        )
    )
    loop = asyncio.get_running_loop()
    end: pb.ShellEnd | None = None
    tasks: set[asyncio.Task[None]] = set()

    def spawn(work: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with contextlib.ExitStack() as attached:
        watching = False

        def attach() -> None:
            nonlocal watching
            if tty:
                attached.enter_context(raw_terminal(terminal.stdin))
            spawn(_send_input(sender, terminal.stdin))
            watching = tty and _watch_window(
                loop, lambda: spawn(_send_size(sender, terminal.stdin, terminal.stdout))
            )
            now = window_size(terminal.stdin) or window_size(terminal.stdout)
            if watching and now != size:  # it changed while the process was starting
                spawn(_send_size(sender, terminal.stdin, terminal.stdout))

        if not await_start:
            attach()
        try:
            while end is None:
                frame = await frames.recv()
                if frame is None:
                    raise SessionError("the daemon ended the debug shell's stream before its end")
                kind = frame.WhichOneof("kind")
                if kind == "output":
                    fd = terminal.stderr if frame.output.fd == 2 else terminal.stdout
                    await _write_all(loop, fd, frame.output.data)
                elif kind == "started" and await_start:
                    await_start = False
                    attach()
                elif kind == "shell_end":
                    end = frame.shell_end
                elif kind == "error":
                    raise error_from_pb(frame.error)
                else:
                    raise SessionError(f"unexpected {kind!r} frame in a debug shell's stream")
        finally:
            if watching:
                _unwatch_window(loop)
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(list(tasks))
    assert end is not None
    if end.notice:
        terminal.announce(end.notice)
    return end.status if end.ran else None


async def _send_input(sender: _Sender, fd: int) -> None:
    """The user's input, to its end; a stream that broke ends it quietly (the call's
    reader reports that)."""
    reader = _FdReader(asyncio.get_running_loop(), fd)
    with contextlib.suppress(SessionError):
        while data := await reader.read():
            await sender.send(pb.Frame(bytes=pb.Bytes(data=data)))
        await sender.send(pb.Frame(bytes=pb.Bytes(eof=True)))


async def _send_size(sender: _Sender, stdin: int, stdout: int) -> None:
    from dockyard.core.terminal import window_size

    size = window_size(stdin) or window_size(stdout)
    if size is not None:
        with contextlib.suppress(SessionError):
            await sender.send(pb.Frame(resize=_window_to_pb(size)))


def _watch_window(loop: asyncio.AbstractEventLoop, changed: Callable[[], None]) -> bool:
    """Call ``changed`` on ``SIGWINCH``; whether it could be watched (the main thread
    only)."""
    try:
        loop.add_signal_handler(signal.SIGWINCH, changed)
    except (ValueError, RuntimeError):
        return False
    return True


def _unwatch_window(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(Exception):
        loop.remove_signal_handler(signal.SIGWINCH)


class _FdReader:
    """Chunks of a descriptor of this process that is not ours to change (its blocking
    mode is shared): polled when it can be (a terminal, pipe, socket), read in a thread
    when not (a regular file, ``/dev/null``: those never block)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._polled = True
        self._closed = False
        try:
            loop.add_reader(fd, _nothing)
            loop.remove_reader(fd)
        except PermissionError:  # epoll takes no regular file
            self._polled = False
        except (OSError, ValueError):  # no such descriptor: no input
            self._closed = True

    async def read(self) -> bytes:
        if self._closed:
            return b""
        if not self._polled:
            try:
                return await asyncio.to_thread(os.read, self._fd, _CHUNK)
            except OSError:
                return b""
        while True:
            ready: asyncio.Future[None] = self._loop.create_future()

            def readable(ready: asyncio.Future[None] = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            self._loop.add_reader(self._fd, readable)
            try:
                await ready
            finally:
                self._loop.remove_reader(self._fd)
            try:
                return os.read(self._fd, _CHUNK)
            except BlockingIOError:
                continue
            except OSError:  # EIO: a terminal whose session ended
                return b""


def _nothing() -> None:
    return None


async def _write_all(loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
    """``data`` to ``fd`` (waiting while a non-blocking one is full); dropped when its
    reader is gone."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            from dockyard.core.terminal import wait_writable

            await wait_writable(loop, fd)
        except OSError:
            return
