"""SSH agent forwarding with a stand-in agent (the real ssh-agent is exercised by the
integration tests): the forwarded socket is private and relays every connection."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.core import UsageError
from dockyard.session import Session, SshAgents, SshSpec
from dockyard.session._ssh import forwarding_socket

from .harness import Harness, socket_dir


@pytest.fixture
async def echo_agent() -> AsyncIterator[Path]:
    """A unix socket server answering each message with ``agent:`` + the message."""
    directory = socket_dir()
    path = directory / "agent.sock"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(b"agent:" + data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()
        path.unlink(missing_ok=True)
        directory.rmdir()


def test_parse_ssh_specs() -> None:
    assert SshSpec.parse("default") == SshSpec(id="default")
    assert SshSpec.parse("gh=/run/agent.sock") == SshSpec(id="gh", paths=(Path("/run/agent.sock"),))
    assert SshSpec.parse("k=a,b").paths == (Path("a"), Path("b"))
    with pytest.raises(UsageError):
        SshSpec.parse("=x")


def test_agent_sources_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="SSH_AUTH_SOCK is not set"):
        SshAgents([SshSpec()], environ={})
    with pytest.raises(UsageError, match="cannot use"):
        SshAgents([SshSpec(id="x", paths=(tmp_path / "missing",))])
    with pytest.raises(UsageError, match="neither a socket nor a key file"):
        SshAgents([SshSpec(id="x", paths=(tmp_path,))])
    # a file with no private key is refused before the build, as buildx refuses it
    (tmp_path / "notes.txt").write_text("garbage\n")
    with pytest.raises(UsageError, match=r"'.*notes\.txt' is not a private key file$"):
        SshAgents([SshSpec(id="x", paths=(tmp_path / "notes.txt",))])
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3Nz me@host\n")
    with pytest.raises(UsageError, match="it is a public key"):
        SshAgents([SshSpec(id="x", paths=(tmp_path / "id_ed25519.pub",))])
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n")
    assert SshAgents([SshSpec(id="x", paths=(key,))]).ids() == {"x"}


async def test_forwarded_socket_relays_connections(harness: Harness, echo_agent: Path) -> None:
    agents = SshAgents([SshSpec()], environ={"SSH_AUTH_SOCK": str(echo_agent)})
    async with harness.open(Session(ssh=agents)) as handle:
        assert handle.ssh.has("default")
        async with handle.ssh.forward("default", mode=0o660) as path:
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700

            async def converse(tag: bytes) -> bytes:
                reader, writer = await asyncio.open_unix_connection(str(path))
                writer.write(tag)
                await writer.drain()
                answer = await reader.readexactly(len(tag) + 6)
                writer.close()
                await writer.wait_closed()
                return answer

            answers = await asyncio.gather(*(converse(b"ping %d" % i) for i in range(5)))
            assert answers == [b"agent:ping %d" % i for i in range(5)]
        assert not path.exists()
        assert not path.parent.exists()


async def test_an_unreachable_agent_hangs_up(harness: Harness, echo_agent: Path) -> None:
    agents = SshAgents([SshSpec(id="gone", paths=(echo_agent,))])
    async with harness.open(Session(ssh=agents)) as handle:
        os.unlink(echo_agent)  # the agent went away after the session started
        async with handle.ssh.forward("gone") as path:
            reader, writer = await asyncio.open_unix_connection(str(path))
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()


class _SilentAgent:
    """A forwarded agent connection that never answers (until closed)."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def read(self) -> bytes:
        await self.closed.wait()
        return b""

    async def write(self, data: bytes) -> None:
        return None

    async def write_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed.set()


async def test_closing_the_socket_ends_its_connections_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Connections still relayed when the forwarded socket closes are ended by it; their
    # handlers must not end cancelled: Python 3.11's stream server then logs "Exception
    # in callback StreamReaderProtocol.connection_made.<locals>.callback ... CancelledError"
    agents: list[_SilentAgent] = []
    connected = asyncio.Event()

    async def connect() -> _SilentAgent:
        agents.append(_SilentAgent())
        connected.set()
        return agents[-1]

    writers = []
    parent = socket_dir()
    async with forwarding_socket(connect, parent=parent) as path:
        for _ in range(3):
            connected.clear()
            reader, writer = await asyncio.open_unix_connection(str(path))
            writers.append((reader, writer))
            await connected.wait()
    for reader, writer in writers:
        assert await asyncio.wait_for(reader.read(), 10) == b""  # hung up
        writer.close()
    parent.rmdir()  # (the socket's own directory is gone)
    assert all(agent.closed.is_set() for agent in agents)
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
