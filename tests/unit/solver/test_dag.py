"""Whole graphs: a 1,000-vertex DAG against SQLite, and random graphs with hypothesis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.core import CollectingReporter
from dockyard.solver import InMemoryCacheKeyStorage, Solver, SqliteCacheKeyStorage, Vertex
from dockyard.testing.solver import FakeBackend, random_dag


def sinks(vertices: list[Vertex]) -> list[Vertex]:
    used = {edge.vertex.digest for v in vertices for edge in v.inputs}
    return [v for v in vertices if v.digest not in used]


async def test_thousand_vertex_dag_runs_each_once_then_nothing(tmp_path: Path) -> None:
    backend = FakeBackend()
    graph = random_dag(backend, 1000, seed=7)
    top = backend.vertex("top", *sinks(graph), fn=len)
    everything = [*graph, top]
    path = tmp_path / "cache.db"

    with SqliteCacheKeyStorage(path) as keys:
        solver = Solver(result_storage=backend, key_storage=keys, max_parallelism=8)
        async with solver.new_job() as job:
            ref = await job.solve(top.output())
            assert ref.value.value == len(sinks(graph))  # type: ignore[attr-defined]
    assert backend.exec_counts == {v.name: 1 for v in everything}
    assert solver.statistics().cache_misses == len(everything)
    backend.assert_no_leaks()

    # a new solver (a restart) against the same file: nothing runs, all is cached
    reporter = CollectingReporter()
    with SqliteCacheKeyStorage(path) as keys:
        solver = Solver(result_storage=backend, key_storage=keys)
        async with solver.new_job(reporter=reporter) as job:
            for vertex in (top, *graph[::97]):
                await job.solve(vertex.output())
    assert sum(backend.exec_counts.values()) == len(everything)
    assert solver.statistics().execs == 0
    final: dict[str, Any] = {}
    for status in reporter.statuses():
        final[status.digest] = status
    assert len(final) == len(everything)
    assert all(status.cached and status.completed is not None for status in final.values())
    backend.assert_no_leaks()


def reference_values(vertices: list[Vertex]) -> dict[str, Any]:
    """What each fake vertex computes, evaluated without a solver."""
    values: dict[str, Any] = {}
    for vertex in vertices:
        values[vertex.digest] = (vertex.name, tuple(values[e.vertex.digest] for e in vertex.inputs))
    return values


def _reference_op(name: str) -> Callable[[list[Any]], Any]:
    def fn(ins: list[Any]) -> Any:
        return (name, tuple(ins))

    return fn


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[list[int], bool]]:
    """Vertex n: (inputs among 0..n-1, ignore_cache)."""
    size = draw(st.integers(1, 25))
    shape = []
    for n in range(size):
        inputs = draw(st.lists(st.integers(0, n - 1), max_size=3)) if n else []
        shape.append((inputs, draw(st.booleans()) and draw(st.booleans())))
    return shape


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=dags(),
    picks=st.lists(st.integers(0, 1000), min_size=1, max_size=4),
    pruned=st.sets(st.integers(0, 1000), max_size=5),
    parallelism=st.sampled_from([None, 1, 2]),
)
def test_random_graphs_compute_the_right_values_once(
    shape: list[tuple[list[int], bool]],
    picks: list[int],
    pruned: set[int],
    parallelism: int | None,
) -> None:
    backend = FakeBackend()
    vertices: list[Vertex] = []
    for n, (inputs, ignore) in enumerate(shape):
        vertices.append(
            backend.vertex(
                f"v{n}",
                *(vertices[i] for i in inputs),
                fn=_reference_op(f"v{n}"),
                ignore_cache=ignore,
            )
        )
    expected = reference_values(vertices)
    targets = [vertices[p % len(vertices)] for p in picks]
    keys = InMemoryCacheKeyStorage()

    async def build(jobs: int) -> list[Any]:
        solver = Solver(result_storage=backend, key_storage=keys, max_parallelism=parallelism)
        out: list[Any] = []
        job_list = [solver.new_job() for _ in range(jobs)]
        try:
            refs = await asyncio.gather(
                *(job.solve(t.output()) for job in job_list for t in targets)
            )
            out = [ref.value.value for ref in refs]  # type: ignore[attr-defined]
        finally:
            for job in job_list:
                await job.discard()
        assert solver.statistics().active_vertices == 0
        return out

    # two concurrent jobs over the same targets: every vertex runs at most once
    values = asyncio.run(build(2))
    assert values == [expected[t.digest] for t in targets] * 2
    assert all(count == 1 for count in backend.exec_counts.values())
    backend.assert_no_leaks()

    # prune some results; rebuilding reruns only what it must, with the same values
    saved = sorted(backend.saved)
    backend.prune(*(saved[i % len(saved)] for i in pruned))
    before = dict(backend.exec_counts)
    values = asyncio.run(build(1))
    assert values == [expected[t.digest] for t in targets]
    for vertex in vertices:
        ran = backend.exec_counts[vertex.name] - before.get(vertex.name, 0)
        assert ran <= 1
        if vertex.options.ignore_cache and before.get(vertex.name):
            assert ran == 1  # it was needed before, so it is needed (and run) again
    backend.assert_no_leaks()
