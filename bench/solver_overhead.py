"""Scheduler overhead per cached vertex: a no-op rebuild of a 10,000-vertex random DAG.

A first build runs every (fake, instant) op and records the cache; then each measured run
makes a new Solver and Job (as a restarted engine would) and solves the graph's single
top vertex again: every vertex's cache map is computed and looked up, nothing runs, and
only the top's result is loaded. What remains is the solver's own cost — walking the
graph, key hashing, lookups, tasks, progress events — divided by the number of vertices.
Reported for the in-memory and the SQLite key storage; the target is < 100 µs/vertex.

Usage: ``python -m bench.solver_overhead [--vertices N] [--runs N] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dockyard.core import CollectingReporter
from dockyard.solver import (
    CacheKeyStorage,
    InMemoryCacheKeyStorage,
    Solver,
    SqliteCacheKeyStorage,
    Vertex,
)
from dockyard.testing.solver import FakeBackend, random_dag

TARGET_US = 100.0


def _graph(backend: FakeBackend, size: int) -> tuple[Vertex, int]:
    vertices = random_dag(backend, size - 1, seed=2024)
    used = {edge.vertex.digest for v in vertices for edge in v.inputs}
    top = backend.vertex("top", *(v for v in vertices if v.digest not in used), fn=len)
    return top, len(vertices) + 1


async def _solve(backend: FakeBackend, keys: CacheKeyStorage, top: Vertex) -> float:
    start = time.perf_counter()
    solver = Solver(result_storage=backend, key_storage=keys)
    async with solver.new_job(reporter=CollectingReporter()) as job:
        await job.solve(top.output())
    return time.perf_counter() - start


def _measure(
    name: str,
    make_keys: Callable[[], CacheKeyStorage],
    size: int,
    runs: int,
    profile: bool,
) -> float:
    backend = FakeBackend()
    top, count = _graph(backend, size)
    keys = make_keys()
    cold = asyncio.run(_solve(backend, keys, top))
    assert sum(backend.exec_counts.values()) == count, "first build must run every vertex"
    samples = []
    for _ in range(runs):
        gc.collect()
        samples.append(asyncio.run(_solve(backend, keys, top)))
    assert sum(backend.exec_counts.values()) == count, "a cached build must run nothing"
    best = min(samples) / count * 1e6
    median = statistics.median(samples) / count * 1e6
    verdict = "ok" if median < TARGET_US else "OVER TARGET"
    print(
        f"{name:<9} {count} vertices: cached {median:6.1f} µs/vertex median,"
        f" {best:6.1f} best ({runs} runs); first build {cold / count * 1e6:6.1f} µs/vertex"
        f"  [{verdict}: target < {TARGET_US:.0f}]"
    )
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(_solve(backend, keys, top))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    if isinstance(keys, SqliteCacheKeyStorage):
        keys.close()
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one cached run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-solver-") as tmp:
        db = Path(tmp) / "cache.db"
        results = [
            _measure("in-memory", InMemoryCacheKeyStorage, args.vertices, args.runs, args.profile),
            _measure(
                "sqlite", lambda: SqliteCacheKeyStorage(db), args.vertices, args.runs, args.profile
            ),
        ]
    if max(results) >= TARGET_US:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
