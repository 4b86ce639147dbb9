"""Snapshot records in SQLite (WAL): key, kind, parent, labels, committed size.

Each snapshot has an integer id that names its directory (``snapshots/<id>``); ids are
never reused (AUTOINCREMENT), so a half-removed directory can never be mistaken for a
new snapshot's. A new store's ids start at a random number (:data:`FIRST_IDS`), so the
directory names differ from one state directory to the next: with the root marked as a
top of directory hierarchies (see ``BaseSnapshotter``), ext4 then places each snapshot's
tree away from where the trees of a state directory deleted just before were. Calls are
short and synchronous, serialized by one lock.

*Composite* snapshots (merges and diffs) have no parent; instead ``snapshot_layers``
lists the layer snapshots they are made of, bottom first. A layer listed there cannot be
removed while the composite exists. A composite may list itself (a computed diff whose
own directory holds its single layer).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError

from .types import Info, Kind

__all__ = ["FIRST_IDS", "MetaStore", "Record"]

FIRST_IDS = range(10_000, 1_000_000)
"""Where a new store's ids start (drawn at random; then one after the other)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    parent_id INTEGER REFERENCES snapshots(id),
    created REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    size INTEGER NOT NULL DEFAULT -1,
    inodes INTEGER NOT NULL DEFAULT -1
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS snapshot_layers (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    pos INTEGER NOT NULL,
    layer_id INTEGER NOT NULL REFERENCES snapshots(id),
    PRIMARY KEY (snapshot_id, pos)
);
CREATE INDEX IF NOT EXISTS snapshot_layers_layer ON snapshot_layers(layer_id);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    id: int
    key: str
    kind: Kind
    parent_id: int | None
    parent_key: str | None
    created: float
    labels: dict[str, str]
    size: int
    inodes: int
    composite: bool = False

    def info(self) -> Info:
        return Info(
            key=self.key,
            kind=self.kind,
            parent=self.parent_key,
            created=self.created,
            labels=dict(self.labels),
        )


_SELECT = (
    "SELECT s.id, s.key, s.kind, s.parent_id, p.key, s.created, s.labels, s.size, s.inodes, "
    "EXISTS (SELECT 1 FROM snapshot_layers l WHERE l.snapshot_id = s.id) "
    "FROM snapshots s LEFT JOIN snapshots p ON s.parent_id = p.id"
)


def _record(row: tuple[object, ...]) -> Record:
    return Record(
        id=int(row[0]),  # type: ignore[call-overload]
        key=str(row[1]),
        kind=Kind(row[2]),
        parent_id=None if row[3] is None else int(row[3]),  # type: ignore[call-overload]
        parent_key=None if row[4] is None else str(row[4]),
        created=float(row[5]),  # type: ignore[arg-type]
        labels=json.loads(str(row[6])),
        size=int(row[7]),  # type: ignore[call-overload]
        inodes=int(row[8]),  # type: ignore[call-overload]
        composite=bool(row[9]),
    )


class MetaStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        with self._tx() as db:
            fresh = db.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'snapshots')"
                " AND NOT EXISTS (SELECT 1 FROM snapshots)"
            ).fetchone()[0]
            if fresh:
                start = FIRST_IDS[secrets.randbelow(len(FIRST_IDS))]
                db.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('snapshots', ?)", (start,)
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

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

    def fingerprint(self) -> str:
        """A cheap summary of every record (count, ids and kinds): it changes with any
        snapshot made, committed or removed."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(id), 0),"
                " COALESCE(SUM(CASE kind WHEN 'committed' THEN id ELSE 0 END), 0)"
                " FROM snapshots"
            ).fetchone()
        return ":".join(str(v) for v in row)

    def get(self, key: str) -> Record:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE s.key = ?", (key,)).fetchone()
        if row is None:
            raise NotFoundError(f"snapshot {key!r} does not exist")
        return _record(row)

    def get_id(self, sid: int) -> Record:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE s.id = ?", (sid,)).fetchone()
        if row is None:
            raise NotFoundError(f"snapshot #{sid} does not exist")
        return _record(row)

    def chain(self, sid: int) -> list[int]:
        """Ids from ``sid`` down to its root (``sid`` first)."""
        with self._lock:
            rows = self._db.execute(
                "WITH RECURSIVE c(id, parent_id, depth) AS ("
                " SELECT id, parent_id, 0 FROM snapshots WHERE id = ?"
                " UNION ALL SELECT s.id, s.parent_id, c.depth + 1"
                " FROM snapshots s JOIN c ON s.id = c.parent_id)"
                " SELECT id FROM c ORDER BY depth",
                (sid,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def layers(self, sid: int) -> list[int]:
        """The layer ids of composite ``sid``, bottom first (empty for other snapshots)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT layer_id FROM snapshot_layers WHERE snapshot_id = ? ORDER BY pos", (sid,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def layer_chain(self, sid: int) -> tuple[list[int], bool]:
        """The layers that make up ``sid``, top first, and whether a composite was
        expanded to get them.

        The parent chain of ``sid``, where the chain's base, if a composite, is replaced
        by its layers and then ``-base``: the composite's *skeleton* (overlayfs needs it,
        see :mod:`._overlay`; other users skip negative ids). A layer listed twice is kept
        only at its topmost place: overlayfs refuses a directory twice, and dropping the
        lower copy changes nothing (a path the layer holds is decided by its upper copy).
        """
        chain = self.chain(sid)
        base = chain[-1]
        layers = self.layers(base)
        if not layers:
            return chain, False
        out = chain[:-1] + list(reversed(layers))
        seen: set[int] = set()
        deduped: list[int] = []
        for lid in out:
            if lid not in seen:
                seen.add(lid)
                deduped.append(lid)
        deduped.append(-base)
        return deduped, True

    def create(self, key: str, kind: Kind, parent: str | None) -> Record:
        """Insert a record; ``parent`` must exist and be committed."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                raise DockyardError(f"snapshot {key!r} already exists")
            parent_id = None
            if parent is not None:
                row = db.execute(
                    "SELECT id, kind FROM snapshots WHERE key = ?", (parent,)
                ).fetchone()
                if row is None:
                    raise NotFoundError(f"parent snapshot {parent!r} does not exist")
                if row[1] != Kind.COMMITTED.value:
                    raise DockyardError(
                        f"parent snapshot {parent!r} is not committed (it is {row[1]})"
                    )
                parent_id = int(row[0])
            cur = db.execute(
                "INSERT INTO snapshots (key, kind, parent_id, created) VALUES (?, ?, ?, ?)",
                (key, kind.value, parent_id, time.time()),
            )
            sid = int(cur.lastrowid or 0)
            row = db.execute(_SELECT + " WHERE s.id = ?", (sid,)).fetchone()
        return _record(row)

    def commit(self, name: str, key: str, size: int, inodes: int) -> None:
        with self._tx() as db:
            row = db.execute("SELECT id, kind FROM snapshots WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFoundError(f"snapshot {key!r} does not exist")
            if row[1] != Kind.ACTIVE.value:
                raise DockyardError(f"snapshot {key!r} is not active (it is {row[1]})")
            if (
                name != key
                and db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone()
            ):
                raise DockyardError(f"snapshot {name!r} already exists")
            db.execute(
                "UPDATE snapshots SET key = ?, kind = ?, size = ?, inodes = ? WHERE id = ?",
                (name, Kind.COMMITTED.value, size, inodes, row[0]),
            )

    def commit_composite(self, key: str, layers: list[int], size: int, inodes: int) -> None:
        """Commit active snapshot ``key`` (made without a parent) as a composite of
        ``layers`` (bottom first; committed snapshots, or ``key``'s own id)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, kind, parent_id FROM snapshots WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"snapshot {key!r} does not exist")
            sid = int(row[0])
            if row[1] != Kind.ACTIVE.value or row[2] is not None:
                raise DockyardError(f"snapshot {key!r} is not an active snapshot without parent")
            for lid in layers:
                if lid == sid:
                    continue
                kind = db.execute("SELECT kind FROM snapshots WHERE id = ?", (lid,)).fetchone()
                if kind is None or kind[0] != Kind.COMMITTED.value:
                    raise DockyardError(f"layer #{lid} of {key!r} is not a committed snapshot")
            db.executemany(
                "INSERT INTO snapshot_layers (snapshot_id, pos, layer_id) VALUES (?, ?, ?)",
                [(sid, pos, lid) for pos, lid in enumerate(layers)],
            )
            db.execute(
                "UPDATE snapshots SET kind = ?, size = ?, inodes = ? WHERE id = ?",
                (Kind.COMMITTED.value, size, inodes, sid),
            )

    def remove(self, key: str) -> Record:
        with self._tx() as db:
            row = db.execute(_SELECT + " WHERE s.key = ?", (key,)).fetchone()
            if row is None:
                raise NotFoundError(f"snapshot {key!r} does not exist")
            rec = _record(row)
            child = db.execute(
                "SELECT key FROM snapshots WHERE parent_id = ? LIMIT 1", (rec.id,)
            ).fetchone()
            if child is None:
                child = db.execute(
                    "SELECT s.key FROM snapshot_layers l JOIN snapshots s ON s.id = l.snapshot_id"
                    " WHERE l.layer_id = ? AND l.snapshot_id != ? LIMIT 1",
                    (rec.id, rec.id),
                ).fetchone()
            if child is not None:
                raise DockyardError(
                    f"snapshot {key!r} cannot be removed: {child[0]!r} is based on it"
                )
            db.execute("DELETE FROM snapshots WHERE id = ?", (rec.id,))
        return rec

    def set_labels(self, key: str, labels: dict[str, str]) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE snapshots SET labels = ? WHERE key = ?",
                (json.dumps(labels, sort_keys=True), key),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"snapshot {key!r} does not exist")

    def all(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute(_SELECT + " ORDER BY s.id").fetchall()
        return [_record(r) for r in rows]

    def ids(self) -> set[int]:
        with self._lock:
            return {int(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}
