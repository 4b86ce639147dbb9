"""The scheduler with fake ops: caching, dedup, parallelism, failure, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import Any

import pytest

from dockyard.core import (
    CancelledError,
    CollectingReporter,
    Event,
    ExecError,
    InternalError,
    VertexLog,
    VertexProgress,
    VertexStatus,
)
from dockyard.solver import (
    CacheMap,
    Edge,
    InMemoryCacheKeyStorage,
    JobValue,
    Solver,
    Vertex,
    VertexContext,
)
from dockyard.testing.solver import FakeBackend, FakeOp

SESSION: JobValue[str] = JobValue("session")


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def keys() -> InMemoryCacheKeyStorage:
    return InMemoryCacheKeyStorage()


async def run_ready(rounds: int = 5) -> None:
    """Let the tasks that are ready run: a few passes of the event loop, not a timed wait
    (the loop runs ready tasks in FIFO order, so this is deterministic)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def make_solver(backend: FakeBackend, keys: InMemoryCacheKeyStorage, **kw: Any) -> Solver:
    return Solver(result_storage=backend, key_storage=keys, **kw)


class SignallingReporter(CollectingReporter):
    """Sets ``signal`` once a status matching ``predicate`` is emitted."""

    def __init__(self, predicate: Callable[[VertexStatus], bool]) -> None:
        super().__init__()
        self.predicate = predicate
        self.signal = asyncio.Event()

    def emit(self, event: Event) -> None:
        super().emit(event)
        if isinstance(event, VertexStatus) and self.predicate(event):
            self.signal.set()


def statuses(reporter: CollectingReporter, vertex: Vertex) -> list[VertexStatus]:
    return [s for s in reporter.statuses() if s.digest == vertex.digest]


