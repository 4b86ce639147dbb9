"""Pushing layers while they are compressed.

When an export pushes, each layer it has to compress (never one whose blob the record
already has: the push only checks for those with a ``HEAD``) also streams its compressed
bytes to the push target as they come out of the compressor
(:meth:`~dockyard.registry.RegistryClient.push_blob_stream`: one streamed ``PATCH``,
then the ``PUT`` with the digest once it is known, which the registry verifies). The
blob still lands in the content store in the same pass — the image store, the cache and
the next export use it. The push that follows finds the streamed layers in the registry
already; a stream that failed costs nothing but the attempt: its blob is then uploaded
from the content store as before.

:class:`LayerStream` is the bridge between the compressor's thread and the event loop:
bounded (a writer waits while ``limit`` bytes are queued, so a slow registry slows the
compression rather than filling memory), and dropping what it is given once the upload
gave up (the compression then runs at full speed).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from dockyard.core import Digest, DockyardError
from dockyard.oci import Descriptor

if TYPE_CHECKING:
    from dockyard.content import Writer
    from dockyard.registry import Reference, RegistryClient

__all__ = ["LayerPusher", "LayerStream", "TeeSink"]

_PIECE = 1 << 20  # bytes handed to the event loop at a time
_LIMIT = 16 << 20  # bytes queued at most before a writer waits


class LayerStream:
    """Compressed bytes of one layer on their way to the registry (see the module
    docstring): the compressor's thread calls :meth:`write` and :meth:`close`; the
    event loop reads :meth:`chunks` and awaits :attr:`descriptor`, which the maker of
    the blob settles with :meth:`finish` or :meth:`fail`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, limit: int = _LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._buf = bytearray()
        self._ended = False
        self._error: BaseException | None = None
        self._dropped = False  # the reader gave up: writes are ignored
        self._ready = asyncio.Event()
        self.descriptor: asyncio.Future[Descriptor] = loop.create_future()

    # -- the writing thread -------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if not self._dropped:
            self._buf += data
            if len(self._buf) >= _PIECE:
                piece, self._buf = bytes(self._buf), bytearray()
                self._hand_over(piece)
        return len(data)

    def close(self) -> None:
        """No more bytes will come (the compressor finished)."""
        if self._buf and not self._dropped:
            self._hand_over(bytes(self._buf))
        self._buf = bytearray()
        self._end()

    def _end(self) -> None:
        with self._cond:
            if self._ended:
                return
            self._ended = True
        self._loop.call_soon_threadsafe(self._ready.set)

    def _hand_over(self, piece: bytes) -> None:
        with self._cond:
            while self._queued >= self._limit and not self._dropped:
                self._cond.wait()
            if self._dropped:
                return
            self._queue.append(piece)
            self._queued += len(piece)
        self._loop.call_soon_threadsafe(self._ready.set)

    # -- the event loop -----------------------------------------------------------------
    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes as they come, until :meth:`close`; raises if the blob could not
        be made (:meth:`fail`), so that the upload is never closed."""
        while True:
            with self._cond:
                piece = self._queue.popleft() if self._queue else None
                if piece is not None:
                    self._queued -= len(piece)
                    self._cond.notify_all()
                ended = self._ended and not self._queue
                if piece is None and not ended:
                    self._ready.clear()
            if self._error is not None:
                raise DockyardError(f"the layer could not be made: {self._error}")
            if piece is not None:
                yield piece
            elif ended:
                return
            else:
                await self._ready.wait()

    def finish(self, digest: Digest, size: int, media_type: str) -> None:
        """The blob is complete: what closes the upload (event loop)."""
        if not self.descriptor.done():
            self.descriptor.set_result(Descriptor(media_type=media_type, digest=digest, size=size))

    def fail(self, error: BaseException) -> None:
        """Making the blob failed: the upload must not be closed (event loop)."""
        self._error = error
        self.drop()
        self._end()
        self._ready.set()
        if not self.descriptor.done():
            self.descriptor.set_exception(DockyardError(f"the layer could not be made: {error}"))
            self.descriptor.exception()  # retrieved: no "never retrieved" warning

    def drop(self) -> None:
        """The upload gave up: ignore further writes and wake a waiting writer."""
        with self._cond:
            self._dropped = True
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()


class TeeSink:
    """The compressor's output: into a content-store ingest (hashed there) and on to a
    :class:`LayerStream` (written from the compressor's thread)."""

    __slots__ = ("_stream", "_w")

    def __init__(self, w: Writer, stream: LayerStream) -> None:
        self._w = w
        self._stream = stream

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        n = self._w.write_sync(data)
        self._stream.write(data)
        return n


class LayerPusher:
    """Starts a streamed upload to ``target``'s repository for each layer an export
    compresses (:meth:`start`); :meth:`wait` for them before pushing the image; :meth:`aclose`
    ends them. A failed upload is counted, not raised (the push uploads that
    blob again from the content store)."""

    def __init__(self, client: RegistryClient, target: Reference) -> None:
        self._client = client
        self._target = target
        self._tasks: list[asyncio.Task[None]] = []
        self.streamed = 0
        self.failed = 0

    def start(self) -> LayerStream:
        """A new stream, already being uploaded (event loop)."""
        stream = LayerStream(asyncio.get_running_loop())
        self._tasks.append(asyncio.create_task(self._upload(stream)))
        return stream

    async def _upload(self, stream: LayerStream) -> None:
        try:
            await self._client.push_blob_stream(self._target, stream.chunks(), stream.descriptor)
        except (DockyardError, OSError):
            self.failed += 1
            stream.drop()
        except BaseException:
            stream.drop()
            raise
        else:
            self.streamed += 1

    async def wait(self) -> None:
        """Until every upload started has ended (succeeded or given up)."""
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def aclose(self, grace: float = 10.0) -> None:
        """End every upload: those whose blob was made or failed finish on their own
        (closed, or their session deleted) within ``grace`` seconds; the rest are
        cancelled."""
        if not self._tasks:
            return
        try:
            await asyncio.wait(self._tasks, timeout=grace)
        finally:  # also when this task is cancelled (which then propagates)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
