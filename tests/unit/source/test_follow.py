"""Following a download into the content store: a reader that sees the bytes as they are
written, the end only once the blob is committed, and refuses a restarted download that
changed what it already read; the window that orders a pull's downloads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.content import ContentStore
from dockyard.core import CancelledError, ContentError, Digest, NotFoundError
from dockyard.source._follow import DownloadWindow, Follower
from dockyard.source._registry import StoreSink


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ContentStore]:
    content = ContentStore(tmp_path / "content")
    yield content
    content.close()


def _read_all(reader: object, size: int = 1000) -> bytes:
    parts = []
    while chunk := reader.read(size):  # type: ignore[attr-defined]
        parts.append(chunk)
    return b"".join(parts)


async def test_the_reader_follows_the_writes_and_ends_at_the_commit(store: ContentStore) -> None:
    blob = os.urandom(300_000)
    digest = Digest.from_bytes(blob)
    follower = Follower(store, digest)
    sink = StoreSink(store, digest=digest, size=len(blob), lease=None, follower=follower)
    reader = follower.open()
    reading = asyncio.create_task(asyncio.to_thread(_read_all, reader))
    for start in range(0, len(blob), 70_000):
        await sink.write(blob[start : start + 70_000])
        await asyncio.sleep(0.01)
    assert not reading.done()  # all bytes written, but not committed: no end yet
    await sink.commit(digest, len(blob))
    follower.finished()
    assert await reading == blob
    reader.close()
    assert store.has(digest)


async def test_a_blob_committed_before_the_first_read_is_read_from_the_store(
    store: ContentStore,
) -> None:
    blob = os.urandom(5000)
    digest = Digest.from_bytes(blob)
    follower = Follower(store, digest)
    sink = StoreSink(store, digest=digest, size=len(blob), lease=None, follower=follower)
    await sink.write(blob)
    await sink.commit(digest, len(blob))
    follower.finished()
    reader = follower.open()
    assert await asyncio.to_thread(_read_all, reader, 999) == blob
    reader.close()


async def test_a_failed_download_fails_the_reader_with_its_error(store: ContentStore) -> None:
    blob = os.urandom(5000)
    digest = Digest.from_bytes(blob)
    follower = Follower(store, digest)
    sink = StoreSink(store, digest=digest, size=len(blob), lease=None, follower=follower)
    reader = follower.open()
    reading = asyncio.create_task(asyncio.to_thread(_read_all, reader))
    await sink.write(blob[:2000])
    await sink.abort()
    follower.failed(NotFoundError("blob gone"))
    with pytest.raises(NotFoundError, match="blob gone"):
        await reading
    reader.close()
    assert store.ingests() == []


async def test_interrupt_wakes_a_waiting_reader(store: ContentStore) -> None:
    follower = Follower(store, Digest.from_bytes(b"x"))
    reader = follower.open()
    reading = asyncio.create_task(asyncio.to_thread(reader.read, 10))
    await asyncio.sleep(0.05)
    follower.interrupt()
    with pytest.raises(CancelledError):
        await reading
    reader.close()


async def test_a_restarted_download_goes_on_when_it_is_the_same_blob(store: ContentStore) -> None:
    blob = os.urandom(200_000)
    digest = Digest.from_bytes(blob)
    follower = Follower(store, digest)
    sink = StoreSink(store, digest=digest, size=len(blob), lease=None, follower=follower)
    reader = follower.open()
    await sink.write(blob[:50_000])
    first = await asyncio.to_thread(reader.read, 30_000)
    await sink.reset()  # the registry ignored a range request: from byte 0 again
    reading = asyncio.create_task(asyncio.to_thread(_read_all, reader))
    await sink.write(blob[:100_000])
    await sink.write(blob[100_000:])
    await sink.commit(digest, len(blob))
    follower.finished()
    assert first + await reading == blob
    reader.close()


async def test_a_restarted_download_that_changed_read_bytes_is_refused(
    store: ContentStore,
) -> None:
    blob = os.urandom(200_000)
    digest = Digest.from_bytes(blob)
    follower = Follower(store, digest)
    sink = StoreSink(store, digest=digest, size=len(blob), lease=None, follower=follower)
    reader = follower.open()
    await sink.write(b"\0" * 50_000)  # the first attempt sent something else
    await asyncio.to_thread(reader.read, 30_000)
    await sink.reset()
    reading = asyncio.create_task(asyncio.to_thread(_read_all, reader))
    await sink.write(blob)
    await sink.commit(digest, len(blob))
    follower.finished()
    with pytest.raises(ContentError, match="changed when its download started over"):
        await reading
    reader.close()


async def test_the_window_starts_downloads_in_order_near_the_end_of_the_one_before() -> None:
    window = DownloadWindow(2, 100)
    events: list[str] = []
    reports: dict[str, object] = {}
    finish = {name: asyncio.Event() for name in "abc"}

    async def download(name: str, size: int) -> None:
        async with window.slot(size) as received:
            events.append(f"start {name}")
            reports[name] = received
            await finish[name].wait()
            events.append(f"end {name}")

    tasks = [asyncio.create_task(download(n, 1000)) for n in "abc"]
    await asyncio.sleep(0.01)
    assert events == ["start a"]  # b waits: a has 1000 bytes left, more than 100
    reports["a"](950)  # type: ignore[operator]
    await asyncio.sleep(0.01)
    assert events == ["start a", "start b"]  # 50 left: b may start, c not (b has 1000)
    reports["b"](1000)  # type: ignore[operator]
    await asyncio.sleep(0.01)
    assert events == ["start a", "start b"]  # two running: the count is full
    finish["a"].set()
    await asyncio.sleep(0.01)
    assert events[-2:] == ["end a", "start c"]
    finish["b"].set()
    finish["c"].set()
    await asyncio.gather(*tasks)


async def test_a_download_cancelled_while_waiting_gives_up_its_turn() -> None:
    window = DownloadWindow(1, 10)
    started: list[int] = []
    gate = asyncio.Event()

    async def download(n: int) -> None:
        async with window.slot(100):
            started.append(n)
            await gate.wait()

    first = asyncio.create_task(download(1))
    second = asyncio.create_task(download(2))
    third = asyncio.create_task(download(3))
    await asyncio.sleep(0.01)
    second.cancel()
    gate.set()
    await first
    await third
    with pytest.raises(asyncio.CancelledError):
        await second
    assert started == [1, 3]


async def test_the_store_sink_refuses_content_that_is_not_the_blob(store: ContentStore) -> None:
    blob = os.urandom(100_000)
    digest = Digest.from_bytes(blob)
    sink = StoreSink(store, digest=digest, size=len(blob), lease=None)
    assert sink.verifies_digest  # the registry client leaves the check to its commit
    await sink.write(b"\1" * len(blob))
    with pytest.raises(ContentError, match=str(digest)):
        await sink.commit(digest, len(blob))
    assert not store.has(digest)
    assert store.ingests() == []


async def test_a_failed_write_in_flight_surfaces_and_abort_cleans_up(store: ContentStore) -> None:
    blob = os.urandom(1000)
    sink = StoreSink(store, digest=Digest.from_bytes(blob), size=len(blob), lease=None)
    await sink.write(blob + b"too long")  # runs in a thread: its error comes with the next call
    with pytest.raises(ContentError, match="more than the expected"):
        await sink.write(b"more")
    await sink.abort()
    assert store.ingests() == []
