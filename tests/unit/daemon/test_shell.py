"""A daemon's debug shell on its client's terminal: the request asks for it
(``SolveRequest.debug_shell``, bound to the build's own session), and the relay between
the process's pipes and the session's :class:`~dockyard.session.ShellChannel` — both
ways, flow-controlled, the window size fed to the pty, and a client that goes away
ending the process with nothing left open."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable

import pytest

from dockyard.api._gen import control_pb2 as pb
from dockyard.core import NullReporter, SessionError, UsageError
from dockyard.daemon._request import build_request
from dockyard.daemon._shell import SessionConsole, _Relay
from dockyard.engine._plugins import frontends
from dockyard.executor.types import Stdio
from dockyard.llbsolver import DebugShell
from dockyard.session import SessionManager, WindowSize


class FakeChannel:
    """The client's terminal as the relay sees it: what it will send (``send``), what
    came back."""

    def __init__(self, *, tty: bool = False, size: WindowSize | None = None) -> None:
        self.tty = tty
        self.size = size
        self._incoming: asyncio.Queue[bytes | WindowSize | None] = asyncio.Queue()
        self.outputs: dict[int, bytes] = {1: b"", 2: b""}
        self.ended: tuple[int | None, str] | None = None
        self.output_delay = 0.0
        self.events: list[str] = []  # started and end, in order

    def send(self, event: bytes | WindowSize | None) -> None:
        self._incoming.put_nowait(event)

    async def receive(self) -> bytes | WindowSize | None:
        return await self._incoming.get()

    async def output(self, fd: int, data: bytes) -> None:
        if self.output_delay:
            await asyncio.sleep(self.output_delay)
        self.outputs[fd] += data

    async def started(self) -> None:
        self.events.append("started")

    async def end(self, status: int | None, notice: str = "") -> None:
        self.ended = (status, notice)
        self.events.append("end")


def _open_pipes() -> set[tuple[int, int]]:
    """The pipes this process holds open (device and inode of each), whatever the fd
    numbers: another test's objects closing their fds meanwhile do not count."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (or the listing's own fd)
        if stat.S_ISFIFO(st.st_mode):
            out.add((st.st_dev, st.st_ino))
    return out


def _cat(stdio: Stdio, err: bytes) -> None:
    """A process: its input to its stdout, then ``err`` on its stderr."""
    while data := os.read(stdio.stdin, 65536):
        view = memoryview(data)
        while view:
            view = view[os.write(stdio.stdout, view) :]
    os.write(stdio.stderr, err)


async def test_input_and_output_are_relayed() -> None:
    before = _open_pipes()
    channel = FakeChannel()
    relay = _Relay(channel)
    async with relay.running():
        assert relay.stdio.terminal is False
        assert relay.stdio.window is None
        assert relay.stdio.stdout != relay.stdio.stderr
        channel.send(b"hello ")
        channel.send(WindowSize(rows=1, cols=2))  # (no pty: nothing to resize)
        channel.send(b"world")
        channel.send(b"")  # the end of the input
        await asyncio.to_thread(_cat, relay.stdio, b"to stderr")
        relay.finish(0)
    assert channel.outputs == {1: b"hello world", 2: b"to stderr"}
    assert channel.ended == (0, "")
    assert _open_pipes() <= before  # every pipe of the relay closed


async def test_output_waits_for_a_slow_client() -> None:
    channel = FakeChannel()
    channel.output_delay = 0.001
    relay = _Relay(channel)
    big = bytes(range(256)) * 8192  # 2 MiB: far more than a pipe holds
    async with relay.running():
        channel.send(big)
        channel.send(b"")
        await asyncio.to_thread(_cat, relay.stdio, b"")
        relay.finish(0)
    assert channel.outputs[1] == big


