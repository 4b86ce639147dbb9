"""A TCP proxy in front of a registry that breaks blob downloads on demand."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class _Exchange:
    mode: str = ""
    sent: int = 0
    header_done: bool = False
    corrupted: bool = False


@dataclass
class FlakyProxy:
    """Forwards 127.0.0.1:``port`` to the registry; for the next blob ``GET`` requests:
    ``fail_blob_gets`` answers 503, ``cut_blob_gets`` closes the connection after
    ``cut_after`` response bytes, ``corrupt_blob_gets`` flips a body byte."""

    upstream_port: int
    fail_blob_gets: int = 0
    cut_blob_gets: int = 0
    cut_after: int = 64 * 1024
    corrupt_blob_gets: int = 0
    blob_requests: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        for task in handlers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        exchange = _Exchange()

        def shut() -> None:
            writer.transport.abort()
            up_writer.transport.abort()

        async def requests() -> None:
            while data := await reader.read(65536):
                line = data.split(b"\r\n", 1)[0]
                if data.startswith(b"GET ") and b"/blobs/sha256:" in line:
                    self.blob_requests.append(data.split(b"\r\n\r\n", 1)[0])
                    exchange.__init__()  # type: ignore[misc]
                    if self.fail_blob_gets:
                        self.fail_blob_gets -= 1
                        writer.write(_503)
                        await writer.drain()
                        shut()
                        return
                    if self.cut_blob_gets:
                        self.cut_blob_gets -= 1
                        exchange.mode = "cut"
                    elif self.corrupt_blob_gets:
                        self.corrupt_blob_gets -= 1
                        exchange.mode = "corrupt"
                elif data[:4] in (b"GET ", b"HEAD", b"POST", b"PUT ", b"PATC"):
                    exchange.__init__()  # type: ignore[misc]
                up_writer.write(data)
                await up_writer.drain()

        async def responses() -> None:
            while data := await up_reader.read(65536):
                if exchange.mode == "cut":
                    room = self.cut_after - exchange.sent
                    if len(data) >= room:
                        writer.write(data[:room])
                        await writer.drain()
                        shut()
                        return
                elif exchange.mode == "corrupt" and not exchange.corrupted:
                    start = 0
                    if not exchange.header_done:
                        end = data.find(b"\r\n\r\n")
                        if end >= 0:
                            exchange.header_done = True
                            start = end + 4
                    if exchange.header_done and start < len(data):
                        data = data[:-1] + bytes([data[-1] ^ 0xFF])
                        exchange.corrupted = True
                exchange.sent += len(data)
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(requests()), asyncio.create_task(responses())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                    await pump
            shut()
