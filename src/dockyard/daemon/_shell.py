"""A debug shell of a daemon's build on its client's terminal (``dockyard build --invoke
--addr ...``): :class:`SessionConsole`.

The process runs here, in the daemon's sandbox, exactly as an embedded engine runs it;
only its streams are elsewhere. They are pipes of this process: the client's input (the
session's ``Bytes`` frames) is written into the process's stdin pipe, what the process
writes on its stdout and stderr pipes goes back as ``Output`` frames. With a terminal the
executor gives the process a pty and copies between it and these pipes (raw bytes, the
pty's output all on stdout), its window size following the client's (``resize`` frames,
a :class:`~dockyard.executor.types.WindowFeed`). Every pipe is read and written on the
event loop with flow control both ways: a client that reads slowly holds the process's
output back, a process that does not read holds the client's input back.

The shell belongs to the session that asked for the build (``SolveRequest.session``):
no other client is asked, and nothing of what travels reaches the build's progress,
logs or cache. A client that closes the shell's stream (or whose session ends)
cancels the process: the executor kills its container and tears the sandbox down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from dockyard.core import DockyardError, SessionError

if TYPE_CHECKING:
    from dockyard.executor.types import Stdio
    from dockyard.llbsolver import ShellStreams
    from dockyard.session import SessionManager, ShellChannel, WindowSize

__all__ = ["SessionConsole"]

_log = logging.getLogger("dockyard.daemon")

_CHUNK = 1 << 16
_OUTPUT_DRAIN = 10.0  # seconds the process's last output may take to arrive after its end


class SessionConsole:
    """:class:`~dockyard.llbsolver.ShellConsole` of the client whose session is
    ``session_id`` in ``sessions`` (see the module docstring)."""

    def __init__(self, sessions: SessionManager, session_id: str) -> None:
        self._sessions = sessions
        self._session_id = session_id

    @contextlib.asynccontextmanager
    async def attach(self, line: str) -> AsyncIterator[ShellStreams]:
        opened = False
        try:
            handle = await self._sessions.get(self._session_id)
            async with handle.shell.open(line) as channel:
                opened = True
                relay = _Relay(channel)
                async with relay.running():
                    yield relay
        except DockyardError as exc:
            if not opened:
                # the client is gone or offers no terminal: the step's error stays the
                # build's; this says why no shell ran
                _log.warning("session %s: no debug shell: %s", self._session_id, exc)
            raise


class _Window:
    """The client's window size (a :class:`~dockyard.executor.types.WindowFeed`)."""

    def __init__(self, size: WindowSize | None) -> None:
        self._size = size
        self._watchers: list[Callable[[], None]] = []

    def size(self) -> tuple[int, int] | None:
        return (self._size.rows, self._size.cols) if self._size is not None else None

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]:
        self._watchers.append(changed)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(changed)

        return unwatch

    def update(self, size: WindowSize) -> None:
        self._size = size
        for changed in list(self._watchers):
            changed()


class _PipeWriter(asyncio.Protocol):
    """The protocol of the stdin pipe's transport: :meth:`drain` waits while the pipe
    is full; :attr:`broken` once its reader is gone."""

    def __init__(self) -> None:
        self._paused: asyncio.Future[None] | None = None
        self.broken = False

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        self.resume_writing()

    async def drain(self) -> None:
        if self._paused is not None:
            await self._paused


class _Loss:
    """Why the client's terminal went away, if it did; while :attr:`armed` (the
    process runs in ``host``), losing it cancels ``host``."""

    def __init__(self, host: asyncio.Task[Any]) -> None:
        self._host = host
        self.reason = ""
        self.armed = False

    def lose(self, reason: str) -> None:
        if self.reason:
            return
        self.reason = reason
        if self.armed:
            self.armed = False
            self._host.cancel()

    def check(self) -> None:
        if self.reason:
            raise SessionError(self.reason)


