"""The content-addressed blob store: ``<root>/blobs/sha256/<hex>``.

Writes go to ``<root>/ingest/<hash of ref>/data``, are hashed while written, fsynced,
verified against the expected digest and size, then renamed into place (and the
directory fsynced): a blob path always holds complete, verified content. An ingest
interrupted by a crash or an error can be resumed by opening a writer with the same ref
(``Writer.offset`` says how much is already there).

Leases (``<root>/leases.db``, SQLite WAL) hold blobs against :meth:`ContentStore.gc`;
a blob committed with a lease is recorded in it *before* it appears, so a concurrent GC
never removes a blob someone is about to use.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.core import ContentError, Digest, DockyardError, NotFoundError, jsontext

__all__ = ["CHUNK", "BlobInfo", "ContentStore", "GCResult", "Writer"]

CHUNK = 1 << 20
_MAX_MANIFEST = 4 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobInfo:
    digest: Digest
    size: int
    created: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GCResult:
    removed: tuple[Digest, ...]
    freed: int


def _parse_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except ValueError as exc:
        raise ContentError(str(exc)) from exc


class Writer:
    """One ingest: write bytes (hashed as they go), then :meth:`commit` or :meth:`abort`.

    Use as ``async with store.writer(ref) as w: await w.write(...); await w.commit()``;
    leaving the block without committing keeps the partial data for a later resume
    (or :meth:`abort` drops it). :meth:`write_sync` is for producers running in a thread
    (a tar writer, a compressor): it must not be mixed with :meth:`write` concurrently.
    """

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        directory: Path,
        lock_fd: int,
        expected_digest: Digest | None,
        expected_size: int | None,
    ) -> None:
        self._store = store
        self.ref = ref
        self._dir = directory
        self._lock_fd = lock_fd
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self._hash = hashlib.sha256()
        self.offset = 0
        self._fd = -1
        self._done = False

    def _open(self) -> None:
        """Open the data file, rehashing what an earlier attempt left (resume)."""
        path = self._dir / "data"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        while True:
            chunk = os.read(self._fd, CHUNK)
            if not chunk:
                break
            self._hash.update(chunk)
            self.offset += len(chunk)

    @property
    def path(self) -> Path:
        """The ingest's data file: what was written so far (a reader may follow it)."""
        return self._dir / "data"

    @property
    def digest(self) -> Digest:
        """The digest of what was written so far."""
        return Digest("sha256:" + self._hash.hexdigest())

    def write_sync(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data`` (blocking; from a worker thread)."""
        if self._done:
            raise DockyardError(f"ingest {self.ref!r} is already finished")
        view = memoryview(data)
        n = len(view)
        self._hash.update(view)
        while view:
            view = view[os.write(self._fd, view) :]
        self.offset += n
        if self.expected_size is not None and self.offset > self.expected_size:
            raise ContentError(
                f"ingest {self.ref!r}: {self.offset} bytes written, more than the "
                f"expected {self.expected_size}"
            )
        return n

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        if len(data) < 64 * 1024:
            self.write_sync(data)
        else:
            await asyncio.to_thread(self.write_sync, data)

    async def copy_from(self, src: BinaryIO) -> None:
        """Append everything readable from the blocking file ``src`` (in a thread)."""

        def run() -> None:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    return
                self.write_sync(chunk)

        await asyncio.to_thread(run)

    async def commit(
        self,
        expected_digest: Digest | str | None = None,
        expected_size: int | None = None,
        *,
        lease: str | None = None,
    ) -> BlobInfo:
        """Verify, fsync and publish the blob; return its info.

        A digest or size mismatch raises :class:`ContentError` and discards the data.
        Committing content that already exists succeeds (the copy is dropped).
        """
        want_digest = (
            _parse_digest(expected_digest) if expected_digest is not None else self.expected_digest
        )
        want_size = expected_size if expected_size is not None else self.expected_size
        digest = self.digest
        try:
            if want_size is not None and self.offset != want_size:
                raise ContentError(
                    f"ingest {self.ref!r}: size {self.offset} does not match the expected "
                    f"{want_size}"
                )
            if want_digest is not None and want_digest != digest:
                raise ContentError(
                    f"ingest {self.ref!r}: content digest {digest} does not match the "
                    f"expected {want_digest}"
                )
        except ContentError:
            await self.abort()
            raise
        await asyncio.to_thread(os.fsync, self._fd)
        info = await self._store._publish(self._dir / "data", digest, self.offset, lease)
        self._finish()
        await asyncio.to_thread(shutil.rmtree, self._dir, True)
        return info

    async def abort(self) -> None:
        """Drop the ingest and its data."""
        if self._done:
            return
        self._finish()
        await asyncio.to_thread(shutil.rmtree, self._dir, True)

    def _finish(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if not self._done:
            self._done = True
            self._store._release(self.ref, self._lock_fd)

    def close(self) -> None:
        """Stop writing; keep what was written for a resume."""
        self._finish()

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    """Blobs by sha256 digest under ``root``; see the module docstring for the guarantees."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._ingest = self.root / "ingest"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(parents=True, exist_ok=True)
        self._active: set[str] = set()
        self._gc_lock = asyncio.Lock()
        self._db_lock = threading.Lock()
        self._db = sqlite3.connect(
            self.root / "leases.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS leases ("
            " id TEXT PRIMARY KEY, created REAL NOT NULL, expires REAL);"
            "CREATE TABLE IF NOT EXISTS lease_blobs ("
            " lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,"
            " digest TEXT NOT NULL, PRIMARY KEY (lease, digest));"
        )
        self._db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------
    def path(self, digest: Digest | str) -> Path:
        """Where blob ``digest`` lives (whether or not it exists)."""
        d = _parse_digest(digest)
        if d.algorithm != "sha256":
            raise ContentError(f"unsupported digest algorithm in {d}")
        return self._blobs / d.hex

    def has(self, digest: Digest | str) -> bool:
        return self.path(digest).is_file()

    async def info(self, digest: Digest | str) -> BlobInfo:
        path = self.path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {digest} not found in the content store") from exc
        return BlobInfo(digest=_parse_digest(digest), size=st.st_size, created=st.st_mtime)

    def open(self, digest: Digest | str) -> BinaryIO:
        """The blob as a blocking binary file (read it in a thread for large blobs)."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {digest} not found in the content store") from exc

    async def read(self, digest: Digest | str, *, verify: bool = True) -> bytes:
        """The whole blob (for manifests and configs); checked against its digest."""
        d = _parse_digest(digest)

        def run() -> bytes:
            with self.open(d) as f:
                return f.read()

        data = await asyncio.to_thread(run)
        if verify and Digest.from_bytes(data) != d:
            raise ContentError(f"blob {d} in the content store is corrupt")
        return data

    async def walk(self) -> AsyncIterator[BlobInfo]:
        for entry in sorted(os.scandir(self._blobs), key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False) or len(entry.name) != 64:
                continue
            st = entry.stat()
            yield BlobInfo(
                digest=Digest("sha256:" + entry.name), size=st.st_size, created=st.st_mtime
            )

    # -- writing -------------------------------------------------------------------------
    def writer(
        self,
        ref: str,
        *,
        expected_digest: Digest | str | None = None,
        expected_size: int | None = None,
    ) -> Writer:
        """A writer for ingest ``ref`` (any caller-chosen name, e.g. the digest).

        Resumes data left by an unfinished writer of the same ref. Raises
        :class:`DockyardError` if another writer holds ``ref``.
        """
        if ref in self._active:
            raise DockyardError(f"ingest {ref!r} is already being written")
        name = hashlib.sha256(ref.encode()).hexdigest()
        directory = self._ingest / name
        directory.mkdir(exist_ok=True)
        lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(lock_fd)
            raise DockyardError(f"ingest {ref!r} is being written by another process") from exc
        (directory / "ref").write_text(ref)
        self._active.add(ref)
        w = Writer(
            self,
            ref,
            directory,
            lock_fd,
            _parse_digest(expected_digest) if expected_digest is not None else None,
            expected_size,
        )
        try:
            w._open()
        except BaseException:
            w.close()
            raise
        return w

    def _release(self, ref: str, lock_fd: int) -> None:
        self._active.discard(ref)
        os.close(lock_fd)

    async def _publish(self, data: Path, digest: Digest, size: int, lease: str | None) -> BlobInfo:
        target = self.path(digest)
        async with self._gc_lock:
            if lease is not None:
                self._lease_add(lease, digest)
            if target.exists():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(data)
            else:
                os.rename(data, target)
                await asyncio.to_thread(_fsync_dir, self._blobs)
        st = os.stat(target)
        return BlobInfo(digest=digest, size=size, created=st.st_mtime)

    async def write_blob(
        self,
        data: bytes,
        *,
        expected_digest: Digest | str | None = None,
        lease: str | None = None,
    ) -> BlobInfo:
        """Store ``data`` in one call (manifests, configs)."""
        digest = Digest.from_bytes(data)
        if expected_digest is not None and _parse_digest(expected_digest) != digest:
            raise ContentError(
                f"content digest {digest} does not match the expected {expected_digest}"
            )
        if self.has(digest):
            if lease is not None:
                self._lease_add(lease, digest)
            return await self.info(digest)
        w = self.writer(f"write-{uuid.uuid4().hex}")
        async with w:
            await w.write(data)
            return await w.commit(digest, len(data), lease=lease)

    async def ingest(
        self,
        ref: str,
        src: BinaryIO,
        *,
        expected_digest: Digest | str | None = None,
        expected_size: int | None = None,
        lease: str | None = None,
    ) -> BlobInfo:
        """Copy blocking file ``src`` into the store (from its start, not resuming)."""
        w = self.writer(ref, expected_digest=expected_digest, expected_size=expected_size)
        if w.offset:
            await w.abort()
            w = self.writer(ref, expected_digest=expected_digest, expected_size=expected_size)
        async with w:
            await w.copy_from(src)
            return await w.commit(lease=lease)

    def ingests(self) -> list[str]:
        """Refs of unfinished ingests."""
        out = []
        for entry in os.scandir(self._ingest):
            with contextlib.suppress(OSError):
                out.append((Path(entry.path) / "ref").read_text())
        return sorted(out)

    async def delete(self, digest: Digest | str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {digest} not found in the content store") from exc

    # -- leases --------------------------------------------------------------------------
    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._db_lock:
            return self._db.execute(sql, args).fetchall()

    def create_lease(self, lease_id: str | None = None, *, expires: float | None = None) -> str:
        """A new lease (``expires``: epoch seconds after which GC ignores it)."""
        lease_id = lease_id or f"lease-{uuid.uuid4().hex}"
        try:
            self._exec(
                "INSERT INTO leases (id, created, expires) VALUES (?, ?, ?)",
                (lease_id, time.time(), expires),
            )
        except sqlite3.IntegrityError as exc:
            raise DockyardError(f"lease {lease_id!r} already exists") from exc
        return lease_id

    def _lease_add(self, lease_id: str, digest: Digest) -> None:
        if not self._exec("SELECT 1 FROM leases WHERE id = ?", (lease_id,)):
            raise NotFoundError(f"lease {lease_id!r} does not exist")
        self._exec(
            "INSERT OR IGNORE INTO lease_blobs (lease, digest) VALUES (?, ?)",
            (lease_id, str(digest)),
        )

    def add_to_lease(self, lease_id: str, digest: Digest | str) -> None:
        """Hold blob ``digest`` (which need not exist yet) under ``lease_id``."""
        self._lease_add(lease_id, _parse_digest(digest))

    def remove_from_lease(self, lease_id: str, digest: Digest | str) -> None:
        self._exec(
            "DELETE FROM lease_blobs WHERE lease = ? AND digest = ?", (lease_id, str(digest))
        )

    def delete_lease(self, lease_id: str) -> None:
        """Drop a lease (its blobs become collectable unless held otherwise)."""
        self._exec("DELETE FROM lease_blobs WHERE lease = ?", (lease_id,))
        self._exec("DELETE FROM leases WHERE id = ?", (lease_id,))

    def leases(self) -> list[str]:
        return [str(r[0]) for r in self._exec("SELECT id FROM leases ORDER BY id")]

    def leased(self) -> set[Digest]:
        """Digests held by unexpired leases."""
        rows = self._exec(
            "SELECT DISTINCT b.digest FROM lease_blobs b JOIN leases l ON b.lease = l.id"
            " WHERE l.expires IS NULL OR l.expires > ?",
            (time.time(),),
        )
        return {Digest(str(r[0])) for r in rows}

    @contextlib.asynccontextmanager
    async def lease(self, *, expires: float | None = None) -> AsyncIterator[str]:
        """A lease for the duration of a block (deleted at its end)."""
        lease_id = self.create_lease(expires=expires)
        try:
            yield lease_id
        finally:
            self.delete_lease(lease_id)

    # -- garbage collection --------------------------------------------------------------
    async def gc(
        self, roots: Iterable[Digest | str] = (), *, ingest_max_age: float | None = None
    ) -> GCResult:
        """Remove blobs not reachable from ``roots`` and not held by a lease.

        Reachability follows manifests and indexes stored here (an index keeps its
        manifests, a manifest its config and layers). Ingests untouched for longer than
        ``ingest_max_age`` seconds are dropped too.
        """
        async with self._gc_lock:
            keep = set(self.leased())
            start = {_parse_digest(r) for r in roots} | keep
            keep |= await asyncio.to_thread(self._reachable, start)
            removed: list[Digest] = []
            freed = 0
            async for blob in self.walk():
                if blob.digest in keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path(blob.digest))
                    removed.append(blob.digest)
                    freed += blob.size
            if ingest_max_age is not None:
                cutoff = time.time() - ingest_max_age
                for entry in os.scandir(self._ingest):
                    with contextlib.suppress(OSError):
                        if os.stat(entry.path).st_mtime < cutoff and not _locked(entry.path):
                            shutil.rmtree(entry.path, ignore_errors=True)
        return GCResult(removed=tuple(removed), freed=freed)

    def _reachable(self, roots: set[Digest]) -> set[Digest]:
        seen: set[Digest] = set()
        stack = list(roots)
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            stack.extend(c for c in self._children(d) if c not in seen)
        return seen

    def _children(self, digest: Digest) -> list[Digest]:
        path = self.path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return []
        if st.st_size > _MAX_MANIFEST:
            return []
        with open(path, "rb") as f:
            head = f.read(1)
            if head != b"{":
                return []
            data = head + f.read()
        try:
            obj = jsontext.loads(data)
        except ValueError:
            return []
        out: list[Digest] = []
        if isinstance(obj, dict):
            items: list[object] = []
            if isinstance(obj.get("config"), dict):
                items.append(obj["config"])
            for key in ("layers", "manifests", "blobs"):
                if isinstance(obj.get(key), list):
                    items.extend(obj[key])
            if isinstance(obj.get("subject"), dict):
                items.append(obj["subject"])
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("digest"), str):
                    with contextlib.suppress(ValueError):
                        out.append(Digest.parse(item["digest"]))
        return out


def _locked(directory: str) -> bool:
    try:
        fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
