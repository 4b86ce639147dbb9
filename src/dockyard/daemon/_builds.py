"""The builds a daemon runs, by the ``ref`` their client chose, and the fan-out of each
build's progress to its ``Status`` subscribers.

A build's events are kept from its start, so that a subscriber that arrives late (the
client calls ``Status`` and ``Solve`` concurrently; either may reach the daemon first)
still sees every event; any number of subscribers may watch one build. Process output
(:class:`~dockyard.core.VertexLog`) is kept up to :data:`MAX_RETAINED_LOG_BYTES` per
build: beyond that, later output still reaches the subscribers watching at the time,
but not those that arrive afterwards (a build printing gigabytes must not hold them in
the daemon's memory). A finished build stays findable for ``retain`` seconds so that a
``Status`` call that arrives after a fast (all cached) build still gets its events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from dockyard.core import Event, NotFoundError, UsageError, VertexLog

__all__ = ["MAX_RETAINED_LOG_BYTES", "BuildProgress", "Builds"]

#: The most bytes of process output kept for subscribers that have not arrived yet.
MAX_RETAINED_LOG_BYTES = 32 << 20


class _Subscriber:
    __slots__ = ("pending", "wake")

    def __init__(self, history: list[Event]) -> None:
        self.pending: list[Event] = list(history)
        self.wake = asyncio.Event()
        if self.pending:
            self.wake.set()


class BuildProgress:
    """One build's progress: a :class:`~dockyard.core.Reporter` the engine emits to,
    and the source of any number of :meth:`subscribe` streams.

    ``emit`` is called on the event loop's thread (the engine hands events from worker
    threads to the loop), never raises and never blocks.
    """

    def __init__(self, ref: str, *, max_log_bytes: int = MAX_RETAINED_LOG_BYTES) -> None:
        self.ref = ref
        self._history: list[Event] = []
        self._subscribers: set[_Subscriber] = set()
        self._log_bytes = 0
        self._max_log_bytes = max_log_bytes
        self._done = False
        self._finished = asyncio.Event()
        self.dropped_logs = 0

    @property
    def done(self) -> bool:
        return self._done

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def emit(self, event: Event) -> None:
        if self._done:
            return
        keep = True
        if isinstance(event, VertexLog):
            if self._log_bytes + len(event.data) > self._max_log_bytes:
                keep = False
                self.dropped_logs += 1
            else:
                self._log_bytes += len(event.data)
        if keep:
            self._history.append(event)
        for subscriber in self._subscribers:
            subscriber.pending.append(event)
            subscriber.wake.set()

    def finish(self) -> None:
        """The build ended: every subscription ends once it has taken what is pending."""
        if self._done:
            return
        self._done = True
        self._finished.set()
        for subscriber in self._subscribers:
            subscriber.wake.set()

    async def subscribe(self, *, interval: float = 0.0) -> AsyncIterator[list[Event]]:
        """Every event of the build so far, then the new ones as they come, in batches;
        ends when the build has finished and everything was taken. ``interval``: wait
        that long after a batch so that the next one gathers more events (fewer, larger
        messages for a busy build)."""
        subscriber = _Subscriber(self._history)
        self._subscribers.add(subscriber)
        try:
            while True:
                if not subscriber.pending:
                    if self._done:
                        return
                    subscriber.wake.clear()
                    await subscriber.wake.wait()
                    continue
                batch, subscriber.pending = subscriber.pending, []
                yield batch
                if interval > 0 and not self._done:
                    with contextlib.suppress(TimeoutError):  # the end is sent at once
                        async with asyncio.timeout(interval):
                            await self._finished.wait()
        finally:
            self._subscribers.discard(subscriber)


class Builds:
    """The builds running now (and those finished in the last ``retain`` seconds), by
    ref. ``wait`` is how long :meth:`find` waits for a build that has not started yet
    (BuildKit waits a few seconds too: ``Status`` may arrive before ``Solve``)."""

    def __init__(self, *, retain: float = 10.0, wait: float = 10.0) -> None:
        self.retain = retain
        self.wait = wait
        self._builds: dict[str, BuildProgress] = {}
        self._waiters: dict[str, list[asyncio.Future[BuildProgress]]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def running(self) -> list[str]:
        return sorted(ref for ref, b in self._builds.items() if not b.done)

    def start(self, ref: str) -> BuildProgress:
        """Register a new build; :class:`~dockyard.core.UsageError` if ``ref`` is empty or
        a build of that ref is running."""
        if not ref:
            raise UsageError("a build needs a ref (an id the client chooses)")
        current = self._builds.get(ref)
        if current is not None and not current.done:
            raise UsageError(f"a build with ref {ref!r} is already running")
        expiry = self._expiry.pop(ref, None)
        if expiry is not None:
            expiry.cancel()
        build = BuildProgress(ref)
        self._builds[ref] = build
        for waiter in self._waiters.pop(ref, []):
            if not waiter.done():
                waiter.set_result(build)
        return build

    def finish(self, build: BuildProgress) -> None:
        """The build ended: its subscribers finish; it is forgotten after ``retain``."""
        build.finish()
        if self._builds.get(build.ref) is not build:
            return
        if self.retain <= 0:
            del self._builds[build.ref]
            return
        loop = asyncio.get_running_loop()
        self._expiry[build.ref] = loop.call_later(self.retain, self._forget, build)

    def _forget(self, build: BuildProgress) -> None:
        if self._builds.get(build.ref) is build:
            del self._builds[build.ref]
            self._expiry.pop(build.ref, None)

    async def find(self, ref: str) -> BuildProgress:
        """The build ``ref``, waiting up to ``wait`` seconds for it to start;
        :class:`~dockyard.core.NotFoundError` if it does not."""
        found = self._builds.get(ref)
        if found is not None:
            return found
        waiter: asyncio.Future[BuildProgress] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(ref, [])
        waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait):
                return await waiter
        except TimeoutError:
            raise NotFoundError(
                f"no build with ref {ref!r} (none started within {self.wait:g}s)"
            ) from None
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._waiters.get(ref) is waiters:
                del self._waiters[ref]

    def close(self) -> None:
        """Finish every build's subscriptions and forget them all."""
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        for build in self._builds.values():
            build.finish()
        self._builds.clear()
