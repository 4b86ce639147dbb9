"""The cache manager's tables in ``<state>/metadata.db`` (SQLite, WAL), prefixed ``cache_``.

- ``cache_records``: one row per ref record (id = snapshot key), mutable or committed.
- ``cache_parents``: what a record is built on, in order, with a role: ``parent`` (a
  chain), ``merge`` (merge inputs), ``lower``/``upper`` (diff inputs). A record with
  children cannot be deleted (foreign key), which is what keeps prune leaf-first.
- ``cache_blobs``: compressed layer blobs made from a record's layer, per variant.
- ``cache_checksums``: content checksums of committed records, per selector.
- ``cache_filehashes``: the stat cache of mutable records (path, stat fields, the sha256
  of the content and the file's whole checksum node).
- ``cache_indexes``: file indexes of committed records (``dockyard.cache._index``): a
  blob each, full or the changes against ``base_id``'s index.

Reads are short and synchronous, on a connection of their own (WAL: a reader never
waits for a writer and always sees whole transactions), from the event loop thread or a
worker thread. Writes go to one writer thread with its own connection, which takes
every write queued meanwhile into one transaction (each in a savepoint, so one that
fails undoes only itself): the event loop never waits for a ``COMMIT``, for SQLite's
write lock held by another connection to the file, or for a lock held by another
thread. A write method returns a :class:`Pending`: ``await`` it on the event loop (the
write is done, committed, when the await returns, and a cancelled caller still waits
for it to end so that its clean-up sees what happened), :meth:`Pending.wait` for it in
a thread, or drop it (a write whose loss is harmless, like the last-used time).
``synchronous=NORMAL``: a power cut may lose the last transactions (a record lost is a
cache miss), never tear one.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from dockyard.core import ConfigError, Digest, NotFoundError

from .types import LayerBlob, RecordType

__all__ = ["SCHEMA_VERSION", "CacheDB", "FileHash", "Parent", "Pending", "RecordRow"]

T = TypeVar("T")

_BATCH_MAX = 256  # writes per transaction at most

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_records (
    id TEXT PRIMARY KEY,
    mutable INTEGER NOT NULL,
    persistent INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    record_type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_used REAL,
    usage_count INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT -1,
    synced INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_records_name ON cache_records(name) WHERE name IS NOT NULL;
CREATE TABLE IF NOT EXISTS cache_parents (
    record_id TEXT NOT NULL REFERENCES cache_records(id) ON DELETE CASCADE,
    pos INTEGER NOT NULL,
    role TEXT NOT NULL,
    parent_id TEXT NOT NULL REFERENCES cache_records(id),
    PRIMARY KEY (record_id, pos)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_parents_parent ON cache_parents(parent_id);
CREATE TABLE IF NOT EXISTS cache_blobs (
    record_id TEXT NOT NULL REFERENCES cache_records(id) ON DELETE CASCADE,
    variant TEXT NOT NULL,
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    annotations TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (record_id, variant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_checksums (
    record_id TEXT NOT NULL REFERENCES cache_records(id) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (record_id, selector)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_filehashes (
    record_id TEXT NOT NULL REFERENCES cache_records(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    node BLOB NOT NULL,
    PRIMARY KEY (record_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_indexes (
    record_id TEXT PRIMARY KEY REFERENCES cache_records(id) ON DELETE CASCADE,
    base_id TEXT,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cache_labels (
    key TEXT NOT NULL,
    value NOT NULL,
    record_id TEXT NOT NULL REFERENCES cache_records(id) ON DELETE CASCADE,
    PRIMARY KEY (key, value, record_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_labels_record ON cache_labels(record_id);
CREATE TRIGGER IF NOT EXISTS cache_labels_insert AFTER INSERT ON cache_records BEGIN
    INSERT OR IGNORE INTO cache_labels (key, value, record_id)
        SELECT key, value, NEW.id FROM json_each(NEW.labels) WHERE json_valid(NEW.labels);
END;
CREATE TRIGGER IF NOT EXISTS cache_labels_update AFTER UPDATE OF labels ON cache_records BEGIN
    DELETE FROM cache_labels WHERE record_id = NEW.id;
    INSERT OR IGNORE INTO cache_labels (key, value, record_id)
        SELECT key, value, NEW.id FROM json_each(NEW.labels) WHERE json_valid(NEW.labels);
END;
"""
# cache_labels mirrors every record's labels (kept by the triggers above, which live in
# the database: whatever writes the records keeps it); a database made before it existed
# gets it filled once, marked by this cache_meta name
_LABELS_FILLED = "labels_table"


