"""Unpacking a layer while it downloads: a blocking reader that follows the content
store's ingest file as the download writes it.

The download (on the event loop) keeps writing the blob into the content store at full
speed, hashed and verified there as before; :class:`Follower` tells the reader how many
bytes of which ingest file are written. The reader (a worker thread: the layer unpack)
reads them back from the page cache, waits when it has caught up, and returns the end
of the blob only once the download has committed it. A failed download re-raises its
error in the reader. When the download starts over (the registry ignored a range
request) the reader goes on at its offset in the new ingest file once the bytes it
already read are found the same there (else :class:`~dockyard.core.ContentError`), so
everything it returned is part of the blob the download verified: the unpacker need
not hash it again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from dockyard.content import ContentStore
from dockyard.core import CancelledError, ContentError, Digest, DockyardError

__all__ = ["DownloadWindow", "Follower"]

_CHUNK = 1 << 20
_WAIT = 0.25  # seconds between checks of the interrupt flag while waiting for bytes


class Follower:
    """Shared state of one download and the one reader following it.

    The download side (event loop) calls :meth:`grew`, then exactly one of
    :meth:`finished` or :meth:`failed`; :meth:`interrupt` (any thread) makes a waiting
    reader raise :class:`~dockyard.core.CancelledError`. :meth:`open` is the reader.
    """

    def __init__(self, store: ContentStore, digest: Digest) -> None:
        self._store = store
        self._digest = digest
        self._cond = threading.Condition()
        self._path: Path | None = None
        self._written = 0
        self._done = False
        self._error: BaseException | None = None
        self._interrupted = False

    # -- the download side -----------------------------------------------------------
    def grew(self, path: Path, written: int) -> None:
        """``written`` bytes of the blob are in the ingest file ``path``."""
        with self._cond:
            self._path = path
            self._written = written
            self._cond.notify_all()

    def finished(self) -> None:
        """The blob is committed to the content store (verified)."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def failed(self, error: BaseException) -> None:
        with self._cond:
            if not self._done and self._error is None:
                self._error = error
            self._cond.notify_all()

    def interrupt(self) -> None:
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    # -- the reader side -------------------------------------------------------------
    def open(self) -> BinaryIO:
        """A blocking reader of the whole blob (one per follower)."""
        return _FollowReader(self)  # type: ignore[return-value]  # read/close suffice

    def _wait(self, offset: int) -> tuple[Path | None, int, bool]:
        """Block until bytes past ``offset`` exist or the download ended: (ingest path,
        bytes written there, committed)."""
        with self._cond:
            while True:
                if self._interrupted:
                    raise CancelledError("layer unpack cancelled")
                if self._error is not None:
                    error = self._error
                    if isinstance(error, Exception):
                        raise error
                    raise CancelledError(f"download of blob {self._digest} was cancelled")
                if self._done or self._written > offset:
                    return self._path, self._written, self._done
                self._cond.wait(_WAIT)

    def _open_committed(self) -> BinaryIO:
        return self._store.open(self._digest)


class _FollowReader:
    def __init__(self, follower: Follower) -> None:
        self._follower = follower
        self._file: BinaryIO | None = None
        self._path: Path | None = None  # the ingest file self._file reads (None: the blob)
        self._offset = 0

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        if n < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        while True:
            path, written, done = self._follower._wait(self._offset)
            try:
                if done:
                    # the ingest file read so far became the blob (a rename); else open it
                    if self._file is None or (self._path is not None and self._path != path):
                        self._switch(None)
                    self._path = None
                elif path is not None and path != self._path:
                    self._switch(path)
            except FileNotFoundError:
                continue  # committed or restarted meanwhile: ask again
            assert self._file is not None
            want = n if done else min(n, written - self._offset)
            data = self._file.read(want)
            if not data and not done:
                raise DockyardError(
                    f"ingest file of blob {self._follower._digest} is shorter than written"
                )
            self._offset += len(data)
            return data

    def _switch(self, path: Path | None) -> None:
        """Read ``path`` (``None``: the committed blob) from here on. Bytes already read
        from another file (a download that started over) must be the same in the new
        one, else the blob this unpack read is not the blob that was verified."""
        new = self._follower._open_committed() if path is None else path.open("rb", buffering=0)
        try:
            if self._file is not None and self._offset:
                self._file.seek(0)
                left = self._offset
                while left:
                    want = min(left, _CHUNK)
                    old = self._file.read(want)
                    if not old or new.read(want) != old:
                        raise ContentError(
                            f"blob {self._follower._digest} changed when its download started over"
                        )
                    left -= len(old)
            new.seek(self._offset)
        except BaseException:
            new.close()
            raise
        self.close()
        self._file, self._path = new, path

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class DownloadWindow:
    """Layer downloads of one pull, started in the order they ask: at most ``count`` at
    once, and a new one only while those running have fewer than ``ahead`` bytes left.

    Layers are unpacked bottom first, each following its download: downloads that all
    run at once share the link and the CPU, and the bottom layer, which the unpack waits
    for, arrives late. Starting the next one near the end of the one before keeps
    request latency hidden and small layers parallel, without slowing the layer needed
    first.
    """

    def __init__(self, count: int, ahead: int) -> None:
        self._count = count
        self._ahead = ahead
        self._left: dict[int, int] = {}  # running download -> bytes it has left
        self._waiting: collections.deque[tuple[int, int, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._tickets = itertools.count()

    def _admit(self) -> None:
        while (
            self._waiting
            and len(self._left) < self._count
            and sum(self._left.values()) < self._ahead
        ):
            ticket, size, turn = self._waiting.popleft()
            if not turn.done():  # else its caller was cancelled while waiting
                self._left[ticket] = size
                turn.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self, size: int) -> AsyncIterator[Callable[[int], None]]:
        """Wait for a turn; yields ``received(n)`` to report the bytes received so far."""
        ticket = next(self._tickets)
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((ticket, size, turn))
        self._admit()
        try:
            await turn
        except BaseException:
            if self._left.pop(ticket, None) is not None:  # admitted as it was cancelled
                self._admit()
            raise

        def received(n: int) -> None:
            if ticket in self._left:
                self._left[ticket] = max(size - n, 0)
                self._admit()

        try:
            yield received
        finally:
            self._left.pop(ticket, None)
            self._admit()
