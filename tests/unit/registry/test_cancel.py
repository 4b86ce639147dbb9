"""Cancelling a registry request mid-connect closes its socket.

httpcore's TLS start closes the TCP stream on errors but not on cancellation, so a
request cancelled during the TLS handshake (a sibling upload of a push that failed, a
cancelled build) would leave its socket open until the garbage collector finds it: a
ResourceWarning, an error under the test suite's warnings-as-errors. The registry
client's connections close it themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from dockyard.registry import HostConfig, RegistryClient, RegistryConfig, RetryPolicy
from dockyard.registry._network import is_closing

FAST = RetryPolicy(attempts=1, initial_delay=0, jitter=0)


class _SilentServer:
    """A loopback TCP server that accepts connections, reads what the client sends and
    never answers (a TLS handshake to it never completes)."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.closed_by_peer = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        # EOF: the client closed its end
        self.closed_by_peer.set()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_SilentServer]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()


@pytest.mark.parametrize("tls", [True, False])
async def test_a_request_cancelled_while_connecting_closes_its_socket(tls: bool) -> None:
    async with _SilentServer().running() as server:
        host = f"127.0.0.1:{server.port}"
        # loopback registries are tried over HTTPS first; http=True goes straight to HTTP
        config = RegistryConfig(hosts={host: HostConfig(http=not tls)})
        client = RegistryClient(config=config, retry=FAST)
        try:
            task = asyncio.create_task(client.resolve(f"{host}/app:latest"))
            await asyncio.wait_for(server.connected.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # not a speed limit: a guard against hanging when the socket stays open
            await asyncio.wait_for(server.closed_by_peer.wait(), 30)
        finally:
            await client.aclose()


async def test_the_client_connects_through_the_closing_transport() -> None:
    # closing_transport reaches into httpx's pool to set the network backend; this fails
    # if a new httpx or httpcore moved it (and the socket leak came back unnoticed)
    client = RegistryClient(config=RegistryConfig(), retry=FAST)
    try:
        http = client._session.client(HostConfig(), verify=True)
        assert is_closing(http._transport)
    finally:
        await client.aclose()
