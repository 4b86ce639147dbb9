"""Garbage collection: the configured rules (:class:`~dockyard.daemon.GcPolicy`, in
order) applied with the engine's prune — shortly after builds and on a timer — and the
one-rule prunes clients ask for.

One rule, as BuildKit applies its ``gcpolicy``: the space limits fold into one number
of bytes to keep (:func:`keep_bytes`): start from ``max_used_space``; if the disk has
less than ``min_free_space`` free, lower it by the shortfall; never below
``reserved_space``. The engine then removes unused records the rule selects (its
filter; internal and frontend records only with ``all``; not used within
``keep_duration``), least recently used first, until the cache holds no more than
that. A rule without any space limit removes every record it selects. A rule whose
limit the cache is already under is skipped without touching it.

A pass runs ``delay`` seconds after the collector starts and after each build, but no
sooner than ``throttle`` seconds after the previous pass (BuildKit: at most once a
minute); another runs every ``interval`` seconds. Passes and prunes never run at once (two would each see the disk
too full and remove too much).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._config import GcConfig, GcPolicy, Space

if TYPE_CHECKING:
    from dockyard.cache import UsageRecord

    from .types import ServedEngine

__all__ = ["DiskStat", "GarbageCollector", "GcResult", "disk_stat", "keep_bytes"]

log = logging.getLogger("dockyard.daemon.gc")


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskStat:
    """The size and free space (bytes) of the filesystem holding the state directory."""

    total: int
    free: int


def disk_stat(path: Path) -> DiskStat:
    usage = shutil.disk_usage(path)
    return DiskStat(total=usage.total, free=usage.free)


@dataclass(frozen=True, slots=True, kw_only=True)
class GcResult:
    """What a pass (or a prune) removed: cache records, and blobs nothing refers to."""

    records: tuple[UsageRecord, ...] = ()
    blobs_removed: int = 0
    blob_bytes_freed: int = 0

    @property
    def reclaimed(self) -> int:
        return sum(r.size for r in self.records) + self.blob_bytes_freed


def _space(value: Space | None, disk_total: int) -> int:
    return value.resolve(disk_total) if value is not None else 0


def keep_bytes(policy: GcPolicy, *, cache_size: int, disk: DiskStat) -> int | None:
    """How many bytes of cache ``policy`` keeps, given the cache's current size and the
    disk; ``None`` when the rule has no space limit (it removes everything it selects).
    Percentages are of the disk's size."""
    reserved = _space(policy.reserved_space, disk.total)
    max_used = _space(policy.max_used_space, disk.total)
    min_free = _space(policy.min_free_space, disk.total)
    if not (reserved or max_used or min_free):
        return None
    keep = max_used
    shortfall = min_free - disk.free
    if min_free and shortfall > 0:
        keep = cache_size - shortfall if keep == 0 else min(keep, cache_size - shortfall)
    elif min_free and keep == 0:
        keep = cache_size  # enough free space and no other cap: nothing to remove
    return max(keep, reserved, 0)


@dataclass(slots=True)
class GcStatistics:
    """Counters of a :class:`GarbageCollector` (for logs, tests and ``statistics()``)."""

    passes: int = 0
    failures: int = 0
    records_removed: int = 0
    bytes_reclaimed: int = 0
    last_pass: float | None = None
    last_result: GcResult = field(default_factory=GcResult)


