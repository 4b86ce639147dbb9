"""Garbage collection (BuildKit's rule semantics: the space limits folded into bytes to
keep, rules applied in order, passes after builds and on a timer) and the progress
buffers of builds (retention for late subscribers, bounded logs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.cache import RecordType, UsageFilter
from dockyard.core import Event, NotFoundError, UsageError, VertexLog, VertexStatus
from dockyard.daemon import (
    BuildProgress,
    Builds,
    DiskStat,
    GarbageCollector,
    GcConfig,
    GcPolicy,
    Space,
    default_gc_policies,
    keep_bytes,
)

from .test_server import FakeEngine, record

T = 1_714_557_600.0
MB = 1 << 20


@pytest.mark.parametrize(
    ("policy", "cache", "free", "expected"),
    [
        # no space limit: keep_duration and filters only
        (GcPolicy(keep_duration=10.0), 500, 1000, None),
        # max used space alone
        (GcPolicy(max_used_space=Space(bytes=300)), 500, 1000, 300),
        # min free space met, no other cap: keep everything
        (GcPolicy(min_free_space=Space(bytes=100)), 500, 1000, 500),
        # min free space short by 150: give back 150
        (GcPolicy(min_free_space=Space(bytes=1150)), 500, 1000, 350),
        # both: the lower wins
        (
            GcPolicy(max_used_space=Space(bytes=400), min_free_space=Space(bytes=1150)),
            500,
            1000,
            350,
        ),
        (
            GcPolicy(max_used_space=Space(bytes=300), min_free_space=Space(bytes=1150)),
            500,
            1000,
            300,
        ),
        # never below the reserved space
        (
            GcPolicy(
                reserved_space=Space(bytes=450),
                max_used_space=Space(bytes=300),
                min_free_space=Space(bytes=1150),
            ),
            500,
            1000,
            450,
        ),
        # reserved alone is BuildKit's old keepBytes
        (GcPolicy(reserved_space=Space(bytes=200)), 500, 1000, 200),
        # a shortfall larger than the cache: remove everything the rule selects
        (GcPolicy(min_free_space=Space(bytes=5000)), 500, 1000, 0),
        # percentages are of the disk
        (GcPolicy(max_used_space=Space(percent=10)), 500, 1000, 1000),
    ],
)
def test_keep_bytes(policy: GcPolicy, cache: int, free: int, expected: int | None) -> None:
    assert keep_bytes(policy, cache_size=cache, disk=DiskStat(total=10_000, free=free)) == expected


def _stat(free: int, total: int = 10_000) -> Callable[[Path], DiskStat]:
    return lambda path: DiskStat(total=total, free=free)


async def test_rules_apply_in_order_and_skip_what_is_under_its_limit(tmp_path: Path) -> None:
    engine = FakeEngine(state_dir=tmp_path)
    engine.records = [
        record("ctx", 300, last_used=T, type=RecordType.SOURCE_LOCAL),
        record("layer", 300, last_used=T + 1),
        record("internal", 300, last_used=T - 1, type=RecordType.INTERNAL),
    ]
    local = UsageFilter(types=frozenset({RecordType.SOURCE_LOCAL}))
    rules = (
        GcPolicy(filter=local, max_used_space=Space(bytes=2000)),  # under: skipped
        GcPolicy(filter=local, max_used_space=Space(bytes=700)),  # removes ctx
        GcPolicy(max_used_space=Space(bytes=700)),  # now under: skipped
        GcPolicy(all=True, max_used_space=Space(bytes=100)),  # internal first (older)
    )
    gc = GarbageCollector(engine, GcConfig(policies=rules), stat=_stat(5000))
    result = await gc.apply(rules)
    assert [r.id for r in result.records] == ["ctx", "internal", "layer"]
    assert result.reclaimed == 900
    assert [p["keep_storage"] for p in engine.prunes] == [700, 100]
    assert engine.records == []


async def test_the_default_rules_leave_a_small_cache_alone(tmp_path: Path) -> None:
    engine = FakeEngine(state_dir=tmp_path)
    engine.records = [record("a", 10 * MB, last_used=T)]  # long unused, but small
    gc = GarbageCollector(
        engine, GcConfig(policies=default_gc_policies()), stat=_stat(5 * 10**11, 10**12)
    )
    result = await gc.apply(default_gc_policies())
    # the 60-day rule has space limits (BuildKit's): it prunes only over them
    assert result.records == ()
    assert engine.prunes == []


async def test_a_rule_without_limits_removes_what_it_selects(tmp_path: Path) -> None:
    engine = FakeEngine(state_dir=tmp_path)
    engine.records = [record("a", 1, last_used=T), record("b", 1, last_used=T + 1)]
    gc = GarbageCollector(engine, GcConfig(), stat=_stat(5000))
    result = await gc.apply([GcPolicy(keep_duration=3600.0)])
    assert engine.prunes == [{"all": False, "keep_duration": 3600.0, "keep_storage": None}]
    assert len(result.records) == 2


async def test_timer_passes_and_failures_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(state_dir=tmp_path)
    calls = 0

    async def broken_du(filters: UsageFilter | None = None) -> list[object]:
        nonlocal calls
        calls += 1
        raise UsageError("the disk is on fire")

    engine.du = broken_du  # type: ignore[method-assign,assignment]
    config = GcConfig(interval=0.01, policies=(GcPolicy(max_used_space=Space(bytes=1)),))
    gc = GarbageCollector(engine, config, stat=_stat(5000))
    runner = asyncio.create_task(gc.run())
    try:
        with caplog.at_level(logging.ERROR, logger="dockyard.daemon.gc"):
            async with asyncio.timeout(10):
                await gc.wait_pass(2)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert gc.statistics().failures >= 3
    assert calls >= 3
    assert "garbage collection failed" in caplog.text
    assert "the disk is on fire" in caplog.text


async def test_a_disabled_collector_runs_no_pass(tmp_path: Path) -> None:
    engine = FakeEngine(state_dir=tmp_path)
    gc = GarbageCollector(
        engine, GcConfig(enabled=False, interval=0.01, policies=default_gc_policies())
    )
    gc.request()
    await asyncio.wait_for(gc.run(), 5)  # returns at once
    assert gc.statistics().passes == 0


async def test_a_pass_runs_at_start_and_requests_are_throttled(tmp_path: Path) -> None:
    engine = FakeEngine(state_dir=tmp_path)
    config = GcConfig(interval=3600, policies=(GcPolicy(max_used_space=Space(bytes=10)),))
    gc = GarbageCollector(engine, config, delay=0, throttle=3600, stat=_stat(5000))
    runner = asyncio.create_task(gc.run())
    try:
        async with asyncio.timeout(10):
            await gc.wait_pass(0)  # a pass at start, unasked
        gc.request()  # within the throttle: no second pass yet
        await asyncio.sleep(0.1)
        assert gc.statistics().passes == 1
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_a_throttled_request_does_not_hold_back_the_timer(tmp_path: Path) -> None:
    # A build's request inside a long throttle must not stop the short timer's passes.
    engine = FakeEngine(state_dir=tmp_path)
    config = GcConfig(interval=0.05, policies=(GcPolicy(max_used_space=Space(bytes=10)),))
    gc = GarbageCollector(engine, config, delay=0, throttle=3600, stat=_stat(5000))
    runner = asyncio.create_task(gc.run())
    try:
        async with asyncio.timeout(10):
            await gc.wait_pass(0)
            gc.request()
            await gc.wait_pass(2)  # the timer keeps passing within the throttle
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert gc.statistics().passes >= 3


# -- build progress -------------------------------------------------------------------


def _log(n: int) -> VertexLog:
    return VertexLog(digest="sha256:x", stream=1, data=b"x" * n, timestamp=T)


async def _collect(progress: BuildProgress) -> list[Event]:
    out: list[Event] = []
    async for batch in progress.subscribe():
        out.extend(batch)
    return out


async def test_late_subscribers_miss_only_output_beyond_the_cap() -> None:
    progress = BuildProgress("b", max_log_bytes=100)
    live = asyncio.create_task(_collect(progress))
    await asyncio.sleep(0)
    status = VertexStatus(digest="sha256:x", name="x", started=T)
    events: list[Event] = [status, _log(60), _log(60), _log(30), status]
    for event in events:
        progress.emit(event)
    progress.finish()
    assert await live == events
    assert await _collect(progress) == [status, events[1], events[3], status]
    assert progress.dropped_logs == 1
    progress.emit(status)  # after the end: ignored
    assert await _collect(progress) == [status, events[1], events[3], status]


async def test_builds_are_forgotten_after_their_retention() -> None:
    builds = Builds(retain=0.05, wait=0.05)
    build = builds.start("r")
    with pytest.raises(UsageError, match="already running"):
        builds.start("r")
    assert builds.running() == ["r"]
    builds.finish(build)
    assert await builds.find("r") is build
    await asyncio.sleep(0.2)
    with pytest.raises(NotFoundError, match="'r'"):
        await builds.find("r")
    waiting = asyncio.create_task(builds.find("later"))
    await asyncio.sleep(0)
    started = builds.start("later")
    assert await waiting is started
    builds.close()
    assert started.done
    with pytest.raises(UsageError, match="needs a ref"):
        builds.start("")


async def test_a_batching_subscriber_ends_with_the_build() -> None:
    progress = BuildProgress("b")
    status = VertexStatus(digest="sha256:x", name="x", started=T)
    batches: list[list[Event]] = []

    async def watch() -> None:
        async for batch in progress.subscribe(interval=3600):
            batches.append(batch)

    watching = asyncio.create_task(watch())
    progress.emit(status)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    progress.emit(status)  # arrives while the subscriber waits out its interval
    progress.finish()
    async with asyncio.timeout(10):  # not an hour
        await watching
    assert [e for batch in batches for e in batch] == [status, status]
