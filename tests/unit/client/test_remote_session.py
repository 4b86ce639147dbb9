"""The daemon backend sends Solve while its session attaches: a session that cannot
attach cancels the Solve call and is the error reported (not a wait for the daemon to
give up on a session it never saw)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import dockyard.session
from dockyard import llb
from dockyard.client._job import Job
from dockyard.client._remote import RemoteBackend
from dockyard.core import NullReporter, SessionError


async def test_a_session_that_cannot_attach_cancels_the_solve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = RemoteBackend("unix:///nonexistent/dockyardd.sock")
    solve_started = asyncio.Event()
    solve_cancelled = asyncio.Event()

    async def never_answered() -> Any:
        solve_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            solve_cancelled.set()
            raise

    def unary(name: str, request_type: Any, response_type: Any) -> Any:
        assert name == "Solve"
        return lambda request: never_answered()

    async def refused(session: Any, channel: Any) -> Any:
        await solve_started.wait()  # Solve went out first
        raise SessionError("session protocol version 9 is not supported")

    monkeypatch.setattr(backend, "_unary", unary)
    monkeypatch.setattr(backend, "_open_channel", lambda: object())
    monkeypatch.setattr(dockyard.session, "attach", refused)
    job = Job(name="t", definition=llb.scratch().marshal())
    with pytest.raises(SessionError, match=r"cannot start a session with dockyardd.*version 9"):
        async with asyncio.timeout(5):
            await backend.run(job, NullReporter())
    assert solve_cancelled.is_set()