async def test_runs_once_then_hits_the_cache(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    a = backend.vertex("a", value="A")
    b = backend.vertex("b", a, fn=lambda ins: ins[0] + "B")
    solver = make_solver(backend, keys)
    first = CollectingReporter()
    async with solver.new_job(reporter=first) as job:
        ref = await job.solve(b.output())
        assert ref.value.value == "AB"  # type: ignore[attr-defined]
        assert not ref.cached
    assert backend.exec_counts == {"a": 1, "b": 1}
    last = statuses(first, b)[-1]
    assert last.started is not None
    assert last.completed is not None
    assert not last.cached
    assert last.inputs == (a.digest,)
    assert statuses(first, b)[0].started is None  # "seen" before anything ran

    second = CollectingReporter()
    async with make_solver(backend, keys).new_job(reporter=second) as job:
        ref = await job.solve(b.output())
        assert ref.value.value == "AB"  # type: ignore[attr-defined]
        assert ref.cached
    assert backend.exec_counts == {"a": 1, "b": 1}
    assert statuses(second, a)[-1].cached
    assert statuses(second, b)[-1].cached
    backend.assert_no_leaks()


async def test_noop_rebuild_loads_only_the_target(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    chain = [backend.vertex("v0", value=0)]
    for n in range(1, 6):
        chain.append(backend.vertex(f"v{n}", chain[-1], fn=lambda ins: ins[0] + 1))
    async with make_solver(backend, keys).new_job() as job:
        ref = await job.solve(chain[-1].output())
        target_id = ref.id
    backend.loads.clear()
    async with make_solver(backend, keys).new_job() as job:
        ref = await job.solve(chain[-1].output())
        assert ref.value.value == 5  # type: ignore[attr-defined]
    assert backend.loads == [target_id]
    assert sum(backend.exec_counts.values()) == 6
    backend.assert_no_leaks()


async def test_independent_vertices_run_concurrently(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    width = 8
    barrier = asyncio.Barrier(width)

    async def meet(ctx: VertexContext) -> None:
        await barrier.wait()  # passes only if all `width` execs are running at once

    leaves = [backend.vertex(f"leaf{n}", value=n, hook=meet) for n in range(width)]
    top = backend.vertex("top", *leaves, fn=sum)
    async with asyncio.timeout(10), make_solver(backend, keys).new_job() as job:
        ref = await job.solve(top.output())
        assert ref.value.value == sum(range(width))  # type: ignore[attr-defined]


async def test_max_parallelism_bounds_execs(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    limit = 3
    barrier = asyncio.Barrier(limit)
    active = 0
    peak = 0

    async def meet(ctx: VertexContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await barrier.wait()  # `limit` of them are running together
        finally:
            active -= 1

    leaves = [backend.vertex(f"leaf{n}", value=n, hook=meet) for n in range(4 * limit)]
    top = backend.vertex("top", *leaves, fn=sum)
    async with asyncio.timeout(10):
        async with make_solver(backend, keys, max_parallelism=limit).new_job() as job:
            await job.solve(top.output())
    assert peak == limit


async def test_op_acquire_limits_its_own_kind(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    limited = asyncio.Semaphore(1)
    active = 0
    peak = 0

    async def busy(ctx: VertexContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(5):
            await asyncio.sleep(0)  # yield so that others could interleave
        active -= 1

    leaves = [backend.vertex(f"l{n}", value=n, hook=busy, limit=limited) for n in range(4)]
    async with make_solver(backend, keys).new_job() as job:
        await job.solve(backend.vertex("top", *leaves, fn=sum).output())
    assert peak == 1


async def test_concurrent_jobs_share_a_vertex(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def hold(ctx: VertexContext) -> None:
        started.set()
        await gate.wait()

    shared = backend.vertex("shared", value="S", hook=hold)
    left = backend.vertex("left", shared, fn=lambda ins: ins[0] + "L")
    right = backend.vertex("right", shared, fn=lambda ins: ins[0] + "R")
    solver = make_solver(backend, keys)
    rep_a, rep_b = CollectingReporter(), CollectingReporter()
    async with solver.new_job(reporter=rep_a) as job_a, solver.new_job(reporter=rep_b) as job_b:
        task_a = asyncio.create_task(job_a.solve(left.output()))
        await started.wait()
        task_b = asyncio.create_task(job_b.solve(right.output()))
        await run_ready()  # job b now waits for the running "shared"
        gate.set()
        ref_a, ref_b = await asyncio.gather(task_a, task_b)
        assert ref_a.value.value == "SL"  # type: ignore[attr-defined]
        assert ref_b.value.value == "SR"  # type: ignore[attr-defined]
    assert backend.exec_counts["shared"] == 1
    # both jobs saw the shared vertex complete
    assert statuses(rep_a, shared)[-1].completed is not None
    assert statuses(rep_b, shared)[-1].completed is not None
    backend.assert_no_leaks()


async def test_same_cache_key_under_another_digest_runs_once(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def hold(ctx: VertexContext) -> None:
        started.set()
        await gate.wait()

    one = backend.vertex("same", value="X", hook=hold)
    # same op and inputs, different digest (think: same op, other metadata)
    two = Vertex(digest=one.digest + "-other", name="same-too", op=one.op)
    solver = make_solver(backend, keys)
    rep_b = SignallingReporter(lambda s: s.digest == two.digest and s.started is not None)
    async with solver.new_job() as job_a, solver.new_job(reporter=rep_b) as job_b:
        task_a = asyncio.create_task(job_a.solve(one.output()))
        await started.wait()
        task_b = asyncio.create_task(job_b.solve(two.output()))
        await rep_b.signal.wait()  # "same-too" joined the running flight
        gate.set()
        ref_a, ref_b = await asyncio.gather(task_a, task_b)
        assert ref_a.value.value == ref_b.value.value == "X"  # type: ignore[attr-defined]
        assert ref_a.cache_key == ref_b.cache_key
        assert not ref_b.cached  # shared from the flight, not loaded from the cache
    assert backend.exec_counts["same"] == 1
    backend.assert_no_leaks()


async def test_failure_names_the_vertex(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    ok = backend.vertex("ok", value=1)
    bad = backend.vertex("bad", ok, fail=ExecError("process exited with 2", exit_status=2))
    top = backend.vertex("top", bad, fn=lambda ins: ins)
    reporter = CollectingReporter()
    async with make_solver(backend, keys).new_job(reporter=reporter) as job:
        with pytest.raises(ExecError) as info:
            await job.solve(top.output())
    assert info.value.vertex == bad.ref()
    assert info.value.vertex is not None
    assert info.value.vertex.name == "bad"
    assert statuses(reporter, bad)[-1].error == "process exited with 2"
    assert statuses(reporter, top)[-1].error is None
    assert backend.exec_counts["top"] == 0
    backend.assert_no_leaks()


async def test_foreign_exception_becomes_internal_error_naming_the_vertex(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    bad = backend.vertex("oops", fail=ZeroDivisionError("division by zero"))
    async with make_solver(backend, keys).new_job() as job:
        with pytest.raises(InternalError, match="ZeroDivisionError") as info:
            await job.solve(bad.output())
    assert info.value.vertex == bad.ref()
    assert isinstance(info.value.__cause__, ZeroDivisionError)


async def test_failure_is_not_cached(backend: FakeBackend, keys: InMemoryCacheKeyStorage) -> None:
    attempts = 0

    def flaky(ins: list[Any]) -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ExecError("first attempt fails")
        return "fine"

    vertex = backend.vertex("flaky", fn=flaky)
    async with make_solver(backend, keys).new_job() as job:
        with pytest.raises(ExecError):
            await job.solve(vertex.output())
        ref = await job.solve(vertex.output())
        assert ref.value.value == "fine"  # type: ignore[attr-defined]


async def test_failure_cancels_sibling_work_only_that_job_needs(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    sibling_started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        sibling_started.set()
        await asyncio.Event().wait()

    async def after_sibling(ctx: VertexContext) -> None:
        await sibling_started.wait()
        raise ExecError("boom")

    slow = backend.vertex("slow", value=1, hook=forever)
    bad = backend.vertex("bad", value=2, hook=after_sibling)
    top = backend.vertex("top", slow, bad, fn=sum)
    solver = make_solver(backend, keys)
    async with asyncio.timeout(10), solver.new_job() as job:
        with pytest.raises(ExecError) as info:
            await job.solve(top.output())
        assert info.value.vertex == bad.ref()
        # fail fast: the sibling was cancelled before the job was even discarded
        await run_ready()
        assert backend.cancelled == ["slow"]
    backend.assert_no_leaks()


async def test_failure_leaves_work_another_job_needs(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    shared_started = asyncio.Event()
    gate = asyncio.Event()

    async def hold(ctx: VertexContext) -> None:
        shared_started.set()
        await gate.wait()

    async def after_shared(ctx: VertexContext) -> None:
        await shared_started.wait()
        raise ExecError("boom")

    shared = backend.vertex("shared", value=1, hook=hold)
    bad = backend.vertex("bad", value=2, hook=after_shared)
    top_a = backend.vertex("top-a", shared, bad, fn=sum)
    top_b = backend.vertex("top-b", shared, fn=lambda ins: ins[0] * 10)
    solver = make_solver(backend, keys)
    async with asyncio.timeout(10), solver.new_job() as job_a, solver.new_job() as job_b:
        task_b = asyncio.create_task(job_b.solve(top_b.output()))
        with pytest.raises(ExecError):
            await job_a.solve(top_a.output())
        await job_a.discard()
        assert not task_b.done()
        gate.set()
        ref = await task_b
        assert ref.value.value == 10  # type: ignore[attr-defined]
    assert backend.cancelled == []
    assert backend.exec_counts["shared"] == 1
    backend.assert_no_leaks()


async def test_discard_cancels_running_work_and_releases_results(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        started.set()
        await asyncio.Event().wait()

    base = backend.vertex("base", value="B")
    slow = backend.vertex("slow", base, hook=forever)
    solver = make_solver(backend, keys)
    job = solver.new_job()
    base_ref = await job.solve(base.output())
    task = asyncio.create_task(job.solve(slow.output()))
    await started.wait()
    assert backend.live  # base's result is held
    await job.discard()
    assert backend.cancelled == ["slow"]
    assert base_ref.released
    with pytest.raises(CancelledError):
        await task
    backend.assert_no_leaks()
    assert solver.statistics().active_vertices == 0
    with pytest.raises(CancelledError):
        await job.solve(base.output())


async def test_cancelling_the_caller_cancels_its_work(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        started.set()
        await asyncio.Event().wait()

    slow = backend.vertex("slow", value=1, hook=forever)
    async with make_solver(backend, keys).new_job() as job:
        task = asyncio.create_task(job.solve(slow.output()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await run_ready()
        assert backend.cancelled == ["slow"]
    backend.assert_no_leaks()


async def test_discarding_one_job_keeps_shared_work_running(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def hold(ctx: VertexContext) -> None:
        started.set()
        await gate.wait()

    shared = backend.vertex("shared", value="S", hook=hold)
    solver = make_solver(backend, keys)
    job_a, job_b = solver.new_job(), solver.new_job()
    task_a = asyncio.create_task(job_a.solve(shared.output()))
    await started.wait()
    task_b = asyncio.create_task(job_b.solve(shared.output()))
    await run_ready()  # job b now waits for the running "shared" too
    await job_a.discard()
    with pytest.raises(CancelledError):
        await task_a
    gate.set()
    ref = await task_b
    assert ref.value.value == "S"  # type: ignore[attr-defined]
    assert backend.cancelled == []
    await job_b.discard()
    backend.assert_no_leaks()


async def test_job_cancel_fails_pending_solves(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        started.set()
        await asyncio.Event().wait()

    slow = backend.vertex("slow", value=1, hook=forever)
    async with make_solver(backend, keys).new_job() as job:
        task = asyncio.create_task(job.solve(slow.output()))
        await started.wait()
        job.cancel()
        with pytest.raises(CancelledError, match="cancelled"):
            await task
    backend.assert_no_leaks()


async def test_an_unawaited_solve_cut_by_discard_is_reported_when_dropped(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    """A solve task nobody awaits, failed by ``discard``, reaches the loop's exception
    handler as soon as its last reference goes — not at a later garbage collection
    (which in a test run landed in another test, or printed "Task exception was never
    retrieved" after pytest's summary): its exception must not keep the task alive."""
    started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        started.set()
        await asyncio.Event().wait()

    slow = backend.vertex("slow", value=1, hook=forever)
    job = make_solver(backend, keys).new_job(name="dropped")
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    collecting = gc.isenabled()
    gc.disable()
    try:
        task = asyncio.create_task(job.solve(slow.output()))
        await started.wait()
        await job.discard()
        assert task.done()
        del task  # never awaited: a bug in the caller, which must show at once
        assert [c["message"] for c in reported] == ["Task exception was never retrieved"]
        exc = reported[0]["exception"]
        assert isinstance(exc, CancelledError)
        assert str(exc) == "dropped was cancelled"
    finally:
        loop.set_exception_handler(None)
        if collecting:
            gc.enable()
        gc.collect()  # a regression's task cycle goes now, not while pytest reports
    backend.assert_no_leaks()


async def test_solve_handles_are_tracked_and_clones_outlive_the_job(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    a = backend.vertex("a", value="A")
    async with make_solver(backend, keys).new_job() as job:
        first = await job.solve(a.output())
        second = await job.solve(a.output())
        await first.release()
        await first.release()  # idempotent per handle
        assert not second.released
        kept = second.clone()
    assert [second.released, kept.released] == [True, False]
    assert kept.value.value == "A"  # type: ignore[attr-defined]
    assert len(backend.live) == 1
    await kept.release()
    backend.assert_no_leaks()


async def test_ignore_cache_always_runs_and_what_reads_it_by_definition_runs_again(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    """A dependant that reads an ignore_cache vertex by definition runs again (its old
    record was made from the old output: hitting it mixed a stale result with the fresh
    one, as ``--no-cache-filter`` did to ``FROM a`` + ``RUN`` of a rebuilt stage ``a``),
    and so does everything made from it; one that reads it by content is decided by the
    content. BuildKit's ignore-cache edge publishes no keys, so its dependants cannot
    match by definition either (found by differential testing against docker 20.10's
    BuildKit)."""
    runs = 0

    def counter(ins: list[Any]) -> dict[str, int]:
        nonlocal runs
        runs += 1
        return {"n": runs, "fixed": 1}

    def graph(ignore: bool) -> tuple[Vertex, Vertex, Vertex, Vertex]:
        volatile = backend.vertex("volatile", fn=counter, ignore_cache=ignore)
        by_def = backend.vertex("by-def", volatile, fn=lambda ins: ins[0]["n"])
        after_def = backend.vertex("after-def", by_def, fn=lambda ins: ins[0] * 10)
        by_fixed = backend.vertex("by-fixed", volatile, content={0: "fixed"}, fn=lambda ins: 1)
        after_fixed = backend.vertex("after-fixed", by_fixed, fn=lambda ins: ins[0] + 1)
        by_n = backend.vertex("by-n", volatile, content={0: "n"}, fn=lambda ins: ins[0]["n"])
        top = backend.vertex("top", after_def, after_fixed, by_n, fn=lambda ins: ins)
        return volatile, after_def, after_fixed, top

    volatile, after_def, after_fixed, top = graph(ignore=True)
    for build in (1, 2, 3):
        reporter = CollectingReporter()
        async with make_solver(backend, keys).new_job(reporter=reporter) as job:
            ref = await job.solve(top.output())
            assert ref.value.value == [build * 10, 2, build]  # type: ignore[attr-defined]
        assert backend.exec_counts["volatile"] == build
        assert not statuses(reporter, volatile)[-1].cached
        assert not statuses(reporter, after_def)[-1].cached
        assert statuses(reporter, after_fixed)[-1].cached == (build > 1)
    assert backend.exec_counts == {
        "volatile": 3,
        "by-def": 3,
        "after-def": 3,
        "by-fixed": 1,
        "after-fixed": 1,
        "by-n": 3,
        "top": 3,
    }
    # the same graph without ignore_cache finds the last run's results, dependants too
    *_, plain_top = graph(ignore=False)
    assert plain_top.digest == top.digest
    async with make_solver(backend, keys).new_job() as job:
        ref = await job.solve(plain_top.output())
        assert ref.cached
        assert ref.value.value == [30, 2, 3]  # type: ignore[attr-defined]
    assert backend.exec_counts["volatile"] == 3
    backend.assert_no_leaks()


async def test_ignore_cache_runs_once_per_job(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    volatile = backend.vertex("volatile", value=1, ignore_cache=True)
    left = backend.vertex("left", volatile, fn=lambda ins: ins[0])
    right = backend.vertex("right", volatile, fn=lambda ins: ins[0])
    async with make_solver(backend, keys).new_job() as job:
        await job.solve(left.output())
        await job.solve(right.output())
        await job.solve(volatile.output())
    assert backend.exec_counts["volatile"] == 1


async def test_pruned_result_falls_back_to_exec(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    base = backend.vertex("base", value=1)
    mid = backend.vertex("mid", base, fn=lambda ins: ins[0] + 1)
    top = backend.vertex("top", mid, fn=lambda ins: ins[0] + 1)
    async with make_solver(backend, keys).new_job() as job:
        top_id = (await job.solve(top.output())).id
        mid_id = (await job.solve(mid.output())).id
    backend.prune(top_id, mid_id)
    solver = make_solver(backend, keys)
    reporter = CollectingReporter()
    async with solver.new_job(reporter=reporter) as job:
        ref = await job.solve(top.output())
        assert ref.value.value == 3  # type: ignore[attr-defined]
        assert not ref.cached
    assert backend.exec_counts == {"base": 1, "mid": 2, "top": 2}
    assert solver.statistics().pruned == 2
    final = statuses(reporter, top)[-1]
    assert not final.cached
    assert final.completed is not None
    # the record was replaced: next time it loads again
    async with make_solver(backend, keys).new_job() as job:
        assert (await job.solve(top.output())).cached
    assert backend.exec_counts == {"base": 1, "mid": 2, "top": 2}
    backend.assert_no_leaks()


async def test_content_key_hits_when_an_unrelated_part_changed(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    def graph(files: dict[str, str]) -> tuple[Vertex, Vertex, Vertex]:
        context = backend.vertex("context", value=files)
        copy = backend.vertex(
            "copy", context, content={0: "app.py"}, fn=lambda ins: {"app.py": ins[0]["app.py"]}
        )
        run = backend.vertex("run", copy, fn=lambda ins: "built " + ins[0]["app.py"])
        return context, copy, run

    _, _, run1 = graph({"app.py": "print(1)", "README": "v1"})
    async with make_solver(backend, keys).new_job() as job:
        await job.solve(run1.output())
    assert backend.exec_counts == {"context": 1, "copy": 1, "run": 1}

    context2, copy2, run2 = graph({"app.py": "print(1)", "README": "v2"})
    assert context2.digest != run1.inputs[0].vertex.inputs[0].vertex.digest
    reporter = CollectingReporter()
    async with make_solver(backend, keys).new_job(reporter=reporter) as job:
        ref = await job.solve(run2.output())
        assert ref.value.value == "built print(1)"  # type: ignore[attr-defined]
    assert backend.exec_counts == {"context": 2, "copy": 1, "run": 1}
    assert statuses(reporter, copy2)[-1].cached
    assert statuses(reporter, run2)[-1].cached

    # the definition key was linked: the same graph again does not even load the context
    backend.loads.clear()
    async with make_solver(backend, keys).new_job() as job:
        ref = await job.solve(run2.output())
    assert backend.loads == [ref.id]
    assert backend.exec_counts == {"context": 2, "copy": 1, "run": 1}

    # a change to the part that is read does invalidate
    _, _, run3 = graph({"app.py": "print(2)", "README": "v2"})
    async with make_solver(backend, keys).new_job() as job:
        ref = await job.solve(run3.output())
        assert ref.value.value == "built print(2)"  # type: ignore[attr-defined]
    assert backend.exec_counts == {"context": 3, "copy": 2, "run": 2}
    backend.assert_no_leaks()


async def test_selector_is_part_of_the_definition_key(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    base = backend.vertex("base", value={"a": 1, "b": 2})
    read_a = backend.vertex("read", base, selectors={0: "a"}, definition="read")
    read_b = backend.vertex("read", base, selectors={0: "b"}, definition="read")
    assert read_a.op.__class__ is FakeOp
    async with make_solver(backend, keys).new_job() as job:
        ref_a = await job.solve(read_a.output())
    async with make_solver(backend, keys).new_job() as job:
        ref_b = await job.solve(read_b.output())
    assert ref_a.cache_key != ref_b.cache_key
    assert backend.exec_counts["read"] == 2


async def test_multiple_outputs(backend: FakeBackend, keys: InMemoryCacheKeyStorage) -> None:
    split = backend.vertex("split", value=None, fn=lambda ins: ("left", "right"), outputs=2)
    use = backend.vertex("use", split.output(1), split.output(0), fn=lambda ins: "+".join(ins))
    for _ in range(2):
        async with make_solver(backend, keys).new_job() as job:
            ref = await job.solve(use.output())
            assert ref.value.value == "right+left"  # type: ignore[attr-defined]
            assert (await job.solve(split.output(1))).value.value == "right"  # type: ignore[attr-defined]
    assert backend.exec_counts == {"split": 1, "use": 1}
    backend.assert_no_leaks()


async def test_bad_output_index_names_the_vertex(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    one = backend.vertex("one", value=1)
    wrong = backend.vertex("wrong", Edge(vertex=one, index=2), fn=lambda ins: ins)
    async with make_solver(backend, keys).new_job() as job:
        with pytest.raises(InternalError, match="output 2") as info:
            await job.solve(wrong.output())
        assert info.value.vertex == wrong.ref()
        with pytest.raises(InternalError, match="output 3") as info:
            await job.solve(one.output(3))
        assert info.value.vertex == one.ref()
    backend.assert_no_leaks()


async def test_cache_map_with_wrong_number_of_deps_names_the_vertex(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    class BadMap(FakeOp):
        async def cache_map(self, ctx: VertexContext) -> CacheMap:
            return CacheMap(digest="sha256:x", deps=self.deps[:1])

    a = backend.vertex("a", value=1)
    proto = backend.vertex("bad", a, a.output(), selectors={0: "x", 1: "y"})
    assert isinstance(proto.op, FakeOp)
    op = BadMap(
        backend,
        "bad",
        definition="bad",
        outputs=1,
        fn=None,
        deps=proto.op.deps,
        hook=None,
        fail=None,
        limit=None,
    )
    bad = Vertex(digest=proto.digest, name="bad", inputs=proto.inputs, op=op)
    async with make_solver(backend, keys).new_job() as job:
        with pytest.raises(InternalError, match="1 deps for 2 inputs") as info:
            await job.solve(bad.output())
    assert info.value.vertex == bad.ref()


async def test_a_digest_cycle_is_refused(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    inner = backend.vertex("inner", value=1)
    looped = Vertex(digest=inner.digest, name="outer", inputs=(inner.output(),), op=inner.op)
    async with make_solver(backend, keys).new_job() as job:
        with pytest.raises(InternalError, match="depends on itself"):
            await job.solve(looped.output())


async def test_ops_report_logs_and_progress_and_read_job_values(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    seen: list[tuple[str, ...]] = []
    gate = asyncio.Event()
    started = asyncio.Event()

    async def chatty(ctx: VertexContext) -> None:
        started.set()
        await gate.wait()
        seen.append(ctx.values(SESSION))
        ctx.log(b"hello\n")
        ctx.log(b"oops\n", stream=2)
        ctx.progress("pull", "pulling", 5, total=10)

    vertex = backend.vertex("chatty", value=1, hook=chatty)
    solver = make_solver(backend, keys)
    rep_a, rep_b = CollectingReporter(), CollectingReporter()
    async with (
        solver.new_job(reporter=rep_a, values={SESSION: "s-a"}) as job_a,
        solver.new_job(reporter=rep_b, values={SESSION: "s-b"}) as job_b,
    ):
        task = asyncio.create_task(job_a.solve(vertex.output()))
        await started.wait()
        job_b.load(vertex)
        gate.set()
        await task
    assert seen == [("s-a", "s-b")]
    for reporter in (rep_a, rep_b):
        assert reporter.logs(vertex.digest) == b"hello\noops\n"
        logs = [e for e in reporter.events if isinstance(e, VertexLog)]
        assert [e.stream for e in logs] == [1, 2]
        progress = [e for e in reporter.events if isinstance(e, VertexProgress)]
        assert [(p.id, p.current, p.total) for p in progress] == [("pull", 5, 10)]


async def test_solver_reporter_sees_every_job(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    everything = CollectingReporter()
    a = backend.vertex("a", value=1)
    solver = make_solver(backend, keys, reporter=everything)
    async with solver.new_job() as job:
        await job.solve(a.output())
    assert [s.completed is not None for s in everything.statuses()][-1]


async def test_detached_context_for_unit_testing_ops(backend: FakeBackend) -> None:
    reporter = CollectingReporter()
    vertex = backend.vertex("v", value=1)
    ctx = VertexContext.detached(vertex, reporter=reporter, values={SESSION: "abc"})
    assert ctx.values(SESSION) == ("abc",)
    assert ctx.values(JobValue[int]("other")) == ()
    ctx.log(b"x")
    assert reporter.logs(vertex.digest) == b"x"
    assert not ctx.cancelled.is_set()


async def test_cancellation_sets_the_thread_event(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    contexts: list[VertexContext] = []
    started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        contexts.append(ctx)
        started.set()
        await asyncio.Event().wait()

    vertex = backend.vertex("slow", value=1, hook=forever)
    job = make_solver(backend, keys).new_job()
    task = asyncio.create_task(job.solve(vertex.output()))
    await started.wait()
    await job.discard()
    with contextlib.suppress(CancelledError):
        await task
    assert contexts[0].cancelled.is_set()


def test_statistics_and_bad_parallelism(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    with pytest.raises(ValueError, match="max_parallelism"):
        make_solver(backend, keys, max_parallelism=0)
    stats = make_solver(backend, keys).statistics()
    assert stats.execs == stats.cache_hits == stats.active_vertices == 0


async def test_discard_while_saving_releases_the_new_results(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    saving = asyncio.Event()

    async def stuck() -> None:
        saving.set()
        await asyncio.Event().wait()

    backend.save_hook = stuck
    vertex = backend.vertex("v", value=1)
    job = make_solver(backend, keys).new_job()
    task = asyncio.create_task(job.solve(vertex.output()))
    await saving.wait()
    assert len(backend.live) == 1  # exec made it; it is not recorded yet
    await job.discard()
    with pytest.raises(CancelledError):
        await task
    backend.assert_no_leaks()
    assert len(keys) == 0  # nothing was recorded for a result that was never saved


async def test_a_joined_flight_that_fails_marks_both_vertices(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def hold_then_fail(ctx: VertexContext) -> None:
        started.set()
        await gate.wait()
        raise ExecError("nope")

    one = backend.vertex("one", value=1, hook=hold_then_fail)
    two = Vertex(digest=one.digest + "-2", name="two", op=one.op)
    solver = make_solver(backend, keys)
    rep_b = SignallingReporter(lambda s: s.digest == two.digest and s.started is not None)
    async with solver.new_job() as job_a, solver.new_job(reporter=rep_b) as job_b:
        task_a = asyncio.create_task(job_a.solve(one.output()))
        await started.wait()
        task_b = asyncio.create_task(job_b.solve(two.output()))
        await rep_b.signal.wait()  # "two" joined the running flight
        gate.set()
        results = await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert all(isinstance(r, ExecError) for r in results)
    assert backend.exec_counts["one"] == 1
    assert statuses(rep_b, two)[-1].error == "nope"


async def test_an_ignore_cache_job_does_not_share_a_plain_jobs_vertex(
    backend: FakeBackend, keys: InMemoryCacheKeyStorage
) -> None:
    """A build with ``--no-cache`` (or ``--no-cache-filter``) while another build of the
    same steps is active (a daemon's clients) runs them: it took the other job's vertex,
    which had hit the cache or run before, and got that old result. As in BuildKit's
    job list, an ignore_cache vertex does not take an active plain one, while a plain
    one takes an active ignore_cache one; a dependant takes another job's vertex only
    over the same inputs (a plain ``top`` over a ``base`` made afresh runs too)."""
    runs = 0

    def counter(ins: list[Any]) -> int:
        nonlocal runs
        runs += 1
        return runs

    def graph(ignore_base: bool, ignore_top: bool) -> Vertex:
        base = backend.vertex("base", fn=counter, ignore_cache=ignore_base)
        return backend.vertex("top", base, fn=lambda ins: ins[0] * 10, ignore_cache=ignore_top)

    def value(ref: Any) -> int:
        return int(ref.value.value)

    solver = make_solver(backend, keys)
    plain = solver.new_job()
    assert value(await plain.solve(graph(False, False).output())) == 10
    async with solver.new_job() as filtered:
        # --no-cache-filter of base's stage: top reads a fresh base, so it runs
        assert value(await filtered.solve(graph(True, False).output())) == 20
    async with solver.new_job() as fresh:
        ref = await fresh.solve(graph(True, True).output())
        assert not ref.cached
        assert value(ref) == 30
        async with solver.new_job() as again:
            assert value(await again.solve(graph(False, False).output())) == 10
        await plain.discard()
        async with solver.new_job() as later:
            # only the fresh run's vertices are active: a plain job takes them
            assert value(await later.solve(graph(False, False).output())) == 30
    assert backend.exec_counts == {"base": 3, "top": 3}
    assert not solver._states
    assert solver.statistics().active_vertices == 0
    backend.assert_no_leaks()
