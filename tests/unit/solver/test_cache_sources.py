"""Imported caches (``CacheSource``) and the export walk (``cache_chain``) on fake vertices:
a graph solved on one solver is exported, then solved on an empty one from the export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dockyard.core import BuildWarning, CollectingReporter
from dockyard.solver import (
    CacheChainRecord,
    CacheRecord,
    InMemoryCacheKeyStorage,
    Result,
    Solver,
    Vertex,
    VertexContext,
    cache_chain,
)
from dockyard.testing.solver import FakeBackend


class ExportedSource:
    """A CacheSource made from another solver's chain: keys → records whose result ids
    name values copied out of that solver's backend."""

    def __init__(self, chain: Sequence[CacheChainRecord], backend: FakeBackend) -> None:
        self.values: dict[str, Any] = {}
        self.records: dict[str, CacheRecord] = {}
        self.loaded: list[str] = []
        self.broken: set[str] = set()
        for entry in chain:
            if entry.record is None:
                continue
            ids = []
            for i, rid in enumerate(entry.record.result_ids):
                if i in entry.outputs:
                    self.values["x" + rid] = backend.saved[rid]
                ids.append("x" + rid)
            record = CacheRecord(
                id="remote-" + entry.record.id,
                canonical_key=entry.canonical_key,
                result_ids=tuple(ids),
                created=entry.record.created,
            )
            for key in entry.keys:
                self.records[key] = record

    async def lookup(self, key: str) -> CacheRecord | None:
        return self.records.get(key)

    async def load(self, result_id: str, ctx: VertexContext) -> Result | None:
        self.loaded.append(result_id)
        if result_id in self.broken:
            ctx.warn(f"blob of {result_id} is corrupt")
            return None
        if result_id not in self.values:
            return None
        return self.target.new_result(self.values[result_id])

    target: FakeBackend


def graph(backend: FakeBackend, build: int) -> tuple[Vertex, Vertex, Vertex]:
    """base → run; context (unique per build, like a local source) → copy (by content,
    onto run) → final run."""
    base = backend.vertex("base", value={"os": "busybox"})
    run = backend.vertex("run", base, fn=lambda ins: {**ins[0], "run": "1"})
    context = backend.vertex(
        "context", value={"app": "v1"}, definition=f"context-{build}", volatile=True
    )
    copy = backend.vertex(
        "copy", run, context, content={1: None}, fn=lambda ins: {**ins[0], **ins[1]}
    )
    final = backend.vertex("final", copy, fn=lambda ins: {**ins[0], "final": "1"})
    return run, copy, final


async def export(all_results: bool) -> tuple[list[CacheChainRecord], FakeBackend, Any]:
    backend = FakeBackend()
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    _run, _copy, final = graph(backend, 1)
    async with solver.new_job() as job:
        ref = await job.solve(final.output())
        value = ref.value.value  # type: ignore[attr-defined]
        chain = await cache_chain(job, [final.output()], all_results=all_results)
    backend.assert_no_leaks()
    return chain, backend, value


async def test_chain_lists_every_vertex_inputs_first_with_keys_and_links() -> None:
    chain, _backend, _ = await export(all_results=True)
    names = [entry.name for entry in chain]
    # the context's key is unique to the build: left out, and the copy's definition key
    # (made from it) too; the copy's content key stays
    assert set(names) == {"base", "run", "copy", "final"}
    position = {name: i for i, name in enumerate(names)}
    for entry in chain:
        for link in entry.inputs:
            assert link is None or link.record < position[entry.name]
    copy = chain[position["copy"]]
    assert [chain[link.record].name if link else None for link in copy.inputs] == ["run", None]
    # the content key, then the link key of "run" (none for the context: unique key)
    assert len(copy.keys) == 2
    final = chain[position["final"]]
    assert len(final.keys) == 1  # canonical = definition key (one input: no link key)
    assert all(entry.record is not None and entry.outputs == (0,) for entry in chain)


async def test_min_mode_exports_only_the_final_results() -> None:
    chain, _backend, _ = await export(all_results=False)
    with_results = [entry.name for entry in chain if entry.record is not None]
    assert with_results == ["final"]
    assert len(chain) == 4  # every key is there, to link the final record


