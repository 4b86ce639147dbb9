"""Cache-key storages: the contract for both, persistence and concurrency for SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core import ConfigError, ContentError, DockyardError
from dockyard.solver import (
    CacheKeyStorage,
    CacheRecord,
    InMemoryCacheKeyStorage,
    SqliteCacheKeyStorage,
)


def record(name: str, *results: str) -> CacheRecord:
    return CacheRecord(
        id=f"rec-{name}", canonical_key=f"key-{name}", result_ids=results, created=1.5
    )


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheKeyStorage]:
    if request.param == "memory":
        yield InMemoryCacheKeyStorage()
    else:
        with SqliteCacheKeyStorage(tmp_path / "cache.db") as sqlite:
            yield sqlite


async def test_lookup_save_and_link(storage: CacheKeyStorage) -> None:
    assert await storage.lookup("k1") is None
    rec = record("a", "r1", "r2")
    await storage.save(["k1", "k2"], rec)
    assert await storage.lookup("k1") == rec
    assert await storage.lookup("k2") == rec
    await storage.save(["k3"], rec)  # link another key to the same record
    assert await storage.lookup("k3") == rec
    empty = record("none")
    await storage.save(["k4"], empty)
    assert await storage.lookup("k4") == empty  # a vertex with no outputs
    await storage.save([], record("orphan", "r9"))  # no key: nothing is stored
    if isinstance(storage, SqliteCacheKeyStorage):
        assert storage.record_count() == 2
    elif isinstance(storage, InMemoryCacheKeyStorage):
        assert len(storage.records()) == 2


async def test_repointing_a_key_drops_orphaned_records(storage: CacheKeyStorage) -> None:
    await storage.save(["k1", "k2"], record("old", "r1"))
    await storage.save(["k1"], record("new", "r2"))
    assert await storage.lookup("k1") == record("new", "r2")
    assert await storage.lookup("k2") == record("old", "r1")  # still pointed at
    await storage.save(["k2"], record("new", "r2"))
    assert await storage.lookup("k2") == record("new", "r2")
    if isinstance(storage, SqliteCacheKeyStorage):
        assert storage.record_count() == 1
    elif isinstance(storage, InMemoryCacheKeyStorage):
        assert storage.records() == [record("new", "r2")]


async def test_sqlite_survives_a_restart_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with SqliteCacheKeyStorage(path) as first:
        await first.save(["k"], record("a", "r1"))
    with SqliteCacheKeyStorage(path) as second:
        assert await second.lookup("k") == record("a", "r1")
        assert len(second) == 1
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_sqlite_shares_a_file_with_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE snapshots (id TEXT PRIMARY KEY)")
    conn.commit()
    conn.close()
    with SqliteCacheKeyStorage(path) as storage:
        await storage.save(["k"], record("a"))
        assert await storage.lookup("k") == record("a")


def test_sqlite_refuses_an_unknown_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    SqliteCacheKeyStorage(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE solver_meta SET value = '99' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        SqliteCacheKeyStorage(path)


def test_sqlite_reports_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(ContentError, match=r"cache\.db"):
        SqliteCacheKeyStorage(path)


async def test_sqlite_closed_storage_fails_clearly(tmp_path: Path) -> None:
    storage = SqliteCacheKeyStorage(tmp_path / "cache.db")
    storage.close()
    storage.close()
    with pytest.raises(DockyardError, match="closed"):
        await storage.lookup("k")


def test_sqlite_concurrent_readers_see_whole_records(tmp_path: Path) -> None:
    """Readers on their own connections never see a torn record while a writer writes."""
    path = tmp_path / "cache.db"
    SqliteCacheKeyStorage(path).close()
    count = 300
    done = threading.Event()
    problems: list[str] = []
    seen: list[int] = []

    def reader() -> None:
        with SqliteCacheKeyStorage(path) as storage:
            hits = 0
            while not done.is_set() or hits < count:
                finished = done.is_set()  # the writer was done before this pass began
                hits = 0
                for n in range(count):
                    found = storage.lookup_sync(f"key-{n}")
                    if found is None:
                        continue
                    hits += 1
                    want = record(str(n), *(f"r{n}-{i}" for i in range(n % 4)))
                    if found != want:
                        problems.append(f"{n}: {found}")
                if finished and hits < count:
                    problems.append(f"only {hits} of {count} visible after the writer finished")
                    break
            seen.append(hits)

    def writer() -> None:
        with SqliteCacheKeyStorage(path) as storage:
            for n in range(count):
                rec = record(str(n), *(f"r{n}-{i}" for i in range(n % 4)))
                storage.save_sync([f"key-{n}", f"alias-{n}"], rec)
        done.set()

    threads = [threading.Thread(target=reader) for _ in range(4)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert seen == [count] * 4


_OTHER_PROCESS = """
import json, sys
from dockyard.solver import CacheRecord, SqliteCacheKeyStorage
path, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with SqliteCacheKeyStorage(path) as storage:
    for n in range(first, last):
        rec = CacheRecord(id=f"p{n}", canonical_key=f"c{n}", result_ids=(f"r{n}",), created=0.0)
        storage.save_sync([f"k{n}"], rec)
    print(json.dumps(len(storage)))
"""


def test_sqlite_is_shared_between_processes(tmp_path: Path) -> None:
    """Two processes write at once; each sees the other's records and nothing is lost."""
    path = tmp_path / "cache.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OTHER_PROCESS, str(path), str(first), str(first + 200)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for first in (0, 200)
    ]
    with SqliteCacheKeyStorage(path) as storage:
        while any(proc.poll() is None for proc in procs):
            for n in range(0, 400, 37):
                found = storage.lookup_sync(f"k{n}")
                assert found is None or found.result_ids == (f"r{n}",)
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
        assert all(proc.returncode == 0 for proc in procs)
        assert max(json.loads(out) for out in outputs) <= 400
        assert len(storage) == 400
        rec = storage.lookup_sync("k399")
        assert rec is not None
        assert rec.canonical_key == "c399"


async def test_forgetting_removed_results_drops_their_records_and_keys(tmp_path: Path) -> None:
    with SqliteCacheKeyStorage(tmp_path / "cache.db") as keys:
        await keys.save(["k1", "k1-content"], record("a", "r1", "r2"))
        await keys.save(["k2"], record("b", "r3"))
        await keys.save(["k3"], record("empty"))
        assert keys.forget_results({"r2", "unknown"}) == 1
        assert await keys.lookup("k1") is None
        assert await keys.lookup("k1-content") is None
        assert await keys.lookup("k2") == record("b", "r3")
        assert await keys.lookup("k3") == record("empty")
        assert keys.record_count() == 2
        assert keys.forget_results(()) == 0
