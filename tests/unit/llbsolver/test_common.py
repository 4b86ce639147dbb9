from __future__ import annotations

import asyncio
import threading

import pytest

from dockyard.core import NotFoundError, Platform
from dockyard.llbsolver._common import cache_digest, run_blocking


async def test_run_blocking_waits_for_the_thread_when_cancelled() -> None:
    started = threading.Event()
    finished = threading.Event()

    def work(stop: threading.Event) -> None:
        started.set()
        stop.wait(5)
        finished.set()

    task = asyncio.ensure_future(run_blocking(work))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # the thread saw the stop and ended before we went on


async def test_run_blocking_passes_results_and_errors() -> None:
    assert await run_blocking(lambda stop: 42) == 42

    def fail(stop: threading.Event) -> None:
        raise NotFoundError("gone")

    with pytest.raises(NotFoundError, match="gone"):
        await run_blocking(fail)


def test_cache_digests_are_stable_and_distinct() -> None:
    a = cache_digest("file", "x")
    assert a == cache_digest("file", "x")
    assert a.startswith("sha256:")
    assert a != cache_digest("exec", "x")
    linux = Platform.of("linux", "amd64")
    assert cache_digest("exec", "x", linux) != cache_digest(
        "exec", "x", Platform.of("linux", "arm64")
    )