@dataclass(frozen=True, slots=True, kw_only=True)
class Parent:
    """One thing a record is built on: ``role`` is parent, merge, lower or upper."""

    id: str
    role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow:
    id: str
    mutable: bool
    persistent: bool
    name: str | None
    record_type: RecordType
    description: str
    created: float
    last_used: float | None
    usage_count: int
    size: int
    synced: bool
    labels: dict[str, str]
    parents: tuple[Parent, ...]


@dataclass(frozen=True, slots=True)
class FileHash:
    """A stat-cache entry: the stat fields a file had when its content hashed to ``sha256``
    and its checksum node (header with xattrs, and content) to ``node`` (empty: unknown).
    Any change of owner, mode, xattrs or content changes the ctime, so equal stat fields
    mean an equal node."""

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    mode: int
    sha256: bytes
    node: bytes = b""


_COLUMNS = (
    "id, mutable, persistent, name, record_type, description, created, last_used,"
    " usage_count, size, synced, labels"
)


class Pending(Generic[T]):
    """A write queued for the writer thread: ``await`` it (event loop), :meth:`wait` for
    it (any other thread), or drop it. Its value or error is the write's."""

    __slots__ = ("_future",)

    def __init__(self, future: Future[T]) -> None:
        self._future = future

    def wait(self) -> T:
        """Block until the write is committed (never on the event loop thread)."""
        return self._future.result()

    def __await__(self) -> Generator[object, None, T]:
        return _settled(self._future).__await__()


async def _settled(future: Future[T]) -> T:
    """The write's outcome. A caller cancelled before its write started is cancelled at
    once (the write is dropped); once started, a write cannot be taken back, so the
    caller gets its outcome as if it had been a synchronous call and the cancellation is
    delivered at its next suspension point."""
    wrapped = asyncio.wrap_future(future)
    cancelled = False
    try:
        while True:
            try:
                return await asyncio.shield(wrapped)
            except asyncio.CancelledError:
                if future.cancel():
                    raise  # not started yet: it never will be
                cancelled = True
    finally:
        task = asyncio.current_task()
        if cancelled and task is not None:
            task.uncancel()  # the request is kept, not counted twice (asyncio.timeout)
            task.cancel()


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], object]
    future: Future[object]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        db.close()
        raise
    return db


