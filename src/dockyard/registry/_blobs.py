"""Simple :class:`BlobSink` and :class:`BlobReader` implementations (memory and files).

The content store brings its own; these serve tests, benchmarks and small tools.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from dockyard.core import ContentError, Digest

__all__ = ["BytesReader", "BytesSink", "FileReader", "FileSink"]

_FLUSH = 1 << 20
_READ = 1 << 20


class BytesSink:
    """Collects a blob in memory; :attr:`data` is set by :meth:`commit`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.data: bytes | None = None
        self.aborted = False

    async def write(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    async def reset(self) -> None:
        self._parts.clear()

    async def commit(self, digest: Digest, size: int) -> None:
        data = b"".join(self._parts)
        if len(data) != size or Digest.from_bytes(data) != digest:
            raise ContentError(f"blob {digest}: received content does not match")
        self.data = data
        self._parts.clear()

    async def abort(self) -> None:
        self._parts.clear()
        self.aborted = True


class FileSink:
    """Writes a blob to ``path`` atomically: a temporary file beside it, fsynced and
    renamed on :meth:`commit`, removed on :meth:`abort`.

    Small writes are buffered; each write of a full buffer runs in a worker thread while
    the caller goes on receiving (one write in flight at a time, so order is kept)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.partial-{secrets.token_hex(6)}")
        self._file: BinaryIO | None = None
        self._buffer = bytearray()
        self._pending: asyncio.Future[None] | None = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._file = self._tmp.open("wb")
        return self._file

    def _write_sync(self, data: bytes | bytearray) -> None:
        self._open().write(data)

    async def _settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def _submit(self, data: bytes | bytearray) -> None:
        await self._settle()
        self._pending = asyncio.get_running_loop().run_in_executor(None, self._write_sync, data)

    async def write(self, data: bytes) -> None:
        if len(data) >= _FLUSH and not self._buffer:
            await self._submit(data)
            return
        self._buffer += data
        if len(self._buffer) >= _FLUSH:
            buffer, self._buffer = self._buffer, bytearray()
            await self._submit(buffer)

    def _truncate_sync(self) -> None:
        f = self._open()
        f.seek(0)
        f.truncate()

    async def reset(self) -> None:
        await self._settle()
        self._buffer = bytearray()
        await asyncio.to_thread(self._truncate_sync)

    def _commit_sync(self, digest: Digest, size: int) -> None:
        f = self._open()
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if self._tmp.stat().st_size != size:
            raise ContentError(f"blob {digest}: wrote {self._tmp.stat().st_size} bytes, not {size}")
        os.replace(self._tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def commit(self, digest: Digest, size: int) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, bytearray()
            await self._submit(buffer)
        await self._settle()
        await asyncio.to_thread(self._commit_sync, digest, size)

    def _abort_sync(self) -> None:
        if self._file is not None:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    async def abort(self) -> None:
        try:
            await self._settle()
        except OSError:
            pass  # the write that failed is what we are cleaning up after
        self._buffer = bytearray()
        await asyncio.to_thread(self._abort_sync)


class BytesReader:
    """Pushes ``data`` from memory, ``chunk_size`` bytes at a time."""

    def __init__(self, data: bytes, chunk_size: int = _READ) -> None:
        self.data = data
        self.chunk_size = chunk_size

    async def read(self, offset: int = 0) -> AsyncIterator[bytes]:
        view = memoryview(self.data)
        for start in range(offset, len(self.data), self.chunk_size):
            yield bytes(view[start : start + self.chunk_size])


class FileReader:
    """Pushes a file, reading it in a worker thread."""

    def __init__(self, path: Path, chunk_size: int = _READ) -> None:
        self.path = path
        self.chunk_size = chunk_size

    async def read(self, offset: int = 0) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(self.path.open, "rb")
        try:
            await asyncio.to_thread(f.seek, offset)
            while True:
                chunk = await asyncio.to_thread(f.read, self.chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()
