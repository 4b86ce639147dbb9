"""Runs a session test over each transport: in-process, gRPC on a unix socket, gRPC on
loopback TCP. Shared by the unit and integration tests of the session."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from dockyard.session import (
    CHANNEL_OPTIONS,
    SERVER_OPTIONS,
    Attachment,
    Session,
    SessionHandle,
    SessionManager,
    SessionService,
    attach,
)

TRANSPORTS = ("in-process", "grpc-unix", "grpc-tcp")


class Harness:
    """An engine-side :class:`SessionManager` reachable through one transport."""

    def __init__(self, transport: str, manager: SessionManager) -> None:
        self.transport = transport
        self.manager = manager
        self.target = ""
        self.channel: grpc.aio.Channel | None = None
        self._server: grpc.aio.Server | None = None
        self._socket_dir: str | None = None
        self.attachments: list[Attachment] = []

    async def start(self) -> None:
        if self.transport == "in-process":
            return
        server = grpc.aio.server(options=SERVER_OPTIONS)
        SessionService(self.manager).add_to_server(server)
        if self.transport == "grpc-unix":
            self._socket_dir = tempfile.mkdtemp(prefix="dy-sess-")
            self.target = f"unix:{self._socket_dir}/engine.sock"
            server.add_insecure_port(self.target)
        else:
            port = server.add_insecure_port("127.0.0.1:0")
            self.target = f"127.0.0.1:{port}"
        await server.start()
        self._server = server
        self.channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)

    async def stop(self) -> None:
        for attachment in self.attachments:
            await attachment.close()
        await self.manager.aclose()
        if self.channel is not None:
            await self.channel.close()
        if self._server is not None:
            await self._server.stop(None)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def open(self, session: Session) -> AsyncIterator[SessionHandle]:
        """The engine's handle on ``session``, attached through this transport."""
        if self.channel is None:
            async with self.manager.attach(session) as handle:
                yield handle
            return
        attachment = await attach(session, self.channel)
        self.attachments.append(attachment)
        try:
            yield await self.manager.get(session.id)
        finally:
            await attachment.close()
            self.attachments.remove(attachment)


def socket_dir() -> Path:
    """A short private directory for unix sockets (``sun_path`` is 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="dy-sock-"))


async def eventually(condition: Callable[[], bool], *, limit: float = 10.0) -> None:
    """Wait until ``condition()`` holds (another task or process must make it true);
    fails after ``limit`` seconds."""
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {limit}s")
