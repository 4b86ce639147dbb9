"""Blocking streams for unpacking layers: a tee that hashes (and optionally stores) the
compressed bytes while they are read, and decompressors for gzip, zstd and plain tars.

Everything here runs in a worker thread. :class:`Tee` checks a cancellation flag on every
read so that an unpack abandoned by its caller stops at the next chunk instead of
running to the end.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import BinaryIO, Protocol, cast

from dockyard.core import CancelledError, ContentError, Digest

__all__ = [
    "CHUNK",
    "Compression",
    "ReadAhead",
    "Tee",
    "decompressed",
    "decompressed_ahead",
    "sniff_compression",
]

CHUNK = 1 << 20

Compression = str
"""``"gzip"``, ``"zstd"`` or ``"uncompressed"``."""

_GZIP_INPUT = 256 << 10  # compressed bytes per zlib call: small pending tails to copy
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class _Sink(Protocol):
    def write_sync(self, data: bytes | bytearray | memoryview) -> int: ...


class Tee:
    """Reads ``src``, hashing (sha256) and counting every byte, and copying it to
    ``sink`` (a content-store writer) when given. Any of the ``cancelled`` events being
    set stops the next read with :class:`~dockyard.core.CancelledError`.

    ``hashed=False`` (the bytes are verified elsewhere) skips the hash: :attr:`digest`
    is then unavailable. ``peek(n)`` looks at the first bytes without consuming them (for sniffing the
    compression). :meth:`drain` reads to the end.
    """

    def __init__(
        self,
        src: _Readable,
        *,
        sink: _Sink | None = None,
        cancelled: tuple[threading.Event, ...] = (),
        on_read: Callable[[int], None] | None = None,
        hashed: bool = True,
    ) -> None:
        self._src = src
        self._sink = sink
        self._cancelled = cancelled
        self._on_read = on_read
        self._hash = hashlib.sha256() if hashed else None
        self._pending = b""
        self.size = 0

    def peek(self, n: int) -> bytes:
        while len(self._pending) < n:
            data = self._src.read(n - len(self._pending))
            if not data:
                break
            self._pending += data
        return self._pending[:n]

    def read(self, n: int = -1) -> bytes:
        if any(event.is_set() for event in self._cancelled):
            raise CancelledError("layer unpack cancelled")
        if n < 0:
            data, self._pending = self._pending + self._src.read(), b""
        elif self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
        else:
            data = self._src.read(n)
        if data:
            if self._hash is not None:
                self._hash.update(data)
            if self._sink is not None:
                self._sink.write_sync(data)
            self.size += len(data)
            if self._on_read is not None:
                self._on_read(self.size)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> Digest:
        if self._hash is None:
            raise ValueError("a tee made with hashed=False has no digest")
        return Digest("sha256:" + self._hash.hexdigest())


def sniff_compression(head: bytes) -> Compression:
    """The compression a blob's first bytes show (BuildKit detects it the same way; the
    media type alone is not trusted: registries serve mislabelled layers)."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "uncompressed"


class _Buffered:
    """``read(n)`` returns exactly ``n`` bytes unless the stream ends (what
    :class:`tarfile.TarFile` needs from its file object), served from 1 MiB pieces of
    ``inner``: tarfile reads 512-byte headers, and asking a decompressor for 512 bytes at
    a time would cost a call (and a copy of its pending input) per header."""

    def __init__(self, inner: _Readable) -> None:
        self._inner = inner
        self._buf = b""
        self._pos = 0
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [self._buf[self._pos :]]
            self._buf, self._pos = b"", 0
            while not self._eof:
                chunk = self._inner.read(CHUNK)
                if not chunk:
                    self._eof = True
                parts.append(chunk)
            return b"".join(parts)
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if have >= n:  # a header, or the rest of a piece
            if pos == 0 and n == len(buf):
                self._buf = b""
                return buf
            self._pos = pos + n
            return buf[pos : pos + n]
        # Spanning pieces: gather views and copy each byte once (the join); a read that
        # is exactly one whole piece returns it as it is. (Concatenating the rest of the
        # buffer with each new piece, then slicing, copied every byte 2-3 times, all
        # under the GIL: a third of the applying thread's time in the pull bench.)
        pieces: list[bytes | memoryview] = [memoryview(buf)[pos:]] if have else []
        got = have
        self._buf, self._pos = b"", 0
        while got < n and not self._eof:
            chunk = self._inner.read(CHUNK)
            if not chunk:
                self._eof = True
                break
            take = n - got
            if len(chunk) <= take:
                pieces.append(chunk)
                got += len(chunk)
            else:
                pieces.append(memoryview(chunk)[:take])
                got = n
                self._buf, self._pos = chunk, take
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class _HashedBuffered(_Buffered):
    """:class:`_Buffered` over a :class:`ReadAhead`, passing on its hash of the whole
    stream once everything was consumed."""

    def __init__(self, inner: ReadAhead) -> None:
        super().__init__(inner)
        self._ahead = inner

    def sha256_of_all(self) -> tuple[str, int]:
        if not self._eof or self._pos < len(self._buf):
            raise ValueError("the stream was not read to its end")
        return self._ahead.sha256_of_all()


