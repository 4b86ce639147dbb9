"""The cache tables' writer thread: writes off the event loop, batched, each undone alone
when it fails, settled only once committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cache._db import CacheDB, Parent, Pending
from dockyard.cache.types import RecordType
from dockyard.core import NotFoundError


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CacheDB]:
    d = CacheDB(tmp_path / "metadata.db")
    try:
        yield d
    finally:
        d.close()


def _hold_writer(db: CacheDB) -> tuple[threading.Event, threading.Event]:
    """Park the writer thread inside a job until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()

    def park(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)

    db._write(park)
    assert entered.wait(10)
    return entered, release


async def test_writes_run_on_the_writer_thread(db: CacheDB) -> None:
    threads: list[str] = []

    def record(conn: sqlite3.Connection) -> int:
        threads.append(threading.current_thread().name)
        return 7

    assert await db._write(record) == 7
    assert threads == ["dockyard-cachedb"]


async def test_await_returns_after_commit(db: CacheDB) -> None:
    await db.insert("a", mutable=True, record_type=RecordType.REGULAR, description="a")
    row = db.get("a")  # the reader's own connection sees it at once
    assert row is not None
    assert row.mutable
    await db.commit("a", 10)
    row = db.get("a")
    assert row is not None
    assert not row.mutable
    assert row.size == 10


async def test_queued_writes_share_a_transaction_and_fail_alone(db: CacheDB) -> None:
    _, release = _hold_writer(db)
    first = db.insert("a", mutable=False, record_type=RecordType.REGULAR, description="a")
    bad = db.commit("missing", 1)  # fails: no such record
    orphan = db.insert(  # fails: the parent does not exist (foreign key)
        "b",
        mutable=False,
        record_type=RecordType.REGULAR,
        description="b",
        parents=[Parent(id="nope", role="parent")],
    )
    last = db.set_label("a", "k", "v")
    release.set()
    await first
    with pytest.raises(NotFoundError):
        await bad
    with pytest.raises(sqlite3.IntegrityError):
        await orphan
    await last
    row = db.get("a")
    assert row is not None
    assert row.labels == {"k": "v"}
    assert db.get("b") is None  # undone, parents rows included
    assert db._query("SELECT COUNT(*) FROM cache_parents") == [(0,)]


async def test_the_event_loop_is_free_while_a_write_waits(db: CacheDB) -> None:
    _, release = _hold_writer(db)
    pending = db.insert("a", mutable=True, record_type=RecordType.REGULAR, description="a")
    task = asyncio.ensure_future(_await(pending))
    for _ in range(5):
        await asyncio.sleep(0)  # the loop keeps running
    assert not task.done()
    assert db.get("a") is None  # not committed yet: not visible
    release.set()
    await task
    assert db.get("a") is not None


async def _await(pending: Pending[None]) -> None:
    await pending


async def test_a_cancelled_caller_gets_its_started_write_then_the_cancellation(
    db: CacheDB,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> str:
        entered.set()
        release.wait(10)
        conn.execute("INSERT INTO cache_meta (name, value) VALUES ('slow', 'done')")
        return "written"

    seen: list[str] = []

    async def caller() -> None:
        seen.append(await db._write(slow))  # like a synchronous call: no cancel inside
        await asyncio.sleep(10)  # the cancellation lands here
        seen.append("not reached")

    task = asyncio.ensure_future(caller())
    await asyncio.to_thread(entered.wait, 10)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the write it started
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["written"]
    assert db.meta("slow") == "done"


async def test_a_timeout_during_a_started_write_stays_a_timeout(db: CacheDB) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)
        conn.execute("INSERT INTO cache_meta (name, value) VALUES ('k', 'v')")

    async def timed() -> None:
        async with asyncio.timeout(0.01):
            await db._write(slow)
            await asyncio.sleep(10)

    asyncio.get_running_loop().call_later(0.05, release.set)
    with pytest.raises(TimeoutError):
        await timed()
    assert entered.is_set()
    assert db.meta("k") == "v"


async def test_a_write_cancelled_before_it_started_is_not_made(db: CacheDB) -> None:
    _, release = _hold_writer(db)
    pending = db.set_meta("never", "x")
    task = asyncio.ensure_future(_await(pending))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await db.set_meta("after", "y")
    assert db.meta("never") is None
    assert db.meta("after") == "y"


def test_wait_from_a_thread_and_close_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    db = CacheDB(path)
    db.set_meta("a", "1").wait()
    db.touch("nothing")  # dropped: harmless when the record is missing
    db.set_meta("b", "2")  # not waited for
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.set_meta("c", "3")
    again = CacheDB(path)
    try:
        assert again.meta("a") == "1"
        assert again.meta("b") == "2"
    finally:
        again.close()


def _committed(db: CacheDB, rid: str) -> None:
    db.insert(rid, mutable=False, record_type=RecordType.REGULAR, description=rid).wait()


def test_labels_are_found_through_their_table_as_they_change(db: CacheDB) -> None:
    for rid in ("a", "b", "c"):
        _committed(db, rid)
    db.set_label("a", "dockyard.local.key", "ctx").wait()
    db.set_label("b", "dockyard.local.key", "ctx").wait()
    db.set_label("c", "dockyard.local.key", "other").wait()
    assert sorted(db.committed_with_label("dockyard.local.key", "ctx")) == ["a", "b"]
    assert [r.id for r in db.with_label("dockyard.local.key", "other")] == ["c"]
    db.set_label("a", "dockyard.local.key", "moved").wait()  # a changed value
    db.set_label("b", "dockyard.local.key", None).wait()  # a removed label
    assert db.committed_with_label("dockyard.local.key", "ctx") == []
    assert db.committed_with_label("dockyard.local.key", "moved") == ["a"]
    db.delete_many(["a"]).wait()  # a deleted record
    assert db.committed_with_label("dockyard.local.key", "moved") == []
    rows = db._query("SELECT key, value, record_id FROM cache_labels")
    assert rows == [("dockyard.local.key", "other", "c")]


def test_a_database_made_before_the_label_table_gets_it_filled(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    first = CacheDB(path)
    _committed(first, "a")
    _committed(first, "b")
    first.set_label("a", "k.with.dots", "v").wait()
    first.set_label("b", "k.with.dots", "v").wait()
    first.close()
    old = sqlite3.connect(path)  # as an earlier Dockyard left it
    old.executescript(
        "DROP TRIGGER cache_labels_insert; DROP TRIGGER cache_labels_update;"
        " DROP TABLE cache_labels; DELETE FROM cache_meta WHERE name = 'labels_table';"
    )
    old.close()
    again = CacheDB(path)
    try:
        assert sorted(again.committed_with_label("k.with.dots", "v")) == ["a", "b"]
        again.set_label("a", "k.with.dots", None).wait()
        assert again.committed_with_label("k.with.dots", "v") == ["b"]
    finally:
        again.close()


def test_a_record_with_unreadable_labels_does_not_stop_the_label_table(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    first = CacheDB(path)
    _committed(first, "a")
    _committed(first, "b")
    first.set_label("b", "k", "v").wait()
    first.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE cache_records SET labels = 'not json' WHERE id = 'a'")
    raw.commit()
    raw.executescript(
        "DELETE FROM cache_labels; DELETE FROM cache_meta WHERE name = 'labels_table';"
    )
    raw.close()
    again = CacheDB(path)  # fills the table again, past the unreadable record
    try:
        assert again.committed_with_label("k", "v") == ["b"]
    finally:
        again.close()