class _Relay:
    """The pipes of one shell's process and the tasks copying between them and the
    client's terminal (a :class:`~dockyard.llbsolver.ShellStreams`)."""

    def __init__(self, channel: ShellChannel) -> None:
        self._channel = channel
        self._window = _Window(channel.size)
        self._status: int | None = None
        self._notice = ""
        self._stdio: Stdio | None = None

    @property
    def stdio(self) -> Stdio:
        assert self._stdio is not None, "the relay is not running"
        return self._stdio

    def finish(self, status: int | None, notice: str = "") -> None:
        self._status = status
        self._notice = notice

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Make the pipes and copy until the body (the process) ends; then the last of
        its output and the end go to the client. When the client goes away meanwhile
        the body is cancelled and :class:`~dockyard.core.SessionError` raised instead."""
        from dockyard.executor.types import Stdio

        loop = asyncio.get_running_loop()
        host = asyncio.current_task()
        assert host is not None
        tty = self._channel.tty
        loss = _Loss(host)
        lose = loss.lose

        child_ends: list[int] = []  # the process's ends: ours to close after it ended
        own_ends: list[int] = []  # ours until a transport owns them
        transports: list[asyncio.BaseTransport] = []
        outputs: list[asyncio.Task[None]] = []
        pump: asyncio.Task[None] | None = None
        announcing: list[asyncio.Task[None]] = []
        try:
            in_r, in_w = os.pipe()
            child_ends.append(in_r)
            own_ends.append(in_w)
            out_r, out_w = os.pipe()
            child_ends.append(out_w)
            own_ends.append(out_r)
            err_w = out_w
            readers = [(1, out_r)]
            if tty:
                # the executor's pty bridge writes here on this loop: it must never block
                os.set_blocking(out_w, False)
            else:
                err_r, err_w = os.pipe()
                child_ends.append(err_w)
                own_ends.append(err_r)
                readers.append((2, err_r))

            def started() -> None:  # the client reads its input from now on
                if not announcing:
                    announcing.append(loop.create_task(self._announce_start(lose)))

            self._stdio = Stdio(
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                terminal=tty,
                window=self._window if tty else None,
                started=started,
            )
            writer_transport, writer = await loop.connect_write_pipe(
                _PipeWriter, _owned(own_ends, in_w, "wb")
            )
            transports.append(writer_transport)
            for fd, read_end in readers:
                stream = asyncio.StreamReader(limit=_CHUNK, loop=loop)
                reading, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, stream, loop=loop),
                    _owned(own_ends, read_end, "rb"),
                )
                transports.append(reading)
                outputs.append(loop.create_task(self._send_output(fd, stream, lose)))
            pump = loop.create_task(self._pump_input(writer_transport, writer, lose))
            loss.check()
            loss.armed = True
            try:
                yield
            except asyncio.CancelledError:
                if loss.reason and host.uncancel() == 0:
                    raise SessionError(loss.reason) from None
                raise
            finally:
                loss.armed = False
            pump.cancel()
            if announcing:  # `started` goes before the end
                await asyncio.wait(announcing)
            # the process ended: once its ends are closed, its output ends too
            _close_all(child_ends)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_OUTPUT_DRAIN):
                    await asyncio.wait(outputs)
            loss.check()
            await self._channel.end(self._status, self._notice)
        finally:
            loss.armed = False
            waited = [*outputs, *([pump] if pump is not None else []), *announcing]
            for task in waited:
                task.cancel()
            if waited:
                await asyncio.wait(waited)
            for transport in transports:
                transport.close()
            _close_all(child_ends)
            _close_all(own_ends)
            if transports:
                await asyncio.sleep(0)  # the transports close their pipes on the next turn

    async def _pump_input(
        self,
        transport: asyncio.WriteTransport,
        writer: _PipeWriter,
        lose: Callable[[str], None],
    ) -> None:
        """The client's input into the stdin pipe (closed at its end; dropped once the
        process closed it), its window sizes to the pty."""
        from dockyard.session import WindowSize

        try:
            while True:
                event = await self._channel.receive()
                if event is None:
                    lose("the client closed the debug shell's terminal")
                    return
                if isinstance(event, WindowSize):
                    self._window.update(event)
                elif not event:
                    transport.close()  # the process reads the end of its input
                elif not transport.is_closing() and not writer.broken:
                    transport.write(event)
                    await writer.drain()
        except DockyardError as exc:
            lose(f"the client's terminal failed: {exc}")

    async def _announce_start(self, lose: Callable[[str], None]) -> None:
        try:
            await self._channel.started()
        except DockyardError as exc:
            lose(f"the client's terminal failed: {exc}")

    async def _send_output(
        self, fd: int, stream: asyncio.StreamReader, lose: Callable[[str], None]
    ) -> None:
        """What the process writes on ``fd``, to the client, up to the pipe's end."""
        try:
            while data := await stream.read(_CHUNK):
                await self._channel.output(fd, data)
        except DockyardError as exc:
            lose(f"the client's terminal failed: {exc}")


def _owned(own: list[int], fd: int, mode: str) -> Any:
    """A file object on ``fd`` for a pipe transport, which owns it from now on."""
    file = os.fdopen(fd, mode, buffering=0)
    own.remove(fd)
    return file


def _close_all(fds: list[int]) -> None:
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())
