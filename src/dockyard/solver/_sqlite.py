"""A persistent :class:`CacheKeyStorage` in SQLite (WAL mode)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from dockyard.core import ConfigError, ContentError, DockyardError

from .types import CacheRecord

__all__ = ["SqliteCacheKeyStorage"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS solver_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS solver_records (
    id            TEXT PRIMARY KEY,
    canonical_key TEXT NOT NULL,
    result_ids    TEXT NOT NULL,
    created       REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS solver_keys (
    key       TEXT PRIMARY KEY,
    record_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS solver_keys_by_record ON solver_keys(record_id);
"""

_LOOKUP = (
    "SELECT r.id, r.canonical_key, r.result_ids, r.created"
    " FROM solver_keys AS k JOIN solver_records AS r ON r.id = k.record_id"
    " WHERE k.key = ?"
)


class SqliteCacheKeyStorage:
    """Cache keys in a SQLite file that survives restarts and is shared between processes.

    The tables are prefixed ``solver_`` so that the file may be the engine's
    ``metadata.db``; their schema version is kept in ``solver_meta`` (a newer, unknown
    version is refused with a :class:`ConfigError` rather than misread).

    Concurrency: the database is in WAL mode, so readers (in this or any other process)
    never wait for a writer and always see whole transactions. :meth:`lookup` therefore
    runs on the calling thread — a point read by primary key costs a few microseconds,
    less than a hop to a worker thread. :meth:`save` runs in a worker thread inside one
    ``BEGIN IMMEDIATE`` transaction; writers from several processes queue on SQLite's
    lock for up to ``busy_timeout`` seconds. ``synchronous=NORMAL``: a power cut may
    lose the last records (a cache miss later) but never leaves a torn one.

    Records are written by the solver only after their results are saved, so a record
    never points at incomplete results. When a key is re-pointed, a record no key points
    at any more is deleted in the same transaction.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._reader = self._connect(busy_timeout)
        try:
            self._writer = self._connect(busy_timeout)
        except BaseException:
            self._reader.close()
            raise
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise DockyardError(f"cannot open cache database {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise DockyardError(
                    f"cache database {self.path}: cannot switch to WAL mode (got {mode})"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ContentError(f"cache database {self.path} is unreadable: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _init_schema(self) -> None:
        conn = self._writer
        try:
            with self._write_lock:
                try:
                    conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT value FROM solver_meta WHERE name = 'schema_version'"
                    ).fetchone()
                    if row is None:
                        conn.execute(
                            "INSERT INTO solver_meta(name, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),),
                        )
                    elif row[0] != str(SCHEMA_VERSION):
                        raise ConfigError(
                            f"cache database {self.path} has solver schema version {row[0]};"
                            f" this Dockyard reads version {SCHEMA_VERSION}"
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as exc:
            raise ContentError(f"cache database {self.path} is unreadable: {exc}") from exc

    async def lookup(self, key: str) -> CacheRecord | None:
        return self.lookup_sync(key)

    def lookup_sync(self, key: str) -> CacheRecord | None:
        """:meth:`lookup` without the coroutine, for use from threads."""
        try:
            with self._lock:
                self._check_open()
                row = self._reader.execute(_LOOKUP, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error("lookup", exc) from exc
        if row is None:
            return None
        return CacheRecord(
            id=row[0],
            canonical_key=row[1],
            result_ids=tuple(json.loads(row[2])),
            created=row[3],
        )

    async def save(self, keys: Sequence[str], record: CacheRecord) -> None:
        if keys:
            await asyncio.to_thread(self.save_sync, tuple(keys), record)

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """The writer connection inside one ``BEGIN IMMEDIATE`` transaction: committed
        when the block ends, rolled back if it raises; SQLite errors become the storage's
        error naming ``what``."""
        try:
            with self._write_lock:
                self._check_open()
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    def save_sync(self, keys: Sequence[str], record: CacheRecord) -> None:
        """:meth:`save` without the coroutine, for use from threads."""
        if not keys:
            return  # a record no key points at would be an orphan
        with self._transaction("save") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO solver_records(id, canonical_key, result_ids,"
                " created) VALUES (?, ?, ?, ?)",
                (
                    record.id,
                    record.canonical_key,
                    json.dumps(list(record.result_ids)),
                    record.created,
                ),
            )
            for key in keys:
                old = conn.execute(
                    "SELECT record_id FROM solver_keys WHERE key = ?", (key,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO solver_keys(key, record_id) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET record_id = excluded.record_id",
                    (key, record.id),
                )
                if old is not None and old[0] != record.id:
                    conn.execute(
                        "DELETE FROM solver_records WHERE id = ? AND NOT EXISTS"
                        " (SELECT 1 FROM solver_keys WHERE record_id = ?)",
                        (old[0], old[0]),
                    )

    def forget_results(self, result_ids: Collection[str]) -> int:
        """Drop every record that names one of ``result_ids`` (results the result storage
        removed, as a prune does) and the keys that point at them: their keys would only
        find a result that is gone. Returns how many records went. Blocking."""
        gone = set(result_ids)
        if not gone:
            return 0
        with self._transaction("forget results") as conn:
            doomed = [
                (rid,)
                for rid, ids in conn.execute("SELECT id, result_ids FROM solver_records")
                if gone.intersection(json.loads(ids))
            ]
            conn.executemany("DELETE FROM solver_keys WHERE record_id = ?", doomed)
            conn.executemany("DELETE FROM solver_records WHERE id = ?", doomed)
        return len(doomed)

    def __len__(self) -> int:
        """The number of keys."""
        with self._lock:
            self._check_open()
            row = self._reader.execute("SELECT count(*) FROM solver_keys").fetchone()
        return int(row[0])

    def record_count(self) -> int:
        """The number of records."""
        with self._lock:
            self._check_open()
            row = self._reader.execute("SELECT count(*) FROM solver_records").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connections; further calls fail. Idempotent."""
        with self._lock, self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._reader.close()
            self._writer.close()

    def __enter__(self) -> SqliteCacheKeyStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DockyardError(f"cache database {self.path} is closed")

    def _error(self, what: str, exc: sqlite3.Error) -> DockyardError:
        if isinstance(exc, sqlite3.OperationalError):
            return DockyardError(f"cache database {self.path}: {what} failed: {exc}")
        return ContentError(f"cache database {self.path} is corrupt ({what}: {exc})")
