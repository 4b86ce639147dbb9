"""A debug shell's streams over the session (``ShellRequest``): the client's terminal —
pipes, or a pty in raw mode whose size and its changes travel — as the engine's
:class:`~dockyard.session.ShellChannel`; the frames' rules (untrusted input from the
client); who may attach; and what happens when the client goes away."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from dockyard.api._gen import session_pb2 as pb
from dockyard.core import NotFoundError, SessionError
from dockyard.session import Session, SessionManager, UserTerminal, WindowSize, _grpc_client
from dockyard.session._shell import FramesShell

from .harness import Harness, eventually
from .test_grpc import stream_call


class Pipes:
    """The client's stdin, stdout and stderr as pipes (the test holds the other ends)."""

    def __init__(self) -> None:
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        for fd in (self.out_r, self.err_r):
            os.set_blocking(fd, False)
        self.lines: list[str] = []

    def terminal(self, **kwargs: object) -> UserTerminal:
        return UserTerminal(
            stdin=self.in_r,
            stdout=self.out_w,
            stderr=self.err_w,
            announce=self.lines.append,
            **kwargs,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        for fd in (self.in_r, self.in_w, self.out_r, self.out_w, self.err_r, self.err_w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    p = Pipes()
    try:
        yield p
    finally:
        p.close()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


async def test_pipes_travel_both_ways(harness: Harness, pipes: Pipes) -> None:
    async with harness.open(Session(shell=pipes.terminal(terminal=False))) as handle:
        assert handle.shell.has()
        if harness.transport == "in-process":
            # the embedded engine gives a shell the client's own streams: no relay
            with pytest.raises(NotFoundError, match="relays no terminal"):
                async with handle.shell.open("running sh"):
                    pass
            return
        os.write(pipes.in_w, b"typed\n")
        async with handle.shell.open("RUN failed: running sh (exit it to continue)") as channel:
            assert pipes.lines == ["RUN failed: running sh (exit it to continue)"]
            assert not channel.tty
            assert channel.size is None
            # nothing is read before the process runs: typed keys wait in the pipe
            await asyncio.sleep(0.3)
            assert _pending(pipes.in_r) == len(b"typed\n")
            await channel.started()
            assert await channel.receive() == b"typed\n"
            os.write(pipes.in_w, b"more")
            os.close(pipes.in_w)
            assert await channel.receive() == b"more"
            assert await channel.receive() == b""  # the end of the input
            await channel.output(1, b"to stdout")
            await channel.output(2, b"to stderr")
            await channel.end(3, "it is over")
        await eventually(lambda: len(pipes.lines) == 2)
        assert pipes.lines[1] == "it is over"  # shown after the shell, by the client
        assert _read(pipes.out_r) == b"to stdout"
        assert _read(pipes.err_r) == b"to stderr"


def _pending(fd: int) -> int:
    """The bytes waiting to be read from a pipe or terminal ``fd``."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


def _size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def test_a_terminal_is_raw_and_its_size_travels(tcp_or_unix: Harness) -> None:
    master, slave = os.openpty()
    lines: list[str] = []
    try:
        _size(slave, 20, 70)
        saved = termios.tcgetattr(slave)
        terminal = UserTerminal(stdin=slave, stdout=slave, stderr=slave, announce=lines.append)
        async with (
            tcp_or_unix.open(Session(shell=terminal)) as handle,
            handle.shell.open("running sh") as channel,
        ):
            assert channel.tty  # stdin is a terminal
            assert channel.size == WindowSize(rows=20, cols=70)
            # until the process runs the terminal is the user's (Ctrl-C cancels the
            # build) and nothing is read from it
            await asyncio.sleep(0.2)
            assert termios.tcgetattr(slave) == saved
            await channel.started()
            await eventually(lambda: not termios.tcgetattr(slave)[3] & termios.ECHO)  # raw
            os.write(master, b"\x03ls\n")  # Ctrl-C is a key like any other
            assert await channel.receive() == b"\x03ls\n"
            _size(slave, 45, 132)
            os.kill(os.getpid(), signal.SIGWINCH)
            assert await channel.receive() == WindowSize(rows=45, cols=132)
            await channel.output(1, b"prompt# ")
            await channel.end(0)
        await eventually(lambda: termios.tcgetattr(slave) == saved)  # restored
        assert os.read(master, 100).endswith(b"prompt# ")
        assert lines == ["running sh"]  # no notice: nothing more to say
    finally:
        os.close(master)
        os.close(slave)


@pytest.fixture(params=["grpc-unix", "grpc-tcp"])
async def tcp_or_unix(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(request.param, SessionManager(call_timeout=10))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_a_client_without_a_terminal_is_not_asked(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        assert not handle.shell.has()
        with pytest.raises(NotFoundError, match="no terminal"):
            async with handle.shell.open("running sh"):
                pass


async def test_a_client_that_goes_away_ends_the_shell(tcp_or_unix: Harness, pipes: Pipes) -> None:
    async with tcp_or_unix.open(Session(shell=pipes.terminal(terminal=False))) as handle:
        attachment = tcp_or_unix.attachments[-1]

        async def shell() -> None:
            async with handle.shell.open("running sh"):
                # the body (the process) is cancelled when the session ends
                await attachment.close()
                await asyncio.sleep(30)

        with pytest.raises(SessionError):
            await shell()
        assert handle.closed


async def test_a_shell_stream_must_name_its_own_session(
    tcp_or_unix: Harness, pipes: Pipes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client that learned the call id cannot attach to the shell."""
    seen: list[str] = []
    release = asyncio.Event()
    original = _grpc_client.Attachment._open

    async def slow_open(self: _grpc_client.Attachment, call_id: str) -> object:
        seen.append(call_id)
        await release.wait()
        return await original(self, call_id)

    monkeypatch.setattr(_grpc_client.Attachment, "_open", slow_open)
    async with tcp_or_unix.open(Session(shell=pipes.terminal(terminal=False))) as handle:

        async def shell() -> bytes | WindowSize | None:
            async with handle.shell.open("running sh") as channel:
                os.write(pipes.in_w, b"mine")
                await channel.started()
                got = await channel.receive()
                await channel.end(0)
                return got

        running = asyncio.create_task(shell())
        await eventually(lambda: bool(seen))
        intruder = stream_call(tcp_or_unix)
        await intruder.write(pb.Frame(open=pb.Open(session_id="intruder", call_id=seen[0])))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await intruder.read()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        release.set()
        assert await running == b"mine"


class FakeFrames:
    """Frames a (possibly hostile) client sent, and what the engine sent back."""

    def __init__(self, *frames: pb.Frame) -> None:
        self.incoming = list(frames)
        self.sent: list[pb.Frame] = []

    async def send(self, frame: pb.Frame) -> None:
        self.sent.append(frame)

    async def recv(self) -> pb.Frame | None:
        return self.incoming.pop(0) if self.incoming else None


async def test_the_client_frames_are_checked() -> None:
    frames = FakeFrames(
        pb.Frame(bytes=pb.Bytes(data=b"last", eof=True)),
        pb.Frame(bytes=pb.Bytes(data=b"after the end")),  # dropped
        pb.Frame(resize=pb.WindowSize(rows=0, cols=80)),  # unknown: dropped
        pb.Frame(resize=pb.WindowSize(rows=1 << 20, cols=90)),  # clipped
        pb.Frame(stats=pb.StatBatch()),
    )
    shell = FramesShell(frames, pb.ShellStart(tty=True, size=pb.WindowSize(rows=24, cols=80)))
    assert shell.size == WindowSize(rows=24, cols=80)
    assert await shell.receive() == b"last"
    assert await shell.receive() == b""
    assert await shell.receive() == WindowSize(rows=0xFFFF, cols=90)
    with pytest.raises(SessionError, match="unexpected 'stats' frame"):
        await shell.receive()
    assert await shell.receive() is None  # the client closed the stream
    assert FramesShell(FakeFrames(), pb.ShellStart()).size is None


async def test_an_error_frame_is_the_clients_error() -> None:
    from dockyard.session._grpc_common import error_to_pb

    frames = FakeFrames(pb.Frame(error=error_to_pb(NotFoundError("gone"))))
    with pytest.raises(NotFoundError, match="gone"):
        await FramesShell(frames, pb.ShellStart()).receive()


async def test_output_is_sent_in_bounded_frames_and_the_end_last() -> None:
    frames = FakeFrames()
    shell = FramesShell(frames, pb.ShellStart())
    await shell.output(2, b"x" * (600 << 10))
    await shell.end(None, "why")
    sizes = [len(f.output.data) for f in frames.sent[:-1]]
    assert sizes == [256 << 10, 256 << 10, 88 << 10]
    assert {f.output.fd for f in frames.sent[:-1]} == {2}
    end = frames.sent[-1].shell_end
    assert (end.ran, end.notice) == (False, "why")


async def test_started_is_sent_once_and_only_to_a_client_that_awaits_it() -> None:
    frames = FakeFrames()
    shell = FramesShell(frames, pb.ShellStart(await_start=True))
    await shell.started()
    await shell.started()
    assert [f.WhichOneof("kind") for f in frames.sent] == ["started"]
    older = FakeFrames()  # a client that knows no `started` frame
    await FramesShell(older, pb.ShellStart()).started()
    assert older.sent == []


class _OlderDaemon:
    """The frames of a daemon that announces no `started`: it ends the shell once the
    client's input arrived."""

    def __init__(self) -> None:
        self.sent: list[pb.Frame] = []
        self._input = asyncio.Event()

    async def send(self, frame: pb.Frame) -> None:
        self.sent.append(frame)
        if frame.WhichOneof("kind") == "bytes":
            self._input.set()

    async def recv(self) -> pb.Frame | None:
        await asyncio.wait_for(self._input.wait(), 10)
        return pb.Frame(shell_end=pb.ShellEnd(ran=True, status=0))


async def test_an_older_daemon_gets_the_input_at_once(pipes: Pipes) -> None:
    from dockyard.session._shell import serve_shell

    os.write(pipes.in_w, b"typed")
    frames = _OlderDaemon()
    assert await serve_shell(frames, pipes.terminal(terminal=False)) == 0
    start = frames.sent[0].shell_start
    assert not start.await_start
    assert frames.sent[1].bytes.data == b"typed"