async def rebuild(
    source: ExportedSource, *, build: int = 2
) -> tuple[FakeBackend, InMemoryCacheKeyStorage, Any, CollectingReporter]:
    backend = FakeBackend()
    source.target = backend
    storage = InMemoryCacheKeyStorage()
    solver = Solver(result_storage=backend, key_storage=storage)
    reporter = CollectingReporter()
    _run, _copy, final = graph(backend, build)
    async with solver.new_job(cache_sources=[source], reporter=reporter) as job:
        ref = await job.solve(final.output())
        value = ref.value.value  # type: ignore[attr-defined]
    backend.assert_no_leaks()
    assert solver.statistics().imported == len(source.loaded) - len(source.broken)
    return backend, storage, value, reporter


async def test_an_empty_solver_builds_from_the_export_loading_the_final_result_only() -> None:
    for all_results in (True, False):
        chain, old, value = await export(all_results)
        source = ExportedSource(chain, old)
        backend, storage, rebuilt, _ = await rebuild(source)
        assert rebuilt == value
        # the context has a new key every build: it runs, the copy hits by content
        assert dict(backend.exec_counts) == {"context": 1}
        assert len(source.loaded) == 1  # the final result only
        # the loaded result was recorded locally: the next build needs no source
        final_keys = next(e for e in chain if e.name == "final").keys
        for key in final_keys:
            assert await storage.lookup(key) is not None
        again = FakeBackend()
        solver = Solver(result_storage=backend, key_storage=storage)
        _r, _c, final = graph(again, 3)
        async with solver.new_job() as job:
            await job.solve(final.output())
        assert dict(again.exec_counts) == {"context": 1}


async def test_a_changed_input_reruns_only_what_depends_on_it() -> None:
    chain, old, _ = await export(all_results=True)
    source = ExportedSource(chain, old)
    backend = FakeBackend()
    source.target = backend
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    base = backend.vertex("base", value={"os": "busybox"})
    run = backend.vertex("run", base, fn=lambda ins: {**ins[0], "run": "1"})
    context = backend.vertex("context", value={"app": "v2"}, definition="context-2", volatile=True)
    copy = backend.vertex(
        "copy", run, context, content={1: None}, fn=lambda ins: {**ins[0], **ins[1]}
    )
    final = backend.vertex("final", copy, fn=lambda ins: {**ins[0], "final": "1"})
    async with solver.new_job(cache_sources=[source]) as job:
        ref = await job.solve(final.output())
        assert ref.value.value == {  # type: ignore[attr-defined]
            "os": "busybox",
            "run": "1",
            "app": "v2",
            "final": "1",
        }
    # run's result came from the import (the copy needed it); base never loaded
    assert dict(backend.exec_counts) == {"context": 1, "copy": 1, "final": 1}
    assert len(source.loaded) == 1
    backend.assert_no_leaks()


async def test_a_result_the_source_cannot_load_is_a_miss_with_a_warning() -> None:
    chain, old, value = await export(all_results=True)
    source = ExportedSource(chain, old)
    final = next(e for e in chain if e.name == "final")
    assert final.record is not None
    source.broken.add("x" + final.record.result_ids[0])
    backend, _storage, rebuilt, reporter = await rebuild(source)
    assert rebuilt == value
    assert dict(backend.exec_counts) == {"context": 1, "final": 1}
    warnings = [e for e in reporter.events if isinstance(e, BuildWarning)]
    assert any("corrupt" in w.short for w in warnings)


async def test_sources_of_other_jobs_holding_a_vertex_are_consulted() -> None:
    chain, old, value = await export(all_results=True)
    source = ExportedSource(chain, old)
    backend = FakeBackend()
    source.target = backend
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    _r, _c, final = graph(backend, 2)
    async with solver.new_job() as plain, solver.new_job(cache_sources=[source]) as importing:
        importing.load(final)
        ref = await plain.solve(final.output())
        assert ref.value.value == value  # type: ignore[attr-defined]
    assert dict(backend.exec_counts) == {"context": 1}