class CacheDB:
    """The cache tables; see the module docstring for how reads and writes run."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._read_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        try:
            self._writer = _connect(path)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open cache metadata {path}: {exc}") from exc
        try:
            self._writer.executescript(_SCHEMA)
            self._check_version(path)
            self._add_blob_annotations()
            self._fill_labels()
            self._reader = _connect(path)
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise ConfigError(f"cannot open cache metadata {path}: {exc}") from exc
        except BaseException:
            self._writer.close()
            raise
        self._thread = threading.Thread(
            target=self._write_loop, name="dockyard-cachedb", daemon=True
        )
        self._thread.start()

    def _check_version(self, path: Path) -> None:
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM cache_meta WHERE name = 'version'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO cache_meta (name, value) VALUES ('version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(
                f"{path} holds cache metadata of schema version {row[0]}; this Dockyard"
                f" understands version {SCHEMA_VERSION}"
            )

    def _add_blob_annotations(self) -> None:
        """Give ``cache_blobs`` its ``annotations`` column (a database made before it)."""
        db = self._writer
        if _has_column(db, "cache_blobs", "annotations"):
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if not _has_column(db, "cache_blobs", "annotations"):  # another process's?
                db.execute(
                    "ALTER TABLE cache_blobs ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}'"
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _fill_labels(self) -> None:
        """Fill ``cache_labels`` from the records once (a database made before it)."""
        db = self._writer
        if db.execute("SELECT 1 FROM cache_meta WHERE name = ?", (_LABELS_FILLED,)).fetchone():
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO cache_labels (key, value, record_id)"
                " SELECT j.key, j.value, r.id FROM cache_records AS r, json_each(r.labels) AS j"
                " WHERE json_valid(r.labels)"
            )
            db.execute(
                "INSERT OR REPLACE INTO cache_meta (name, value) VALUES (?, '1')", (_LABELS_FILLED,)
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Write what is queued, then close. Blocks until then (call it from a thread,
        or where blocking is fine)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        with self._read_lock:
            self._reader.close()

    # -- the writer thread -----------------------------------------------------------------
    def _write(self, run: Callable[[sqlite3.Connection], T]) -> Pending[T]:
        """Queue ``run(connection)`` for the writer thread, inside a transaction."""
        if self._closed:
            raise sqlite3.ProgrammingError("the cache metadata is closed")
        future: Future[T] = Future()
        self._queue.put(_Job(run, future))  # type: ignore[arg-type]
        return Pending(future)

    def flush(self) -> Pending[None]:
        """Settled once every write queued before it is committed (the writes not
        waited for, like :meth:`touch`, included)."""
        return self._write(lambda db: None)

    def _statement(self, sql: str, args: Sequence[object]) -> Pending[None]:
        def run(db: sqlite3.Connection) -> None:
            db.execute(sql, args)

        return self._write(run)

    def _statements(self, sql: str, rows: Sequence[Sequence[object]]) -> Pending[None]:
        def run(db: sqlite3.Connection) -> None:
            db.executemany(sql, rows)

        return self._write(run)

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _BATCH_MAX:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._apply([job for job in batch if job.future.set_running_or_notify_cancel()])
        self._writer.close()

    def _apply(self, batch: list[_Job]) -> None:
        """One transaction for ``batch``, each job in a savepoint of its own; their
        futures are settled only after the ``COMMIT`` (or with its error)."""
        if not batch:
            return
        db = self._writer
        outcomes: list[tuple[_Job, object, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for job in batch:
                    db.execute("SAVEPOINT job")
                    try:
                        value = job.run(db)
                    except Exception as exc:
                        db.execute("ROLLBACK TO job")
                        db.execute("RELEASE job")
                        outcomes.append((job, None, exc))
                    else:
                        db.execute("RELEASE job")
                        outcomes.append((job, value, None))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except BaseException as exc:
            for job in batch:
                job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for job, value, error in outcomes:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(value)

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def meta(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM cache_meta WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, name: str, value: str | None) -> Pending[None]:
        def run(db: sqlite3.Connection) -> None:
            if value is None:
                db.execute("DELETE FROM cache_meta WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO cache_meta (name, value) VALUES (?, ?)", (name, value)
                )

        return self._write(run)

    def has_work_areas(self) -> bool:
        """Whether an uncommitted record that is not persistent exists."""
        return bool(
            self._query("SELECT 1 FROM cache_records WHERE mutable = 1 AND persistent = 0 LIMIT 1")
        )

    # -- records ---------------------------------------------------------------------------
    def insert(
        self,
        rid: str,
        *,
        mutable: bool,
        record_type: RecordType,
        description: str,
        parents: Sequence[Parent] = (),
        persistent: bool = False,
        name: str | None = None,
        size: int = -1,
        used: bool = True,
    ) -> Pending[None]:
        now = time.time()

        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO cache_records (id, mutable, persistent, name, record_type,"
                " description, created, last_used, usage_count, size)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    int(mutable),
                    int(persistent),
                    name,
                    record_type.value,
                    description,
                    now,
                    now if used else None,
                    1 if used else 0,
                    size,
                ),
            )
            db.executemany(
                "INSERT INTO cache_parents (record_id, pos, role, parent_id) VALUES (?, ?, ?, ?)",
                [(rid, pos, p.role, p.id) for pos, p in enumerate(parents)],
            )

        return self._write(run)

    def get(self, rid: str) -> RecordRow | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM cache_records WHERE id = ?", (rid,))
        if not rows:
            return None
        return self._rows(rows)[0]

    def all(self) -> list[RecordRow]:
        return self._rows(self._query(f"SELECT {_COLUMNS} FROM cache_records"))

    def named(self, name: str) -> list[RecordRow]:
        """Persistent records with ``name``, most recently used first."""
        return self._rows(
            self._query(
                f"SELECT {_COLUMNS} FROM cache_records WHERE name = ?"
                " ORDER BY COALESCE(last_used, created) DESC, created DESC",
                (name,),
            )
        )

    def with_label(self, key: str, value: str) -> list[RecordRow]:
        return self._rows(
            self._query(
                f"SELECT {_COLUMNS} FROM cache_records WHERE id IN"
                " (SELECT record_id FROM cache_labels WHERE key = ? AND value = ?)",
                (key, value),
            )
        )

    def committed_with_label(self, key: str, value: str, limit: int | None = None) -> list[str]:
        """Ids of the committed records labelled ``key=value``, most recently used first
        (ties: most recently created first), found through ``cache_labels``: a local
        context or a copy gains one such record per change, so a scan of every record's
        labels grew with the cache (~2 ms per lookup at 1,300 records). At most ``limit``
        (``None``: all)."""
        return [
            str(r[0])
            for r in self._query(
                "SELECT r.id FROM cache_labels AS l JOIN cache_records AS r ON r.id = l.record_id"
                " WHERE l.key = ? AND l.value = ? AND r.mutable = 0"
                " ORDER BY CASE WHEN r.last_used IS NULL OR r.last_used = 0"
                " THEN r.created ELSE r.last_used END DESC, r.created DESC, r.id LIMIT ?",
                (key, value, -1 if limit is None else limit),
            )
        ]

    def _rows(self, rows: list[tuple[object, ...]]) -> list[RecordRow]:
        parents: dict[str, list[Parent]] = {}
        if rows:
            ids = [str(r[0]) for r in rows]
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for rid, role, pid in self._query(
                    "SELECT record_id, role, parent_id FROM cache_parents"
                    f" WHERE record_id IN ({marks}) ORDER BY record_id, pos",
                    chunk,
                ):
                    parents.setdefault(str(rid), []).append(Parent(id=str(pid), role=str(role)))
        out: list[RecordRow] = []
        for r in rows:
            rid = str(r[0])
            out.append(
                RecordRow(
                    id=rid,
                    mutable=bool(r[1]),
                    persistent=bool(r[2]),
                    name=None if r[3] is None else str(r[3]),
                    record_type=RecordType(str(r[4])),
                    description=str(r[5]),
                    created=float(r[6]),  # type: ignore[arg-type]
                    last_used=None if r[7] is None else float(r[7]),  # type: ignore[arg-type]
                    usage_count=int(r[8]),  # type: ignore[call-overload]
                    size=int(r[9]),  # type: ignore[call-overload]
                    synced=bool(r[10]),
                    labels=json.loads(str(r[11])),
                    parents=tuple(parents.get(rid, ())),
                )
            )
        return out

    def children(self) -> dict[str, int]:
        """How many records are built on each record (that has any)."""
        return {
            str(pid): int(n)  # type: ignore[call-overload]
            for pid, n in self._query(
                "SELECT parent_id, COUNT(DISTINCT record_id) FROM cache_parents GROUP BY parent_id"
            )
        }

    def has_children(self, rid: str) -> bool:
        return bool(self._query("SELECT 1 FROM cache_parents WHERE parent_id = ? LIMIT 1", (rid,)))

    def touch(self, rid: str) -> Pending[None]:
        """A handle was given out: update last-used time and usage count (callers may
        drop the result: a lost update only makes prune's order a little older)."""
        when = time.time()
        return self._statement(
            "UPDATE cache_records SET last_used = ?, usage_count = usage_count + 1 WHERE id = ?",
            (when, rid),
        )

    def commit(self, rid: str, size: int) -> Pending[None]:
        when = time.time()

        def run(db: sqlite3.Connection) -> None:
            cur = db.execute(
                "UPDATE cache_records SET mutable = 0, size = ?, last_used = ? WHERE id = ?",
                (size, when, rid),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"cache record {rid} does not exist")
            db.execute("DELETE FROM cache_filehashes WHERE record_id = ?", (rid,))

        return self._write(run)

    def set_created(self, rid: str, created: float) -> Pending[None]:
        def run(db: sqlite3.Connection) -> None:
            cur = db.execute("UPDATE cache_records SET created = ? WHERE id = ?", (created, rid))
            if cur.rowcount == 0:
                raise NotFoundError(f"cache record {rid} does not exist")

        return self._write(run)

    def set_synced(self, rids: Iterable[str]) -> Pending[None]:
        rows = [(r,) for r in rids]
        return self._statements("UPDATE cache_records SET synced = 1 WHERE id = ?", rows)

    def unsynced(self) -> list[str]:
        """Ids of committed records not (yet) known to be on disk."""
        rows = self._query("SELECT id FROM cache_records WHERE mutable = 0 AND synced = 0")
        return [str(r[0]) for r in rows]

    def set_all_synced(self) -> Pending[None]:
        """Mark every committed record as on disk (a database from before records were
        synced in the background: its records were synced before they were kept)."""
        return self._statement("UPDATE cache_records SET synced = 1 WHERE mutable = 0", ())

    def set_label(self, rid: str, key: str, value: str | None) -> Pending[None]:
        def run(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT labels FROM cache_records WHERE id = ?", (rid,)).fetchone()
            if row is None:
                raise NotFoundError(f"cache record {rid} does not exist")
            labels = json.loads(str(row[0]))
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
            db.execute(
                "UPDATE cache_records SET labels = ? WHERE id = ?",
                (json.dumps(labels, sort_keys=True), rid),
            )

        return self._write(run)

    def delete_many(self, rids: Iterable[str]) -> Pending[None]:
        """Delete records in one transaction; none may have children outside the set."""
        ids = [(rid,) for rid in rids]

        def run(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM cache_parents WHERE record_id = ?", ids)
            db.executemany("DELETE FROM cache_records WHERE id = ?", ids)

        return self._write(run)

    def count(self) -> int:
        value = self._query("SELECT COUNT(*) FROM cache_records")[0][0]
        assert isinstance(value, int)
        return value

    # -- layer blobs -----------------------------------------------------------------------
    def blob(self, rid: str, variant: str) -> LayerBlob | None:
        rows = self._query(
            "SELECT diff_id, digest, media_type, size, annotations FROM cache_blobs"
            " WHERE record_id = ? AND variant = ?",
            (rid, variant),
        )
        if not rows:
            return None
        diff_id, digest, media_type, size, annotations = rows[0]
        return LayerBlob(
            variant=variant,
            diff_id=Digest(str(diff_id)),
            digest=Digest(str(digest)),
            media_type=str(media_type),
            size=int(size),  # type: ignore[call-overload]
            annotations=_annotations(annotations),
        )

    def set_blob(self, rid: str, blob: LayerBlob) -> Pending[None]:
        return self._statement(
            "INSERT OR REPLACE INTO cache_blobs"
            " (record_id, variant, diff_id, digest, media_type, size, annotations)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                rid,
                blob.variant,
                blob.diff_id,
                blob.digest,
                blob.media_type,
                blob.size,
                json.dumps(dict(blob.annotations), sort_keys=True),
            ),
        )

    def blob_digests(self) -> set[Digest]:
        return {Digest(str(r[0])) for r in self._query("SELECT DISTINCT digest FROM cache_blobs")}

    # -- checksums -------------------------------------------------------------------------
    def checksum(self, rid: str, selector: str) -> Digest | None:
        rows = self._query(
            "SELECT digest FROM cache_checksums WHERE record_id = ? AND selector = ?",
            (rid, selector),
        )
        return Digest(str(rows[0][0])) if rows else None

    def set_checksum(self, rid: str, selector: str, digest: Digest) -> Pending[None]:
        return self._statement(
            "INSERT OR REPLACE INTO cache_checksums (record_id, selector, digest) VALUES (?, ?, ?)",
            (rid, selector, str(digest)),
        )

    # -- file indexes ----------------------------------------------------------------------
    def index_blob(self, rid: str) -> tuple[str | None, bytes] | None:
        """``(base_id, data)`` of the file index kept for ``rid``, or ``None``."""
        rows = self._query("SELECT base_id, data FROM cache_indexes WHERE record_id = ?", (rid,))
        if not rows:
            return None
        base, data = rows[0]
        assert isinstance(data, bytes)
        return (None if base is None else str(base)), data

    def has_index(self, rid: str) -> bool:
        return bool(self._query("SELECT 1 FROM cache_indexes WHERE record_id = ?", (rid,)))

    def set_index_blob(self, rid: str, base_id: str | None, data: bytes) -> Pending[None]:
        return self._statement(
            "INSERT OR REPLACE INTO cache_indexes (record_id, base_id, data) VALUES (?, ?, ?)",
            (rid, base_id, data),
        )

    def file_hashes(self, rid: str) -> dict[str, FileHash]:
        return {
            str(path): FileHash(int(a), int(b), int(c), int(d), int(e), bytes(h), bytes(n))  # type: ignore[call-overload]
            for path, a, b, c, d, e, h, n in self._query(
                "SELECT path, size, mtime_ns, ino, ctime_ns, mode, sha256, node"
                " FROM cache_filehashes WHERE record_id = ?",
                (rid,),
            )
        }

    def move_file_hashes(self, from_rid: str, to_rid: str) -> Pending[None]:
        """Hand the stat cache of one record over to another (replacing its own)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM cache_filehashes WHERE record_id = ?", (to_rid,))
            db.execute(
                "UPDATE cache_filehashes SET record_id = ? WHERE record_id = ?", (to_rid, from_rid)
            )

        return self._write(run)

    def update_file_hashes(
        self, rid: str, changed: dict[str, FileHash], removed: Iterable[str]
    ) -> Pending[None]:
        gone = [(rid, p) for p in removed]
        rows = [
            (rid, p, h.size, h.mtime_ns, h.ino, h.ctime_ns, h.mode, h.sha256, h.node)
            for p, h in changed.items()
        ]

        def run(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM cache_filehashes WHERE record_id = ? AND path = ?", gone)
            db.executemany(
                "INSERT OR REPLACE INTO cache_filehashes"
                " (record_id, path, size, mtime_ns, ino, ctime_ns, mode, sha256, node)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        return self._write(run)


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _annotations(text: object) -> tuple[tuple[str, str], ...]:
    """A blob's stored annotations (JSON object text); anything else reads as none."""
    try:
        value = json.loads(str(text))
    except ValueError:
        return ()
    if not isinstance(value, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))