class GarbageCollector:
    """Applies GC rules to one engine (see the module docstring).

    :meth:`apply` runs rules now (a pass, or a client's prune); :meth:`request` asks for
    a pass after a build; :meth:`run` is the background loop (cancel it to stop).
    ``stat`` measures the state directory's filesystem (replaceable in tests).
    """

    def __init__(
        self,
        engine: ServedEngine,
        config: GcConfig,
        *,
        delay: float = 1.0,
        throttle: float = 60.0,
        stat: Callable[[Path], DiskStat] = disk_stat,
    ) -> None:
        self.engine = engine
        self.config = config
        self.delay = delay
        self.throttle = throttle
        self._stat = stat
        self._lock = asyncio.Lock()
        self._requested = asyncio.Event()
        self._passed = asyncio.Condition()
        self.stats = GcStatistics()

    def statistics(self) -> GcStatistics:
        return self.stats

    def request(self) -> None:
        """Ask for a pass soon (a build just finished)."""
        if self.config.enabled:
            self._requested.set()

    async def apply(self, policies: Sequence[GcPolicy]) -> GcResult:
        """Apply ``policies`` in order, now (waiting for a pass or prune in progress)."""
        async with self._lock:
            return await self._apply(policies)

    async def _apply(self, policies: Sequence[GcPolicy]) -> GcResult:
        records: list[UsageRecord] = []
        blobs = blob_bytes = 0
        for index, policy in enumerate(policies):
            keep: int | None = None
            if any(
                v is not None
                for v in (policy.reserved_space, policy.max_used_space, policy.min_free_space)
            ):
                disk = await asyncio.to_thread(self._stat, self.engine.state_dir)
                size = sum(r.size for r in await self.engine.du())
                keep = keep_bytes(policy, cache_size=size, disk=disk)
                if keep is not None and size <= keep:
                    log.debug(
                        "gc rule %d: cache uses %d bytes, keeps up to %d: nothing to do",
                        index,
                        size,
                        keep,
                    )
                    continue
            result = await self.engine.prune(
                all=policy.all,
                keep_duration=policy.keep_duration,
                keep_storage=keep,
                filters=policy.filter,
            )
            records.extend(result.records)
            blobs += result.blobs_removed
            blob_bytes += result.blob_bytes_freed
            if result.records or result.blobs_removed:
                log.info(
                    "gc rule %d: removed %d records (%d bytes) and %d blobs (%d bytes)",
                    index,
                    len(result.records),
                    sum(r.size for r in result.records),
                    result.blobs_removed,
                    result.blob_bytes_freed,
                )
        return GcResult(records=tuple(records), blobs_removed=blobs, blob_bytes_freed=blob_bytes)

    async def collect(self) -> GcResult:
        """One pass of the configured rules; failures are logged, not raised."""
        started = time.monotonic()
        try:
            result = await self.apply(self.config.policies)
        except Exception:
            self.stats.failures += 1
            log.exception("garbage collection failed")
            result = GcResult()
        self.stats.passes += 1
        self.stats.records_removed += len(result.records)
        self.stats.bytes_reclaimed += result.reclaimed
        self.stats.last_pass = time.time()
        self.stats.last_result = result
        if result.records or result.blobs_removed:
            log.info(
                "gc: reclaimed %d bytes (%d records, %d blobs) in %.2fs",
                result.reclaimed,
                len(result.records),
                result.blobs_removed,
                time.monotonic() - started,
            )
        async with self._passed:
            self._passed.notify_all()
        return result

    async def wait_pass(self, after: int) -> None:
        """Return once more than ``after`` passes have run (for tests)."""
        async with self._passed:
            await self._passed.wait_for(lambda: self.stats.passes > after)

    async def run(self) -> None:
        """Passes at start, after builds and every ``interval`` seconds, until cancelled."""
        if not self.config.enabled or not self.config.policies:
            return
        loop = asyncio.get_running_loop()
        last = -math.inf
        next_timer = loop.time() + self.config.interval
        self._requested.set()  # a pass soon after start: the disk may have filled meanwhile
        while True:
            timeout = max(next_timer - loop.time(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._requested.wait()
            if self._requested.is_set():
                # A requested pass waits out the throttle, but never past the timer's
                # own next pass (a short gc-interval must not wait for the throttle).
                throttled = max(self.delay, last + self.throttle - loop.time())
                await asyncio.sleep(min(throttled, max(next_timer - loop.time(), 0.0)))
                self._requested.clear()  # builds that ended meanwhile: this pass
            await self.collect()
            last = loop.time()
            next_timer = last + self.config.interval