async def test_a_terminal_gets_one_output_and_the_clients_window() -> None:
    channel = FakeChannel(tty=True, size=WindowSize(rows=24, cols=80))
    relay = _Relay(channel)
    sizes: list[tuple[int, int] | None] = []
    async with relay.running():
        stdio = relay.stdio
        assert stdio.terminal is True
        assert stdio.stdout == stdio.stderr  # a pty has one output
        assert not os.get_blocking(stdio.stdout)  # the pty bridge writes it on the loop
        window = stdio.window
        assert window is not None
        assert window.size() == (24, 80)
        unwatch: Callable[[], None] = window.watch(lambda: sizes.append(window.size()))
        channel.send(WindowSize(rows=50, cols=160))
        for _ in range(100):
            if sizes:
                break
            await asyncio.sleep(0.01)
        unwatch()
        os.write(stdio.stdout, b"prompt# ")
        relay.finish(None, "--invoke: no such shell")
    assert sizes == [(50, 160)]
    assert channel.outputs[1] == b"prompt# "
    assert channel.ended == (None, "--invoke: no such shell")


async def test_a_client_that_goes_away_cancels_the_process() -> None:
    before = _open_pipes()
    channel = FakeChannel()
    relay = _Relay(channel)
    cancelled = False

    async def shell() -> None:
        nonlocal cancelled
        async with relay.running():
            channel.send(None)  # the client closed the shell's stream
            try:
                await asyncio.sleep(30)  # the process runs
            except asyncio.CancelledError:
                cancelled = True  # (the executor kills the container here)
                raise

    with pytest.raises(SessionError, match="closed the debug shell's terminal"):
        await shell()
    assert cancelled
    assert channel.ended is None
    assert _open_pipes() <= before


async def test_a_cancelled_build_stays_cancelled() -> None:
    channel = FakeChannel()
    relay = _Relay(channel)

    async def shell() -> None:
        async with relay.running():
            await asyncio.sleep(30)

    task = asyncio.create_task(shell())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert channel.ended is None


async def test_no_session_no_shell() -> None:
    console = SessionConsole(SessionManager(attach_timeout=0.01), "not-attached")
    with pytest.raises(SessionError, match="no session"):
        async with console.attach("running sh"):
            pass


def _solve(**fields: object) -> pb.SolveRequest:
    return pb.SolveRequest(ref="r", frontend="dockerfile.v0", **fields)  # type: ignore[arg-type]


def test_the_request_binds_the_shell_to_its_session() -> None:
    sessions = SessionManager()
    built = build_request(
        _solve(
            session="s1",
            debug_shell=pb.DebugShell(args=["/bin/sh", "-l"], on_error=True, on_success=False),
        ),
        frontends=frontends(),
        reporter=NullReporter(),
        sessions=sessions,
    )
    shell = built.debug_shell
    assert isinstance(shell, DebugShell)
    assert shell.args == ("/bin/sh", "-l")
    assert (shell.on_error, shell.on_success) == (True, False)
    assert isinstance(shell.console, SessionConsole)
    assert shell.console._session_id == "s1"
    plain = build_request(
        _solve(session="s1"), frontends=frontends(), reporter=NullReporter(), sessions=sessions
    )
    assert plain.debug_shell is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"session": "s1", "debug_shell": pb.DebugShell(on_error=True)}, "needs a command"),
        ({"debug_shell": pb.DebugShell(args=["sh"], on_error=True)}, "names no session"),
    ],
)
def test_a_shell_without_a_command_or_session_is_refused(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        build_request(
            _solve(**fields),
            frontends=frontends(),
            reporter=NullReporter(),
            sessions=SessionManager(),
        )


async def test_the_client_hears_once_that_the_process_runs_and_before_its_end() -> None:
    # the client reads its input only after `started`: keys typed while the step's
    # sandbox was made wait in its terminal instead of going to a pty no shell reads yet
    channel = FakeChannel()
    relay = _Relay(channel)
    async with relay.running():
        assert relay.stdio.started is not None
        relay.stdio.started()
        relay.stdio.started()  # once only
        channel.send(b"")
        await asyncio.to_thread(_cat, relay.stdio, b"")
        relay.finish(0)
    assert channel.events == ["started", "end"]


async def test_a_process_that_never_ran_is_never_started() -> None:
    channel = FakeChannel()
    relay = _Relay(channel)
    async with relay.running():
        relay.finish(None, "--invoke: no such shell")
    assert channel.events == ["end"]
