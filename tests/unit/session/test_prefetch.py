"""``Session.prefetch``: a walk started early is taken by the first sync of an equal
request only; any other request, or a second sync, walks when asked."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dockyard.core import NotFoundError
from dockyard.session import Session, SessionManager, SyncBase, SyncRequest, stat_key

CONTEXT = SyncRequest(name="context", follow_paths=("app",))


def make_tree(root: Path) -> None:
    (root / "app").mkdir(parents=True)
    (root / "app" / "a.txt").write_text("a")
    (root / "other.txt").write_text("o")


async def prefetched(session: Session, request: SyncRequest) -> None:
    """Start the walk and wait until it has run (its thread is not ours to join)."""
    session.prefetch([request])
    future = session._walks[request]
    await asyncio.wrap_future(future)


async def test_an_equal_request_takes_the_early_walk_once(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx")
    session = Session(directories={"context": tmp_path / "ctx"})
    await prefetched(session, CONTEXT)
    (tmp_path / "ctx" / "app" / "b.txt").write_text("b")  # after the early walk
    first = await session.walk(SyncRequest(name="context", follow_paths=("app",)))
    assert [e.path for e in first] == ["app", "app/a.txt"]  # as the early walk saw it
    second = await session.walk(CONTEXT)  # used once: a new walk
    assert [e.path for e in second] == ["app", "app/a.txt", "app/b.txt"]
    assert session.synced == [CONTEXT, CONTEXT]


async def test_another_request_walks_when_asked(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx")
    session = Session(directories={"context": tmp_path / "ctx"})
    await prefetched(session, CONTEXT)
    (tmp_path / "ctx" / "app" / "b.txt").write_text("b")
    everything = await session.walk(SyncRequest(name="context"))
    assert [e.path for e in everything] == ["app", "app/a.txt", "app/b.txt", "other.txt"]
    excluded = await session.walk(
        SyncRequest(name="context", follow_paths=("app",), exclude_patterns=("app/b.txt",))
    )
    assert [e.path for e in excluded] == ["app", "app/a.txt"]
    assert CONTEXT in session._walks  # never asked for: never used


async def test_each_walk_waits_for_the_syncs_before_it(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx")
    session = Session(directories={"context": tmp_path / "ctx"})
    small = SyncRequest(name="context", follow_paths=("other.txt",))
    later = SyncRequest(name="context", follow_paths=("app",), exclude_patterns=("x",))
    session.prefetch([small, CONTEXT, later])
    first, second, third = (session._walks[r] for r in (small, CONTEXT, later))
    await asyncio.wrap_future(first)  # the first walk starts at once
    await asyncio.sleep(0.05)
    assert not second.done()  # no sync ended yet
    assert [e.path for e in await session.walk(small)] == ["other.txt"]
    session.sync_ended()
    await asyncio.wrap_future(second)  # one sync ended: the second walk ran
    # asked for before its turn: walked when asked, the early walk never runs
    (tmp_path / "ctx" / "app" / "b.txt").write_text("b")
    assert [e.path for e in await session.walk(later)] == ["app", "app/a.txt", "app/b.txt"]
    assert third.cancelled()
    assert [e.path for e in await session.walk(CONTEXT)] == ["app", "app/a.txt"]


async def test_unknown_directories_are_left_to_the_engine(tmp_path: Path) -> None:
    session = Session(directories={"context": tmp_path / "missing"})
    session.prefetch([SyncRequest(name="elsewhere")])  # not offered: ignored
    assert session._walks == {}
    await prefetched_failing(session)
    with pytest.raises(NotFoundError):  # the walk when asked reports it
        await session.walk(SyncRequest(name="context"))
    with pytest.raises(NotFoundError):
        await session.walk(SyncRequest(name="elsewhere"))


async def prefetched_failing(session: Session) -> None:
    request = SyncRequest(name="context")
    session.prefetch([request])
    with pytest.raises(NotFoundError):
        await asyncio.wrap_future(session._walks[request])


async def test_a_sync_into_a_layer_sees_a_change_made_before_the_build(tmp_path: Path) -> None:
    """The in-process transport syncs through the session's walk: a file changed before
    the early walk is sent (changed content is never missed by the next build)."""
    root = tmp_path / "ctx"
    make_tree(root)
    manager = SessionManager()
    first = Session(directories={"context": root})
    async with manager.attach(first):
        handle = await manager.get(first.id)
        result = await handle.filesync.sync(CONTEXT, tmp_path / "first")
    assert [e.path for e in result.tree] == ["app", "app/a.txt"]
    base = {e.path: e for e in result.tree}

    (root / "app" / "a.txt").write_text("changed!")  # before the next build starts
    second = Session(directories={"context": root})
    await prefetched(second, CONTEXT)
    opened: list[Path] = []

    async def open_layer() -> tuple[Path, bool]:
        layer = tmp_path / "layer"
        layer.mkdir()
        opened.append(layer)
        return layer, False

    async with manager.attach(second):
        handle = await manager.get(second.id)
        result = await handle.filesync.sync(
            CONTEXT, SyncBase(entries={p: stat_key(e) for p, e in base.items()}, open=open_layer)
        )
    assert second.synced == [CONTEXT]
    assert opened, "the changed file was not written"
    assert (opened[0] / "app" / "a.txt").read_text() == "changed!"
    assert "app/a.txt" in result.changed


async def test_walks_left_are_dropped_when_the_syncs_before_them_do_not_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.session import _session

    monkeypatch.setattr(_session, "PREFETCH_WAIT", 0.05)
    make_tree(tmp_path / "ctx")
    session = Session(directories={"context": tmp_path / "ctx"})
    small = SyncRequest(name="context", follow_paths=("other.txt",))
    later = SyncRequest(name="context", follow_paths=("app",), exclude_patterns=("x",))
    session.prefetch([small, CONTEXT, later])
    first, second, third = (session._walks[r] for r in (small, CONTEXT, later))
    await asyncio.wrap_future(first)
    async with asyncio.timeout(5):
        await asyncio.wait([asyncio.wrap_future(second), asyncio.wrap_future(third)])
    assert second.cancelled()
    assert third.cancelled()  # no sync ended within the wait: never walked
    assert [e.path for e in await session.walk(CONTEXT)] == ["app", "app/a.txt"]


async def test_a_session_can_send_every_file_as_roots(tmp_path: Path) -> None:
    make_tree(tmp_path / "ctx")
    if os.geteuid() == 0:
        os.chown(tmp_path / "ctx" / "app" / "a.txt", 1234, 5678)
    kept = await Session(directories={"context": tmp_path / "ctx"}).walk(CONTEXT)
    assert {(e.uid, e.gid) for e in kept} != {(0, 0)}
    session = Session(directories={"context": tmp_path / "ctx"}, owners=False)
    await prefetched(session, CONTEXT)
    early = await session.walk(CONTEXT)
    late = await session.walk(SyncRequest(name="context"))
    assert [e.path for e in early] == ["app", "app/a.txt"]
    assert {(e.uid, e.gid) for e in early + late} == {(0, 0)}