async def test_keys_made_from_a_volatile_key_by_definition_are_left_out() -> None:
    backend = FakeBackend()
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    base = backend.vertex("base", value="b")
    stamp = backend.vertex("stamp", value="s", volatile=True)
    user = backend.vertex("user", base, stamp)  # reads the stamp by definition
    final = backend.vertex("final", user, base)
    async with solver.new_job() as job:
        await job.solve(final.output())
        chain = await cache_chain(job, [final.output()], all_results=True)
    assert [entry.name for entry in chain] == ["base"]
    backend.assert_no_leaks()


async def test_chain_of_an_imported_build_names_the_source_of_results_never_loaded() -> None:
    chain, old, _ = await export(all_results=True)
    source = ExportedSource(chain, old)
    backend = FakeBackend()
    source.target = backend
    solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
    _r, _c, final = graph(backend, 2)
    async with solver.new_job(cache_sources=[source]) as job:
        await job.solve(final.output())
        again = await cache_chain(job, [final.output()], all_results=True)
    by_name = {entry.name: entry for entry in again}
    assert by_name["final"].source is None  # loaded, so recorded locally
    assert by_name["final"].record is not None
    assert not by_name["final"].record.result_ids[0].startswith("x")
    for name in ("base", "run", "copy"):
        entry = by_name[name]
        assert entry.source is source
        assert entry.record is not None
        assert entry.record.result_ids[0].startswith("x")
    backend.assert_no_leaks()


class KeysOnlySource(ExportedSource):
    """As ``remotecache.ImportedCache`` reads a mode=min export: a record whose results
    were left out still answers for its other keys, with results that do not load."""

    def __init__(self, chain: Sequence[CacheChainRecord], backend: FakeBackend) -> None:
        super().__init__(chain, backend)
        for entry in chain:
            if entry.record is None and len(entry.keys) > 1:
                record = CacheRecord(
                    id="keys-only-" + entry.canonical_key,
                    canonical_key=entry.canonical_key,
                    result_ids=("",),
                    created=0.0,
                )
                for key in entry.keys[1:]:
                    self.records.setdefault(key, record)


async def test_an_export_of_a_filtered_build_serves_a_later_build_without_the_filter() -> None:
    """The export of a build whose base ran afresh (``--no-cache-filter``: its canonical
    key is a run key, 6aae130) holds the run key, the usual keys and what was made from
    the run key: an empty solver building without the filter finds them (the base by
    its usual key, the rest by keys made from the run key), in both modes. In mode=min
    the base's record has no result, only keys: an importer that skipped such records
    lost the way from the usual key to the run key, and the whole build ran again."""

    def filtered(backend: FakeBackend, ignore: bool) -> Vertex:
        base = backend.vertex("base", value={"os": "busybox"}, ignore_cache=ignore)
        run = backend.vertex("run", base, fn=lambda ins: {**ins[0], "run": "1"})
        return backend.vertex("final", run, fn=lambda ins: {**ins[0], "final": "1"})

    for all_results in (True, False):
        backend = FakeBackend()
        solver = Solver(result_storage=backend, key_storage=InMemoryCacheKeyStorage())
        final = filtered(backend, ignore=True)
        async with solver.new_job() as job:
            value = (await job.solve(final.output())).value.value  # type: ignore[attr-defined]
            chain = await cache_chain(job, [final.output()], all_results=all_results)
        assert [entry.name for entry in chain] == ["base", "run", "final"]
        assert len(chain[0].keys) == 2  # the run key (canonical) and the definition key
        source = KeysOnlySource(chain, backend)
        again = FakeBackend()
        source.target = again
        solver = Solver(result_storage=again, key_storage=InMemoryCacheKeyStorage())
        async with solver.new_job(cache_sources=[source]) as job:
            ref = await job.solve(filtered(again, ignore=False).output())
            assert ref.value.value == value  # type: ignore[attr-defined]
            assert dict(again.exec_counts) == {}
            # the base itself, when it is needed, runs (its result was left out)
            base = await job.solve(filtered(again, ignore=False).inputs[0].vertex.inputs[0])
            assert base.value.value == {"os": "busybox"}  # type: ignore[attr-defined]
        assert dict(again.exec_counts) == ({} if all_results else {"base": 1})
        again.assert_no_leaks()
