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

Calls are short and synchronous, made from the event loop thread or a worker thread,
serialized by one lock. ``synchronous=NORMAL``: a power cut may lose the last
transactions (a record lost is a cache miss), never tear one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import ConfigError, Digest, NotFoundError

from .types import LayerBlob, RecordType

__all__ = ["SCHEMA_VERSION", "CacheDB", "FileHash", "Parent", "RecordRow"]

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
"""


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


class CacheDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"cannot open cache metadata {path}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise
        self._check_version(path)

    def _check_version(self, path: Path) -> None:
        with self._tx() as db:
            row = db.execute("SELECT value FROM cache_meta WHERE name = 'version'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO cache_meta (name, value) VALUES ('version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                return
        if int(row[0]) != SCHEMA_VERSION:
            self._db.close()
            raise ConfigError(
                f"{path} holds cache metadata of schema version {row[0]}; this Dockyard"
                f" understands version {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def meta(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM cache_meta WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, name: str, value: str | None) -> None:
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM cache_meta WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO cache_meta (name, value) VALUES (?, ?)", (name, value)
                )

    def has_work_areas(self) -> bool:
        """Whether an uncommitted record that is not persistent exists."""
        return bool(
            self._query("SELECT 1 FROM cache_records WHERE mutable = 1 AND persistent = 0 LIMIT 1")
        )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

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
    ) -> None:
        now = time.time()
        with self._tx() as db:
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
                f"SELECT {_COLUMNS} FROM cache_records"
                " WHERE json_extract(labels, '$.' || json_quote(?)) = ?",
                (key, value),
            )
        )

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

    def touch(self, rid: str) -> None:
        """A handle was given out: update last-used time and usage count."""
        with self._tx() as db:
            db.execute(
                "UPDATE cache_records SET last_used = ?, usage_count = usage_count + 1"
                " WHERE id = ?",
                (time.time(), rid),
            )

    def commit(self, rid: str, size: int) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE cache_records SET mutable = 0, size = ?, last_used = ? WHERE id = ?",
                (size, time.time(), rid),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"cache record {rid} does not exist")
            db.execute("DELETE FROM cache_filehashes WHERE record_id = ?", (rid,))

    def set_created(self, rid: str, created: float) -> None:
        with self._tx() as db:
            cur = db.execute("UPDATE cache_records SET created = ? WHERE id = ?", (created, rid))
            if cur.rowcount == 0:
                raise NotFoundError(f"cache record {rid} does not exist")

    def set_synced(self, rids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE cache_records SET synced = 1 WHERE id = ?", [(r,) for r in rids])

    def set_label(self, rid: str, key: str, value: str | None) -> None:
        with self._tx() as db:
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

    def delete_many(self, rids: Iterable[str]) -> None:
        """Delete records in one transaction; none may have children outside the set."""
        ids = [(rid,) for rid in rids]
        with self._tx() as db:
            db.executemany("DELETE FROM cache_parents WHERE record_id = ?", ids)
            db.executemany("DELETE FROM cache_records WHERE id = ?", ids)

    def count(self) -> int:
        value = self._query("SELECT COUNT(*) FROM cache_records")[0][0]
        assert isinstance(value, int)
        return value

    # -- layer blobs -----------------------------------------------------------------------
    def blob(self, rid: str, variant: str) -> LayerBlob | None:
        rows = self._query(
            "SELECT diff_id, digest, media_type, size FROM cache_blobs"
            " WHERE record_id = ? AND variant = ?",
            (rid, variant),
        )
        if not rows:
            return None
        diff_id, digest, media_type, size = rows[0]
        return LayerBlob(
            variant=variant,
            diff_id=Digest(str(diff_id)),
            digest=Digest(str(digest)),
            media_type=str(media_type),
            size=int(size),  # type: ignore[call-overload]
        )

    def set_blob(self, rid: str, blob: LayerBlob) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO cache_blobs"
                " (record_id, variant, diff_id, digest, media_type, size)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (rid, blob.variant, blob.diff_id, blob.digest, blob.media_type, blob.size),
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

    def set_checksum(self, rid: str, selector: str, digest: Digest) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO cache_checksums (record_id, selector, digest)"
                " VALUES (?, ?, ?)",
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

    def set_index_blob(self, rid: str, base_id: str | None, data: bytes) -> None:
        with self._tx() as db:
            db.execute(
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

    def move_file_hashes(self, from_rid: str, to_rid: str) -> None:
        """Hand the stat cache of one record over to another (replacing its own)."""
        with self._tx() as db:
            db.execute("DELETE FROM cache_filehashes WHERE record_id = ?", (to_rid,))
            db.execute(
                "UPDATE cache_filehashes SET record_id = ? WHERE record_id = ?", (to_rid, from_rid)
            )

    def update_file_hashes(
        self, rid: str, changed: dict[str, FileHash], removed: Iterable[str]
    ) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM cache_filehashes WHERE record_id = ? AND path = ?",
                [(rid, p) for p in removed],
            )
            db.executemany(
                "INSERT OR REPLACE INTO cache_filehashes"
                " (record_id, path, size, mtime_ns, ino, ctime_ns, mode, sha256, node)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (rid, p, h.size, h.mtime_ns, h.ino, h.ctime_ns, h.mode, h.sha256, h.node)
                    for p, h in changed.items()
                ],
            )


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
