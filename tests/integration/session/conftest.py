from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dockyard.session import SessionManager
from tests.unit.session.harness import TRANSPORTS, Harness


@pytest.fixture(params=TRANSPORTS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(request.param, SessionManager(call_timeout=10))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
