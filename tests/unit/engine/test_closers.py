from __future__ import annotations

import asyncio
import threading

from dockyard.engine._engine import _Closers


async def test_steps_run_in_reverse_and_parallel_neighbours_together() -> None:
    log: list[str] = []
    both_started = asyncio.Event()
    started: set[str] = set()

    def sync(name: str) -> None:
        log.append(name)

    async def concurrent(name: str) -> None:
        started.add(name)
        if started >= {"a", "b"}:
            both_started.set()
        # each of the two waits for the other: only concurrent steps get past this
        await asyncio.wait_for(both_started.wait(), 5)
        log.append(name)

    closers = _Closers()
    closers.push_sync(lambda: sync("lock"))
    closers.push(lambda: concurrent("a"), parallel=True)
    closers.push(lambda: concurrent("b"), parallel=True)
    closers.push_sync(lambda: sync("sessions"))
    await closers.run()
    assert log[0] == "sessions"
    assert sorted(log[1:3]) == ["a", "b"]
    assert log[3] == "lock"
    assert closers.steps == []


async def test_parallel_sync_steps_run_in_threads_and_errors_do_not_stop_the_rest() -> None:
    threads: list[int] = []
    log: list[str] = []

    def failing() -> None:
        threads.append(threading.get_ident())
        raise OSError("disk gone")

    def fine() -> None:
        threads.append(threading.get_ident())
        log.append("fine")

    closers = _Closers()
    closers.push_sync(lambda: log.append("last"))
    closers.push_sync(fine, parallel=True)
    closers.push_sync(failing, parallel=True)
    await closers.run()
    assert log == ["fine", "last"]
    assert threading.get_ident() not in threads
