"""Work that will surely be needed starts as soon as that is known, not when a vertex
gets to it: independent branches run at the same time even when one of them is only
needed for a key that waits on the other (a copy from one stage onto a copy from
another). Ordering is shown with barriers — an op that needs the other to be running
at the same time to finish — under ``asyncio.timeout``: run one after the other, they
never meet and the test fails by timing out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dockyard.core import CancelledError, CollectingReporter, ExecError
from dockyard.solver import (
    InMemoryCacheKeyStorage,
    Solver,
    Vertex,
    VertexContext,
    cache_chain,
)
from dockyard.testing.solver import FakeBackend, Hook

from .test_cache_sources import ExportedSource

TIMEOUT = 10  # seconds; only reached when the work runs one step after the other


def meeting(parties: int = 2) -> Hook:
    """A hook that returns only once ``parties`` execs wait in it at the same time."""
    barrier = asyncio.Barrier(parties)

    async def meet(ctx: VertexContext) -> None:
        await barrier.wait()

    return meet


def merge(ins: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in ins:
        out.update(value)
    return out


def stages(backend: FakeBackend, left: Hook | None, right: Hook | None) -> dict[str, Vertex]:
    """The bench's ``parallel`` Dockerfile as fake ops::

    FROM base AS left       RUN left      (hook: left)
    FROM base AS right      RUN right     (hook: right)
    FROM base
    COPY --from=left /left /       (reads RUN left by content)
    COPY --from=right /right /     (onto the first copy; reads RUN right by content)
    """
    base = backend.vertex("base", value={"os": "busybox"})
    run_left = backend.vertex("run-left", base, fn=lambda ins: {**ins[0], "left": 1}, hook=left)
    run_right = backend.vertex("run-right", base, fn=lambda ins: {**ins[0], "right": 2}, hook=right)
    copy_left = backend.vertex(
        "copy-left",
        base,
        run_left,
        content={1: "left"},
        fn=lambda ins: {**ins[0], "left": ins[1]["left"]},
    )
    copy_right = backend.vertex(
        "copy-right",
        copy_left,
        run_right,
        content={1: "right"},
        fn=lambda ins: {**ins[0], "right": ins[1]["right"]},
    )
    return {v.name: v for v in (base, run_left, run_right, copy_left, copy_right)}


async def test_the_stages_of_a_copy_chain_run_at_the_same_time() -> None:
    backend = FakeBackend()
    keys = InMemoryCacheKeyStorage()
    hook = meeting()
    graph = stages(backend, hook, hook)
    async with (
        asyncio.timeout(TIMEOUT),
        Solver(result_storage=backend, key_storage=keys).new_job() as job,
    ):
        ref = await job.solve(graph["copy-right"].output())
        assert ref.value.value == {"os": "busybox", "left": 1, "right": 2}  # type: ignore[attr-defined]
    assert all(count == 1 for count in backend.exec_counts.values())
    assert len(backend.exec_counts) == 5
    backend.assert_no_leaks()

    # a no-op rebuild still loads only the target (nothing upstream, nothing run)
    backend.loads.clear()
    solver = Solver(result_storage=backend, key_storage=keys)
    async with solver.new_job() as job:
        ref = await job.solve(graph["copy-right"].output())
        assert backend.loads == [ref.id]
    assert solver.statistics().execs == 0
    backend.assert_no_leaks()


async def test_two_inputs_read_by_content_run_at_the_same_time() -> None:
    # top reads `a` and `b` by content; a's key needs `l` run first (a reads it by
    # content), b runs only to be checksummed: l and b must run together
    backend = FakeBackend()
    hook = meeting()
    l_ = backend.vertex("l", value={"x": 1}, hook=hook)
    a = backend.vertex("a", l_, content={0: "x"}, fn=lambda ins: {"a": ins[0]["x"]})
    b = backend.vertex("b", value={"b": 2}, hook=hook)
    top = backend.vertex("top", a, b, content={0: None, 1: None}, fn=merge)
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    async with asyncio.timeout(TIMEOUT), solver.new_job() as job:
        ref = await job.solve(top.output())
        assert ref.value.value == {"a": 1, "b": 2}  # type: ignore[attr-defined]
    assert dict(backend.exec_counts) == {"l": 1, "a": 1, "b": 1, "top": 1}
    backend.assert_no_leaks()


async def test_an_input_read_by_definition_runs_early_when_the_vertex_must_run() -> None:
    # `top` reads `q` by definition only: q is needed only to run top, and top's key
    # waits for `a`'s, which waits for `l` to run. q has no record, so nothing made from
    # its key can hit: top will run, and q starts at once, beside l.
    backend = FakeBackend()
    hook = meeting()
    l_ = backend.vertex("l", value={"x": 1}, hook=hook)
    a = backend.vertex("a", l_, content={0: "x"}, fn=lambda ins: {"a": ins[0]["x"]})
    q0 = backend.vertex("q0", value={"q": 0})
    q = backend.vertex("q", q0, fn=lambda ins: {"q": 3}, hook=hook)
    top = backend.vertex("top", a, q, fn=merge)
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    async with asyncio.timeout(TIMEOUT), solver.new_job() as job:
        ref = await job.solve(top.output())
        assert ref.value.value == {"a": 1, "q": 3}  # type: ignore[attr-defined]
    assert all(count == 1 for count in backend.exec_counts.values())
    backend.assert_no_leaks()


async def test_a_branch_needed_only_below_a_vertex_that_runs_starts_early() -> None:
    # as above, one level down: `mid` (plain on q) must run for top, so q must too
    backend = FakeBackend()
    hook = meeting()
    l_ = backend.vertex("l", value={"x": 1}, hook=hook)
    a = backend.vertex("a", l_, content={0: "x"}, fn=lambda ins: {"a": ins[0]["x"]})
    q = backend.vertex("q", value={"q": 3}, hook=hook)
    mid = backend.vertex("mid", q, fn=lambda ins: {"mid": ins[0]["q"]})
    top = backend.vertex("top", a, mid, fn=merge)
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    async with asyncio.timeout(TIMEOUT), solver.new_job() as job:
        ref = await job.solve(top.output())
        assert ref.value.value == {"a": 1, "mid": 3}  # type: ignore[attr-defined]
    backend.assert_no_leaks()


async def test_an_input_a_record_links_to_is_not_run_ahead_of_need() -> None:
    # A build imported in min mode has only the final copy's result: run-left and
    # run-right have no record. The first copy's key needs run-left to run; the final
    # copy then hits by its definition key, so run-right is never needed — and its link
    # key, saved with the final copy's record and exported with it, keeps it from being
    # started ahead of need: in the importing build, and in a later one that finds the
    # imported record locally.
    old = FakeBackend()
    async with Solver(result_storage=old, key_storage=InMemoryCacheKeyStorage()).new_job() as job:
        target = stages(old, None, None)["copy-right"]
        await job.solve(target.output())
        chain = await cache_chain(job, [target.output()], all_results=False)
    source = ExportedSource(chain, old)
    assert len(source.values) == 1  # the final result only

    backend = FakeBackend()
    source.target = backend
    keys = InMemoryCacheKeyStorage()
    graph = stages(backend, None, None)
    reporter = CollectingReporter()
    solver = Solver(result_storage=backend, key_storage=keys)
    async with solver.new_job(cache_sources=[source], reporter=reporter) as job:
        ref = await job.solve(graph["copy-right"].output())
        assert ref.value.value == {"os": "busybox", "left": 1, "right": 2}  # type: ignore[attr-defined]
    # run-left ran for the first copy's content key (and base for run-left); nothing else
    assert dict(backend.exec_counts) == {"base": 1, "run-left": 1}
    assert not any(s.error for s in reporter.statuses())  # nothing started, nothing cancelled
    backend.assert_no_leaks()

    again = FakeBackend()
    async with Solver(result_storage=backend, key_storage=keys).new_job() as job:
        await job.solve(stages(again, None, None)["copy-right"].output())
    assert dict(again.exec_counts) == {}
    backend.assert_no_leaks()


async def test_work_started_ahead_that_fails_fails_at_once_and_once() -> None:
    backend = FakeBackend()
    left_started = asyncio.Event()

    async def forever(ctx: VertexContext) -> None:
        left_started.set()
        await asyncio.Event().wait()

    async def fail_after_left(ctx: VertexContext) -> None:
        await left_started.wait()
        raise ExecError("right failed")

    graph = stages(backend, forever, fail_after_left)
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    async with asyncio.timeout(TIMEOUT), solver.new_job() as job:
        with pytest.raises(ExecError, match="right failed") as info:
            await job.solve(graph["copy-right"].output())
        assert info.value.vertex == graph["run-right"].ref()
        for _ in range(5):
            await asyncio.sleep(0)
        assert backend.cancelled == ["run-left"]  # failed fast: the rest was cancelled
    assert backend.exec_counts["run-right"] == 1
    backend.assert_no_leaks()


async def test_discarding_the_job_cancels_work_started_ahead() -> None:
    backend = FakeBackend()
    running: set[str] = set()
    both = asyncio.Event()

    def hold(name: str) -> Hook:
        async def hook(ctx: VertexContext) -> None:
            running.add(name)
            if len(running) == 2:
                both.set()
            await asyncio.Event().wait()

        return hook

    graph = stages(backend, hold("left"), hold("right"))
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    job = solver.new_job()
    task = asyncio.create_task(job.solve(graph["copy-right"].output()))
    async with asyncio.timeout(TIMEOUT):
        await both.wait()
    await job.discard()
    assert sorted(backend.cancelled) == ["run-left", "run-right"]
    assert task.done()
    with pytest.raises(CancelledError, match="was cancelled"):
        task.result()  # retrieved: an unawaited failed task is reported as a bug
    backend.assert_no_leaks()
    assert solver.statistics().active_vertices == 0
