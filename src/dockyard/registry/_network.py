"""Connections for the registry client's httpx transports that never leak a socket.

httpcore closes the TCP stream when a TLS handshake fails, but not when the task doing
it is cancelled (it catches ``Exception`` only). A request cancelled mid-handshake —
the sibling uploads of a push whose first blob was refused, a cancelled build — then
leaves its socket open until the garbage collector finds it (a ``ResourceWarning``).
:func:`closing_transport` makes an httpx transport whose connections close the TCP
stream on any failure of the TLS start, cancellation included.

Imported lazily with httpx (see ``_http``).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["closing_transport", "is_closing"]


class _ClosingStream(httpcore.AsyncNetworkStream):
    """A plain TCP stream whose TLS start closes it when it does not complete."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        try:
            return await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            # Cancelled (or failed): nobody else holds this stream. Closing the transport
            # happens before the first await inside aclose, so even a second cancellation
            # cannot leave the socket open.
            await self._inner.aclose()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _ClosingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _ClosingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _ClosingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def closing_transport(verify: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """An httpx transport (TLS settings from ``verify``) whose connections close their
    socket when the TLS start is cancelled. httpx offers no public way to choose the
    network backend of its connection pool, so it is set on the pool it made; a test
    (``tests/unit/registry/test_cancel.py``) fails if a new httpx or httpcore moves it."""
    transport = httpx.AsyncHTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and isinstance(
        backend, httpcore.AsyncNetworkBackend
    ):
        pool._network_backend = _ClosingBackend(backend)
    return transport


def is_closing(transport: httpx.AsyncBaseTransport) -> bool:
    """Whether ``transport`` was made by :func:`closing_transport` with its backend set."""
    pool = getattr(transport, "_pool", None)
    return isinstance(getattr(pool, "_network_backend", None), _ClosingBackend)