class _Gunzip:
    """Streaming gzip decompression (multi-member, like ``gzip -d``; zero padding after
    the last member is allowed), by zlib-ng (inflate about twice as fast as zlib's),
    which releases the GIL while it works."""

    def __init__(self, src: _Readable) -> None:
        from zlib_ng import zlib_ng  # loaded when a gzip layer is unpacked

        self._zlib = zlib_ng
        self._error = cast("type[Exception]", zlib_ng.error)  # its stub types it oddly
        self._src = src
        self._d = zlib_ng.decompressobj(wbits=31)
        self._input = b""
        self._started = False
        self._done = False

    def read(self, n: int = -1) -> bytes:
        limit = n if n > 0 else CHUNK
        while not self._done:
            if not self._input:
                self._input = self._src.read(_GZIP_INPUT)
                if not self._input:
                    if self._started and not self._d.eof:
                        raise ContentError("truncated gzip layer (the stream ended early)")
                    self._done = True
                    break
            if self._d.eof:
                if not self._input.strip(b"\0"):
                    self._input = b""
                    continue
                self._d = self._zlib.decompressobj(wbits=31)
            self._started = True
            try:
                out = self._d.decompress(self._input, limit)
            except self._error as exc:
                raise ContentError(f"corrupt gzip layer: {exc}") from exc
            self._input = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
            if out:
                return out
        return b""


class _Unzstd:
    def __init__(self, src: _Readable) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            src,  # type: ignore[arg-type]  # any object with read() works
            read_size=CHUNK,
            read_across_frames=True,
        )

    def read(self, n: int = -1) -> bytes:
        try:
            return bytes(self._reader.read(n if n > 0 else CHUNK))
        except self._error as exc:
            raise ContentError(f"corrupt zstd layer: {exc}") from exc


class ReadAhead:
    """Reads ``inner`` in a thread of its own, up to ``depth`` pieces of 1 MiB ahead of
    the consumer: reading the blob (a download being followed) and decompressing it run
    beside the consumer's tar parsing and file writes, on the other core (zlib-ng,
    zstandard, hashlib and file reads release the GIL).

    ``read`` returns the pieces in order (``b""`` at the end) and re-raises what the
    thread raised. :meth:`close` (blocking) stops the thread and waits for it: call it
    before the source ``inner`` reads from goes away.
    """

    _END = b""

    def __init__(self, inner: _Readable, depth: int = 4) -> None:
        import queue

        self._inner = inner
        self._hash = hashlib.sha256()
        self._size = 0
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="layer-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._inner.read(CHUNK)
                self._hash.update(chunk)
                self._size += len(chunk)
                if not self._put(chunk) or not chunk:
                    return
        except BaseException as exc:  # handed to the consumer
            self._put(exc)

    @property
    def stream(self) -> BinaryIO:
        """The consumer's side: ``read(n)`` returning exactly ``n`` bytes until the end,
        and ``sha256_of_all()`` (see :func:`dockyard.snapshot._apply.apply_tar`): the
        thread hashes what it reads, so the consumer need not."""
        return _HashedBuffered(self)  # type: ignore[return-value]

    def sha256_of_all(self) -> tuple[str, int]:
        """``("sha256:<hex>", size)`` of the whole stream, once it was read to its end."""
        if not self._ended:
            raise ValueError("the stream was not read to its end")
        return "sha256:" + self._hash.hexdigest(), self._size

    def read(self, n: int = -1) -> bytes:
        """The next piece (any size; ``n`` is a hint, as :class:`_Buffered` asks)."""
        if self._ended:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if not item:
            self._ended = True
        return item

    def close(self, interrupt: Callable[[], None] | None = None) -> None:
        """Stop the thread and wait for it; ``interrupt`` wakes a read of ``inner`` that
        waits for bytes (a download being followed), if the thread is still running."""
        import queue

        self._stop.set()
        if interrupt is not None and self._thread.is_alive():
            interrupt()
        while self._thread.is_alive():
            try:  # unblock a put
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)
        self._ended = True


def decompressed(tee: Tee) -> BinaryIO:
    """The uncompressed tar inside the blob ``tee`` reads (compression sniffed)."""
    return _Buffered(_decompressor(tee))  # type: ignore[return-value]


def _decompressor(tee: Tee) -> _Readable:
    kind = sniff_compression(tee.peek(4))
    if kind == "gzip":
        return _Gunzip(tee)
    if kind == "zstd":
        return _Unzstd(tee)
    return tee


def decompressed_ahead(tee: Tee) -> ReadAhead:
    """:func:`decompressed`, read and decompressed ahead in a thread of its own (blocking:
    it sniffs the compression): :attr:`ReadAhead.stream` is the tar; close the
    :class:`ReadAhead` when done."""
    return ReadAhead(_decompressor(tee))
