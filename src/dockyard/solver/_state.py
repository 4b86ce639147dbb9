"""One vertex as the solver tracks it while jobs hold it: cache keys, results, progress."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dockyard.core import (
    BuildWarning,
    CancelledError,
    DockyardError,
    Event,
    InternalError,
    VertexStatus,
    now,
)

from ._context import VertexContext
from ._flight import Memo, Watch, wait_all
from ._keys import content_key, def_key, link_key, run_key
from ._results import ResultRef
from .types import CacheMap, CacheRecord, CacheSource, Dep, JobValue, Result, Vertex

if TYPE_CHECKING:
    from ._solver import Job, Solver

__all__ = ["KeyInfo", "VertexState"]

_PLAIN = Dep()


class KeyInfo:
    """The outcome of a vertex's key computation.

    ``canonical`` is the key dependants build on; ``record`` is the cache hit, if any,
    and ``source`` the job's :class:`CacheSource` it came from (``None``: the solver's
    own key storage). ``selectors`` are the deps' selectors, one per input (for cache
    exports). ``op_digest`` is the cache map's digest (for the link keys, see
    :meth:`VertexState.record_keys`; empty when the vertex's keys are volatile).
    """

    __slots__ = (
        "canonical",
        "key_content",
        "key_def",
        "op_digest",
        "record",
        "selectors",
        "source",
        "volatile",
    )

    def __init__(
        self,
        canonical: str,
        key_def: str,
        key_content: str | None,
        record: CacheRecord | None,
        *,
        selectors: tuple[str | None, ...] = (),
        source: CacheSource | None = None,
        volatile: frozenset[str] = frozenset(),
        op_digest: str = "",
    ) -> None:
        self.canonical = canonical
        self.key_def = key_def
        self.key_content = key_content
        self.record = record
        self.selectors = selectors
        self.source = source
        self.volatile = volatile
        self.op_digest = op_digest

    def all_keys(self) -> list[str]:
        """Every key naming this vertex's record, canonical first (without the link
        keys: see :meth:`VertexState.record_keys`)."""
        keys = dict.fromkeys((self.canonical, self.key_def))
        if self.key_content is not None:
            keys[self.key_content] = None
        return list(keys)

    @property
    def canonical_volatile(self) -> bool:
        """The canonical key is unique to this build (see ``CacheMap.volatile``)."""
        return self.canonical in self.volatile


def _fail(vertex: Vertex, exc: Exception) -> DockyardError:
    """``exc`` as a DockyardError naming ``vertex`` (unless it already names one)."""
    if isinstance(exc, DockyardError):
        return exc.with_vertex(vertex.ref())
    err = InternalError(f"{type(exc).__name__}: {exc}", vertex=vertex.ref())
    err.__cause__ = exc
    return err


async def release_all(refs: Sequence[ResultRef], solver: Solver) -> None:
    """Release every handle; a failing release is reported, not raised (cleanup paths)."""
    for ref in refs:
        try:
            await ref.release()
        except Exception as exc:
            solver._report_release_failure(ref, exc)


class VertexState:
    """The solver's state for one vertex digest, shared by every job that holds it
    (a digest may have more than one: see ``_solver._shared_state``).

    Lives in ``Solver._states`` while at least one job holds it; when the last job lets
    go it is *dropped*: running computations are cancelled and its results released.
    Every job holding a vertex also holds all of its inputs.
    """

    __slots__ = (
        "cached",
        "completed",
        "digest",
        "dropped",
        "error",
        "flight_task",
        "input_digests",
        "inputs",
        "jobs",
        "key_memo",
        "out_memo",
        "outputs",
        "prefetch",
        "solver",
        "started",
        "vertex",
        "will_run",
    )

    def __init__(self, solver: Solver, vertex: Vertex, inputs: tuple[VertexState, ...]) -> None:
        self.solver = solver
        self.vertex = vertex
        self.digest = vertex.digest
        self.inputs = inputs
        self.input_digests = tuple(edge.vertex.digest for edge in vertex.inputs)
        self.jobs: list[Job] = []
        self.key_memo: Memo[KeyInfo] = Memo()
        self.out_memo: Memo[tuple[ResultRef, ...]] = Memo()
        self.outputs: tuple[ResultRef, ...] | None = None
        self.dropped = False
        self.started: float | None = None
        self.completed: float | None = None
        self.cached = False
        self.error: str | None = None
        self.flight_task: asyncio.Task[Any] | None = None
        # set while the key computation knows that no record can match (the vertex runs
        # when its outputs are needed); the outputs computation waiting for the key
        # publishes its Watch in `prefetch` for the inputs to be started into
        self.will_run = False
        self.prefetch: Watch | None = None

    # -- the audience of VertexContext -------------------------------------------------

    def emit(self, event: Event) -> None:
        for job in self.jobs:
            job.reporter.emit(event)
        self.solver.reporter.emit(event)

    def job_values(self, key: JobValue[Any]) -> tuple[Any, ...]:
        return tuple(job.values[key] for job in self.jobs if key in job.values)

    # -- progress ----------------------------------------------------------------------

    def status(self) -> VertexStatus:
        vertex = self.vertex
        return VertexStatus(
            digest=self.digest,
            name=vertex.name,
            inputs=self.input_digests,
            started=self.started,
            completed=self.completed,
            cached=self.cached,
            error=self.error,
            progress_group=vertex.options.progress_group,
        )

    def _set_cached(self) -> None:
        t = now()
        self.started = self.completed = t
        self.cached = True
        self.error = None
        self.emit(self.status())

    def set_started(self) -> None:
        self.started = now()
        self.completed = None
        self.cached = False
        self.error = None
        self.emit(self.status())

    def set_completed(self) -> None:
        self.completed = now()
        self.emit(self.status())

    def set_error(self, message: str) -> None:
        t = now()
        if self.started is None:
            self.started = t
        self.completed = t
        self.cached = False
        self.error = message
        self.emit(self.status())

    # -- the published key -------------------------------------------------------------

    def key_source(self) -> tuple[Memo[Any], Any]:
        """What a dependant waits for to learn this vertex's canonical key.

        An ``ignore_cache`` vertex publishes its key only once it has run (as BuildKit's
        dependants only see such a vertex's keys on its result), so it always runs when a
        job needs anything downstream of it; its canonical key is then a run key unique
        to that run (see the package docstring), so dependants reading it by definition
        run again, and those reading it by content skip their definition lookup (see
        ``compute_key``).
        """
        if self.vertex.options.ignore_cache:
            return self.out_memo, self.compute_outputs
        return self.key_memo, self.compute_key

    # -- computations (run as memo tasks) ----------------------------------------------

    async def compute_key(self) -> KeyInfo:
        vertex = self.vertex
        solver = self.solver
        ahead: _Ahead | None = None
        try:
            ctx = VertexContext(vertex, self)
            try:
                cache_map = await vertex.op.cache_map(ctx)
            except asyncio.CancelledError:
                ctx._mark_cancelled()
                raise
            inputs = vertex.inputs
            deps = cache_map.deps or (_PLAIN,) * len(inputs)
            if len(deps) != len(inputs):
                raise InternalError(
                    f"cache map has {len(deps)} deps for {len(inputs)} inputs", vertex=vertex.ref()
                )
            ignore = vertex.options.ignore_cache
            content = [i for i, dep in enumerate(deps) if dep.compute_digest is not None]
            # An ignore_cache input ran afresh: its output may differ from what its key
            # denoted before, so when we read it by content, the content decides.
            by_content_only = any(self.inputs[i].vertex.options.ignore_cache for i in content)
            if inputs:
                if ignore or by_content_only or cache_map.volatile or not self._input_keys_done():
                    # some input keys take time (or the lookups are known to miss): start
                    # meanwhile what this computation (or the outputs') will surely need
                    ahead = _Ahead(self, cache_map, deps, content, by_content_only)
                    await ahead.wait_keys()
                input_keys = [state.key_memo.value.canonical for state in self.inputs]
            else:
                input_keys = []
            key_def = def_key(
                cache_map.digest,
                [
                    (key, dep.selector, edge.index)
                    for key, dep, edge in zip(input_keys, deps, inputs, strict=True)
                ],
            )
            selectors = tuple(dep.selector for dep in deps)
            # keys unique to this build (made from a volatile digest), for cache exports
            by_key = [
                i for i in range(len(inputs)) if self.inputs[i].key_memo.value.canonical_volatile
            ]
            volatile_def = cache_map.volatile or bool(by_key)
            volatile_content = cache_map.volatile or any(i not in content for i in by_key)
            def_volatile = frozenset((key_def,)) if volatile_def else frozenset()
            # (no link keys when nothing made from this vertex's keys hits again)
            op_digest = "" if cache_map.volatile else cache_map.digest
            if not ignore and not by_content_only:
                record, source = await self._lookup(key_def)
                if record is not None:
                    solver._stats_hits += 1
                    self._set_cached()
                    return KeyInfo(
                        record.canonical_key,
                        key_def,
                        None,
                        record,
                        selectors=selectors,
                        source=source,
                        volatile=def_volatile,
                        op_digest=op_digest,
                    )
            if not content:
                if not ignore:
                    solver._stats_misses += 1
                return KeyInfo(
                    run_key(key_def, secrets.token_hex(16)) if ignore else key_def,
                    key_def,
                    None,
                    None,
                    selectors=selectors,
                    volatile=def_volatile,
                    op_digest=op_digest,
                )
            if ahead is not None:
                ahead.watch.check()  # work started ahead that failed: fail now, not rerun it
            key_content = await self._content_key(ctx, cache_map.digest, deps, input_keys, content)
            volatile = def_volatile | (
                frozenset((key_content,)) if volatile_content else frozenset()
            )
            if not ignore:
                record, source = await self._lookup(key_content)
                if record is not None:
                    info = KeyInfo(
                        record.canonical_key,
                        key_def,
                        key_content,
                        record,
                        selectors=selectors,
                        source=source,
                        volatile=volatile,
                        op_digest=op_digest,
                    )
                    if source is None:
                        # link the definition key to the record: next time no input is
                        # loaded (an imported record is linked when its result is loaded)
                        await solver.key_storage.save([key_def, *self.link_keys(info)], record)
                    solver._stats_hits += 1
                    self._set_cached()
                    return info
                solver._stats_misses += 1
            return KeyInfo(
                run_key(key_content, secrets.token_hex(16)) if ignore else key_content,
                key_def,
                key_content,
                None,
                selectors=selectors,
                volatile=volatile,
                op_digest=op_digest,
            )
        except Exception as exc:
            err = _fail(vertex, exc)
            if err.vertex is not None and err.vertex.digest == self.digest:
                self.set_error(str(err))
            if err is exc:
                raise
            raise err from exc
        finally:
            self.will_run = False
            if ahead is not None:
                ahead.watch.close()

    def record_keys(self, info: KeyInfo) -> list[str]:
        """Every key naming this vertex's record: ``info.all_keys()`` and the link keys."""
        return info.all_keys() + self.link_keys(info)

    def link_keys(self, info: KeyInfo) -> list[str]:
        """The link key of each input (see :func:`._keys.link_key`), saved with every
        record of the vertex so that it can tell early that it cannot hit (``_Ahead``):
        none for an input whose key is unique to the build (nothing made from it hits
        again), none at all for a vertex with fewer than two inputs (it never has one
        input's key while waiting for another's). Made when needed (records, exports),
        not kept: a no-op build makes none."""
        digest = info.op_digest
        if not digest or len(self.inputs) < 2:
            return []
        out = []
        for i, (state, edge) in enumerate(zip(self.inputs, self.vertex.inputs, strict=True)):
            key_info = state.key_memo.value
            if not key_info.canonical_volatile:
                selector = info.selectors[i] if i < len(info.selectors) else None
                out.append(link_key(digest, i, key_info.canonical, selector, edge.index))
        return out

    def _input_keys_done(self) -> bool:
        for state in self.inputs:
            memo = state.out_memo if state.vertex.options.ignore_cache else state.key_memo
            if not memo.done:
                return False
        return True

    def _prefetch(self) -> None:
        """This vertex will run: start its inputs' outputs for the outputs computation
        waiting for its key, if one is (``prefetch``), as a waiter of that computation."""
        watch = self.prefetch
        if watch is None:
            return
        self.prefetch = None
        for state in self.inputs:
            watch.add(state.out_memo, state.compute_outputs)

    async def _lookup(self, key: str) -> tuple[CacheRecord | None, CacheSource | None]:
        """The record of ``key``: from the solver's key storage, else from the cache
        sources of the jobs holding this vertex (oldest job first)."""
        record = await self.solver.key_storage.lookup(key)
        if record is not None:
            return record, None
        for source in self._sources():
            try:
                record = await source.lookup(key)
            except Exception as exc:
                self.emit(
                    BuildWarning(
                        short=f"imported cache lookup failed: {type(exc).__name__}: {exc}",
                        digest=self.digest,
                    )
                )
                continue
            if record is not None:
                return record, source
        return None, None

    def _sources(self) -> list[CacheSource]:
        out: list[CacheSource] = []
        for job in self.jobs:
            for source in job.cache_sources:
                if not any(source is known for known in out):
                    out.append(source)
        return out

    async def _content_key(
        self,
        ctx: VertexContext,
        op_digest: str,
        deps: Sequence[Dep],
        input_keys: Sequence[str],
        content: Sequence[int],
    ) -> str:
        inputs = self.vertex.inputs
        outputs = await wait_all(
            [(self.inputs[i].out_memo, self.inputs[i].compute_outputs) for i in content]
        )
        # our own handles, taken at once: the inputs' handles belong to their states (one
        # by one: an input released meanwhile fails its clone, the ones before it are
        # released below)
        refs: list[ResultRef] = []
        digests: dict[int, str] = {}
        try:
            for i, outs in zip(content, outputs, strict=True):
                refs.append(self._pick(outs, inputs[i].index, i).clone())
            for i, ref in zip(content, refs, strict=True):
                compute = deps[i].compute_digest
                assert compute is not None
                digests[i] = await compute(ref.value, ctx)
        except asyncio.CancelledError:
            ctx._mark_cancelled()
            raise
        finally:
            await release_all(refs, self.solver)
        parts: list[tuple[str, str] | tuple[str, str, str | None, int]] = []
        for i, (key, dep, edge) in enumerate(zip(input_keys, deps, inputs, strict=True)):
            if i in digests:
                parts.append(("content", digests[i]))
            else:
                parts.append(("key", key, dep.selector, edge.index))
        return content_key(op_digest, parts)

    def _pick(self, outputs: tuple[ResultRef, ...], index: int, input_number: int) -> ResultRef:
        if not 0 <= index < len(outputs):
            raise InternalError(
                f"input {input_number} wants output {index} of"
                f" {self.inputs[input_number].vertex.name or self.inputs[input_number].digest},"
                f" which has {len(outputs)} outputs",
                vertex=self.vertex.ref(),
            )
        return outputs[index]

    async def compute_outputs(self) -> tuple[ResultRef, ...]:
        solver = self.solver
        if self.key_memo.done:
            info = self.key_memo.value
            watch = None
        else:
            # needed before the key is known: should the key computation find that no
            # record can match, the inputs start at once (see compute_key)
            watch = Watch()
        try:
            if watch is not None:
                watch.add(self.key_memo, self.compute_key)
                self.prefetch = watch
                if self.will_run:
                    self._prefetch()
                while not self.key_memo.done:
                    await watch.next()
                info = self.key_memo.value
            record = info.record
            if record is not None:
                if info.source is not None:
                    refs = await self._import(info, record, info.source)
                else:
                    refs = await self._load(record)
                if refs is not None:
                    return self._keep(refs)
                solver._stats_pruned += 1
            if watch is not None:
                watch.check()  # an input started ahead failed: fail now, not rerun it
            refs = await solver._execs.run(info.canonical, self, info)
            return self._keep(refs)
        finally:
            if watch is not None:
                if self.prefetch is watch:
                    self.prefetch = None
                watch.close()

    def _keep(self, refs: tuple[ResultRef, ...]) -> tuple[ResultRef, ...]:
        # The last synchronous step of the outputs task: from here the state owns the
        # handles (Job.discard → drop releases them), so no window exists in which a
        # drop could miss them.
        if self.dropped:
            self.solver._spawn_release(refs)
            raise CancelledError(f"{self.vertex.name or self.digest}: no job needs it any more")
        self.outputs = refs
        return refs

    async def _load(self, record: CacheRecord) -> tuple[ResultRef, ...] | None:
        """The record's results as new handles, or None if any of them is gone."""
        solver = self.solver
        refs: list[ResultRef] = []
        try:
            for result_id in record.result_ids:
                result = await solver.result_storage.load(result_id)
                if result is None:
                    await release_all(refs, solver)
                    return None
                refs.append(ResultRef.adopt(result, cache_key=record.canonical_key, cached=True))
        except BaseException as exc:
            await release_all(refs, solver)
            if isinstance(exc, Exception):
                err = _fail(self.vertex, exc)
                if err is not exc:
                    raise err from exc
            raise
        solver._stats_loads += len(refs)
        return tuple(refs)

    async def _import(
        self, info: KeyInfo, record: CacheRecord, source: CacheSource
    ) -> tuple[ResultRef, ...] | None:
        """The results of a record found in a job's cache source, materialized by it, or
        None if it could not; they are then saved and recorded like results of a run."""
        solver = self.solver
        ctx = VertexContext(self.vertex, self)
        loaded: list[Result] = []
        try:
            for result_id in record.result_ids:
                result = await source.load(result_id, ctx)
                if result is None:
                    await release_all([ResultRef.adopt(r) for r in loaded], solver)
                    return None
                loaded.append(result)
        except BaseException as exc:
            await release_all([ResultRef.adopt(r) for r in loaded], solver)
            if isinstance(exc, asyncio.CancelledError):
                ctx._mark_cancelled()
                raise
            if not isinstance(exc, Exception):
                raise
            self.emit(
                BuildWarning(
                    short=f"loading an imported cache result failed, running the step: "
                    f"{type(exc).__name__}: {exc}",
                    digest=self.digest,
                )
            )
            return None
        refs = tuple(
            ResultRef.adopt(result, cache_key=record.canonical_key, cached=True)
            for result in loaded
        )
        solver._stats_loads += len(refs)
        solver._stats_imported += len(refs)
        try:
            await self._record(info, refs)
        except Exception as exc:
            self.emit(
                BuildWarning(
                    short=f"keeping an imported cache result failed: {type(exc).__name__}: {exc}",
                    digest=self.digest,
                )
            )
        except BaseException:
            await release_all(refs, solver)
            raise
        return refs

    async def execute(self, info: KeyInfo) -> tuple[ResultRef, ...]:
        """Run the op (the body of an exec flight); returns handles the flight owns."""
        vertex = self.vertex
        solver = self.solver
        try:
            if info.record is None and not vertex.options.ignore_cache:
                # another flight (or process) may have finished this key since our lookup
                record = await solver.key_storage.lookup(info.canonical)
                if record is not None:
                    refs = await self._load(record)
                    if refs is not None:
                        self._set_cached()
                        return refs
            inputs: list[ResultRef] = []
            try:
                if self.inputs:
                    outputs = await wait_all([(s.out_memo, s.compute_outputs) for s in self.inputs])
                    # one by one: an input released meanwhile (its vertex dropped by a
                    # discarded job) fails its clone, and the clones before it are
                    # released below
                    for i, (outs, edge) in enumerate(zip(outputs, vertex.inputs, strict=True)):
                        inputs.append(self._pick(outs, edge.index, i).clone())
                results = await self._run_op([ref.value for ref in inputs])
            finally:
                await release_all(inputs, solver)
            refs = tuple(
                ResultRef.adopt(result, cache_key=info.canonical, cached=False)
                for result in results
            )
            try:
                await self._record(info, refs)
            except BaseException:
                await release_all(refs, solver)
                raise
            self.set_completed()
            return refs
        except Exception as exc:
            err = _fail(vertex, exc)
            if err.vertex is not None and err.vertex.digest == self.digest:
                self.set_error(str(err))
            if err is exc:
                raise
            raise err from exc

    async def _run_op(self, inputs: list[Any]) -> Sequence[Any]:
        vertex = self.vertex
        solver = self.solver
        ctx = VertexContext(vertex, self)
        results: Sequence[Any] | None = None
        try:
            async with vertex.op.acquire(), solver._slot():
                self.set_started()
                solver._stats_execs += 1
                for job in self.jobs:
                    job.executed.append(vertex)
                results = await vertex.op.exec(ctx, inputs)
            return results  # noqa: RET504 (the handler below needs `results`)
        except BaseException as exc:
            if results is not None:  # leaving the op's limit failed after exec returned
                await release_all([ResultRef.adopt(r) for r in results], solver)
            if isinstance(exc, asyncio.CancelledError):
                ctx._mark_cancelled()
                if self.started is not None and self.completed is None:
                    self.set_error("cancelled")
            raise

    async def _record(self, info: KeyInfo, refs: tuple[ResultRef, ...]) -> None:
        solver = self.solver
        canonical = info.canonical
        ids = tuple(await solver.result_storage.save([ref.value for ref in refs]))
        if len(ids) != len(refs):
            raise InternalError(f"result storage returned {len(ids)} ids for {len(refs)} results")
        record_id = hashlib.sha256(
            "\0".join((canonical, *ids)).encode(), usedforsecurity=False
        ).hexdigest()
        record = CacheRecord(id=record_id, canonical_key=canonical, result_ids=ids, created=now())
        await solver.key_storage.save(self.record_keys(info), record)

    # -- lifetime ----------------------------------------------------------------------

    def drop(self) -> list[asyncio.Task[Any]]:
        """No job holds this vertex any more: cancel its work, release its results.

        Returns the cancelled tasks so that the caller can wait for their cleanup.
        """
        self.dropped = True
        tasks = [t for t in (self.key_memo.cancel(), self.out_memo.cancel()) if t is not None]
        outputs = self.outputs
        self.outputs = None
        if outputs is not None:
            self.solver._spawn_release(outputs)
        return tasks


class _Ahead:
    """What a key computation learns while it waits for its inputs' keys, and the work
    it starts as soon as that work is certain to be needed.

    A vertex cannot hit by its definition key when an input's key is unique to the build
    (volatile) or no record of the vertex links to it (its link key is missing, see
    :func:`._keys.link_key`); if that input is one it reads by definition only, it
    cannot hit by its content key either. So, while another input's key is still being
    computed (e.g. a copy source that must run first to be checksummed):

    - no definition hit possible → the inputs read by content are started now (their
      outputs are needed for the content key);
    - no hit possible at all → the vertex will run when its outputs are needed: an
      outputs computation waiting for its key starts every input now
      (``VertexState.will_run`` / ``prefetch``).

    Only inputs that missed are asked about (one link-key lookup each): an input found
    in the cache usually means the vertex is too, and a hit must load nothing upstream.
    Everything started is held by ``watch`` (left when the key computation ends).
    """

    __slots__ = ("content", "deps", "digest", "no_content", "no_def", "started", "state", "watch")

    def __init__(
        self,
        state: VertexState,
        cache_map: CacheMap,
        deps: Sequence[Dep],
        content: list[int],
        by_content_only: bool,
    ) -> None:
        self.state = state
        self.digest = cache_map.digest
        self.deps = deps
        self.content = content
        never = state.vertex.options.ignore_cache or cache_map.volatile
        self.no_def = never or by_content_only
        self.no_content = never or not content
        self.started = False
        self.watch = Watch()

    async def wait_keys(self) -> None:
        """Wait for every input's key (failing fast like ``wait_all``), acting on each as
        it arrives."""
        state = self.state
        watch = self.watch
        positions: dict[str, list[int]] = {}
        unique: list[VertexState] = []
        for i, input_state in enumerate(state.inputs):
            seen = positions.get(input_state.digest)
            if seen is None:
                positions[input_state.digest] = [i]
                unique.append(input_state)
            else:
                seen.append(i)
        waiting: dict[asyncio.Task[Any], list[int]] = {}
        known: list[int] = []
        for input_state in unique:
            memo, factory = input_state.key_source()
            task = watch.add(memo, factory)
            if task is None:
                known.extend(positions[input_state.digest])
            else:
                waiting[task] = positions[input_state.digest]
        self._act()
        if waiting and known:
            await self._learn(known)
        while waiting:
            arrived: list[int] = []
            for task in await watch.next():
                arrived.extend(waiting.pop(task, ()))
            if waiting and arrived:
                await self._learn(arrived)

    async def _learn(self, numbers: list[int]) -> None:
        state = self.state
        content = self.content
        for i in numbers:
            if self.no_def and self.no_content:
                return
            by_content = i in content
            if self.no_def and (by_content or self.no_content):
                continue  # nothing more to learn from this input
            info = state.inputs[i].key_memo.value
            if info.canonical_volatile:
                proven = True
            elif info.record is not None:
                continue
            else:
                link = link_key(
                    self.digest,
                    i,
                    info.canonical,
                    self.deps[i].selector,
                    state.vertex.inputs[i].index,
                )
                record, _source = await state._lookup(link)
                proven = record is None
            if proven:
                self.no_def = True
                if not by_content:
                    self.no_content = True
                self._act()

    def _act(self) -> None:
        state = self.state
        if self.no_def and self.content and not self.started:
            self.started = True
            for i in self.content:
                input_state = state.inputs[i]
                self.watch.add(input_state.out_memo, input_state.compute_outputs)
        if self.no_def and self.no_content and not state.will_run:
            state.will_run = True
            state._prefetch()
