"""LayerStream: the compressor thread's bytes reach the event loop whole and in order,
a slow reader holds the writer back, and a failure never lets the upload close."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from dockyard.core import Digest, DockyardError
from dockyard.exporter._upload import LayerStream


async def _collect(stream: LayerStream) -> bytes:
    out = bytearray()
    async for chunk in stream.chunks():
        out += chunk
    return bytes(out)


async def test_bytes_arrive_whole_and_in_order() -> None:
    stream = LayerStream(asyncio.get_running_loop(), limit=3 << 20)
    data = os.urandom((5 << 20) + 123)

    def produce() -> None:
        for i in range(0, len(data), 70_000):
            stream.write(data[i : i + 70_000])
        stream.close()

    reader = asyncio.create_task(_collect(stream))
    await asyncio.to_thread(produce)
    assert await reader == data
    stream.finish(Digest.from_bytes(data), len(data), "application/octet-stream")
    desc = await stream.descriptor
    assert (desc.digest, desc.size) == (Digest.from_bytes(data), len(data))


async def test_a_full_queue_holds_the_writer_until_dropped() -> None:
    stream = LayerStream(asyncio.get_running_loop(), limit=1 << 20)
    wrote = threading.Event()

    def produce() -> None:
        for _ in range(8):
            stream.write(b"x" * (1 << 20))
        wrote.set()

    writer = asyncio.create_task(asyncio.to_thread(produce))
    await asyncio.sleep(0.2)
    assert not wrote.is_set()  # nobody reads: the writer waits
    stream.drop()  # the upload gave up: writes are ignored from now on
    await writer
    assert wrote.is_set()


async def test_a_failed_blob_makes_the_stream_raise() -> None:
    stream = LayerStream(asyncio.get_running_loop())
    stream.write(b"partial" * 200_000)
    stream.fail(OSError("disk on fire"))
    with pytest.raises(DockyardError, match="disk on fire"):
        await _collect(stream)
    with pytest.raises(DockyardError, match="disk on fire"):
        await stream.descriptor
