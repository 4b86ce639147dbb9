"""The session manager: lookup, waiting, duplicates, disconnects, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import NotFoundError, SessionError
from dockyard.session import Session, SessionManager, SyncRequest, _grpc_client

from .harness import Harness
from .trees import write


class Hanging:
    """A secret store that never answers (until cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def get(self, id: str) -> bytes:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


async def test_get_waits_for_the_session_to_attach() -> None:
    manager = SessionManager(attach_timeout=5)
    session = Session(name="late")
    waiter = asyncio.create_task(manager.get(session.id))
    await asyncio.sleep(0)
    assert not waiter.done()
    handle = manager.register(session)
    assert await waiter is handle
    assert manager.find(session.id) is handle
    assert manager.sessions() == (handle,)
    await handle.close()
    assert manager.find(session.id) is None


async def test_get_times_out_with_a_clear_error() -> None:
    manager = SessionManager()
    with pytest.raises(SessionError, match="no session 'nope' attached"):
        await manager.get("nope", wait=0.01)


async def test_duplicate_ids_are_refused(harness: Harness) -> None:
    session = Session(id="same-id")
    async with harness.open(session):
        with pytest.raises(SessionError, match="already attached"):
            async with harness.open(Session(id="same-id")):
                pass


async def test_handle_describes_the_session(harness: Harness, tmp_path: Path) -> None:
    session = Session(name="build 1", shared_key="key", directories={"context": tmp_path})
    async with harness.open(session) as handle:
        assert (handle.id, handle.name, handle.shared_key) == (session.id, "build 1", "key")
        assert handle.info.directories == frozenset({"context"})
        assert handle.transport == ("in-process" if harness.transport == "in-process" else "grpc")
    await asyncio.wait_for(handle.wait_closed(), 10)
    assert handle.closed
    with pytest.raises(SessionError, match=f"session {session.id} ended"):
        await handle.filesync.sync(SyncRequest(name="context"), tmp_path / "dest")


async def test_disconnect_fails_calls_in_flight(harness: Harness) -> None:
    store = Hanging()
    session = Session(secrets=store)
    async with harness.open(session) as handle:
        call = asyncio.create_task(handle.secrets.get("x"))
        await asyncio.wait_for(store.started.wait(), 10)
        if harness.transport == "in-process":
            await handle.close()
        else:
            await harness.attachments[-1].close()
        with pytest.raises(SessionError, match="ended"):
            await asyncio.wait_for(call, 10)
    assert handle.closed


async def test_cancel_on_close_cancels_a_build(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        started = asyncio.Event()

        async def build() -> None:
            async with handle.cancel_on_close("building the test"):
                started.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(build())
        await started.wait()
        if harness.transport == "in-process":
            await handle.close()
        else:
            await harness.attachments[-1].close()
        with pytest.raises(SessionError, match="while building the test"):
            await asyncio.wait_for(task, 10)

        # a build that finishes normally is not disturbed, and its own cancellation stays one
        async with SessionManager().attach(Session()) as other:
            async with other.cancel_on_close():
                await asyncio.sleep(0)

            async def cancelled() -> None:
                async with other.cancel_on_close():
                    await asyncio.sleep(3600)

            inner = asyncio.create_task(cancelled())
            await asyncio.sleep(0)
            inner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await inner


async def test_unanswered_requests_time_out(harness: Harness) -> None:
    harness.manager.call_timeout = 0.2
    store = Hanging()
    async with harness.open(Session(secrets=store)) as handle:
        with pytest.raises(
            SessionError, match=r"did not answer within 0.2s \(while fetching secret 'x'\)"
        ):
            await handle.secrets.get("x")
        assert not handle.closed  # the session itself is fine


async def test_disconnect_during_a_sync(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write(src, "f", "x")
    stalled = asyncio.Event()

    async def stall(*args: Any, **kwargs: Any) -> Any:
        stalled.set()
        await asyncio.Event().wait()

    class StalledPeerSource:
        async def stats(self) -> AsyncIterator[list[Any]]:
            stalled.set()
            await asyncio.Event().wait()
            yield []

        async def fetch(self, ids: Any) -> AsyncIterator[list[Any]]:
            yield []

    monkeypatch.setattr(_grpc_client, "send_tree", stall)
    from dockyard.session import _local

    monkeypatch.setattr(_local, "LocalSyncSource", lambda *a: StalledPeerSource())
    async with harness.open(Session(directories={"context": src})) as handle:
        sync = asyncio.create_task(
            handle.filesync.sync(SyncRequest(name="context"), tmp_path / "d")
        )
        await asyncio.wait_for(stalled.wait(), 10)
        if harness.transport == "in-process":
            await handle.close()
        else:
            await harness.attachments[-1].close()
        with pytest.raises(SessionError, match="while syncing 'context'"):
            await asyncio.wait_for(sync, 10)


async def test_engine_side_close_ends_the_session(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        await handle.close()
        assert handle.closed
        assert handle.close_reason == "closed by the engine"
        assert harness.manager.find(handle.id) is None
        if harness.attachments:  # the remote client sees its session end
            attachment = harness.attachments[-1]
            await asyncio.wait_for(attachment.wait_closed(), 10)
            assert attachment.reason == "the daemon ended the session"


async def test_requests_for_what_the_client_does_not_offer(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        with pytest.raises(NotFoundError, match="no directory 'context'"):
            await handle.filesync.sync(SyncRequest(name="context"), Path("/nonexistent"))
        with pytest.raises(NotFoundError, match="no SSH agent 'default'"):
            async with handle.ssh.forward("default"):
                pass
        with pytest.raises(NotFoundError, match="no export target 'out'"):
            async with handle.exports.open_stream("out"):
                pass
        assert not handle.ssh.has("default")
        assert not handle.exports.has("out")
