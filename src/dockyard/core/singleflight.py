"""Single-flight: concurrent calls for the same key share one computation.

Kept out of ``dockyard.core``'s ``__init__`` because it imports asyncio, which paths such
as ``dockyard --version`` must not pay for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight(Generic[K, V]):
    """Runs at most one ``fn()`` per key at a time; every caller gets its outcome.

    The shared computation runs in its own task. A caller that is cancelled stops waiting;
    when the last waiter is gone the computation itself is cancelled, so nobody pays for
    work no one wants. Once the computation ends the key is forgotten: a later call starts
    afresh (results are not memoized here; cache them above if wanted).
    """

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    def in_flight(self, key: K) -> bool:
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        flight = self._flights.get(key)
        if flight is None:

            async def run() -> V:
                return await fn()

            flight = _Flight(asyncio.get_running_loop().create_task(run()))
            self._flights[key] = flight
            new_flight = flight

            def forget(_task: asyncio.Task[V]) -> None:
                self._forget(key, new_flight)

            flight.task.add_done_callback(forget)
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if not flight.task.done():
                flight.waiters -= 1
                if flight.waiters == 0:
                    flight.task.cancel()
                    self._forget(key, flight)
                    try:
                        await flight.task
                    except BaseException:  # the task's own outcome is nobody's business now
                        pass
            raise
        finally:
            if flight.task.done():
                flight.waiters = max(flight.waiters - 1, 0)

    def _forget(self, key: K, flight: _Flight[V]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
