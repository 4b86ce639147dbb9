"""The scheduler: jobs, shared vertex states, deduplicated execution."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from dockyard.core import (
    BuildWarning,
    CancelledError,
    InternalError,
    NullReporter,
    Reporter,
)

from ._flight import Factory, Memo
from ._results import ResultRef
from ._state import KeyInfo, VertexState, release_all
from .types import CacheKeyStorage, CacheSource, Edge, JobValue, ResultStorage, Vertex

__all__ = ["Job", "Solver", "SolverStatistics"]

_PRIME_BATCH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class SolverStatistics:
    """Counters since the solver was created (for tests, benchmarks and ``debug``).

    ``cache_hits``/``cache_misses`` count key computations that found / did not find a
    record; ``loads`` results loaded from storage (``imported`` of them from the jobs'
    cache sources); ``execs`` calls of ``Op.exec``; ``pruned`` records whose results were
    gone; ``active_vertices`` vertices held by jobs.
    """

    active_jobs: int
    active_vertices: int
    cache_hits: int
    cache_misses: int
    loads: int
    execs: int
    pruned: int
    imported: int = 0


class _ExecFlight:
    __slots__ = ("released", "runner", "task", "waiters")

    def __init__(self, task: asyncio.Task[tuple[ResultRef, ...]], runner: VertexState) -> None:
        self.task = task
        self.runner = runner
        self.waiters = 0
        self.released = False


def _succeeded(flight: _ExecFlight) -> bool:
    """Done with handles still to hand out."""
    task = flight.task
    return task.done() and not task.cancelled() and task.exception() is None and not flight.released


class _Execs:
    """Runs each cache key at most once at a time, whoever asks (any vertex, any job).

    The flight's task owns the handles it produced until every waiter has taken its own
    clone; the last waiter to leave releases the flight's handles.
    """

    def __init__(self, solver: Solver) -> None:
        self._solver = solver
        self._flights: dict[str, _ExecFlight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, state: VertexState, info: KeyInfo) -> tuple[ResultRef, ...]:
        while True:
            flight = self._flights.get(key)
            if flight is not None and flight.task.done() and not _succeeded(flight):
                flight = None  # finished badly, its done callback has not run yet
            if flight is None:
                flight = _ExecFlight(asyncio.create_task(state.execute(info)), state)
                self._flights[key] = flight
                state.flight_task = flight.task
                flight.task.add_done_callback(self._forgetter(key, flight))
            joined = flight.runner is not state
            if joined:
                state.set_started()
            flight.waiters += 1
            try:
                refs = await asyncio.shield(flight.task)
                mine = tuple(ref.clone() for ref in refs)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if joined and flight.task.cancelled() and current and current.cancelling() == 0:
                    continue  # the runner's jobs all went away; run it ourselves
                raise
            except CancelledError:
                if joined:
                    continue
                raise
            except Exception as exc:
                if joined:
                    state.set_error(str(exc))
                raise
            finally:
                flight.waiters -= 1
                if flight.waiters == 0:
                    if not flight.task.done():
                        flight.task.cancel()
                        self._forget(key, flight)
                    elif _succeeded(flight):
                        flight.released = True
                        await release_all(flight.task.result(), self._solver)
            if joined:
                state.set_completed()
            return mine

    def _forgetter(self, key: str, flight: _ExecFlight) -> Any:
        def forget(_task: asyncio.Task[Any]) -> None:
            self._forget(key, flight)

        return forget

    def _forget(self, key: str, flight: _ExecFlight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


class Solver:
    """Runs build graphs: cache keys, cache lookups, deduplicated parallel execution.

    One solver serves many concurrent jobs (builds). Costs: a job's first ``solve`` walks
    the requested graph once (every vertex is registered with the job); each vertex's
    ``cache_map`` runs once per key computation; storage lookups are one or two point
    reads per vertex. ``max_parallelism`` bounds concurrent ``Op.exec`` calls (None: no
    bound); key computations and loads are not bounded.

    ``reporter`` receives every event of every job (a daemon-wide log); each job also
    has its own reporter.

    A solver belongs to one event loop and is not thread-safe; ops may use threads.
    """

    def __init__(
        self,
        *,
        result_storage: ResultStorage,
        key_storage: CacheKeyStorage,
        reporter: Reporter | None = None,
        max_parallelism: int | None = None,
    ) -> None:
        if max_parallelism is not None and max_parallelism < 1:
            raise ValueError(f"max_parallelism must be at least 1, got {max_parallelism}")
        self.result_storage = result_storage
        self.key_storage = key_storage
        self.reporter: Reporter = reporter or NullReporter()
        self.max_parallelism = max_parallelism
        self._semaphore = asyncio.Semaphore(max_parallelism) if max_parallelism else None
        # the active states by vertex digest (more than one when a job's ignore_cache
        # vertex or its dependants could not take another job's: see _shared_state)
        self._states: dict[str, list[VertexState]] = {}
        self._jobs: set[Job] = set()
        self._ids = itertools.count(1)
        self._releases: set[asyncio.Task[None]] = set()
        self._execs = _Execs(self)
        self._stats_hits = 0
        self._stats_misses = 0
        self._stats_loads = 0
        self._stats_execs = 0
        self._stats_pruned = 0
        self._stats_imported = 0

    def new_job(
        self,
        *,
        reporter: Reporter | None = None,
        values: Mapping[JobValue[Any], Any] | None = None,
        name: str = "",
        cache_sources: Sequence[CacheSource] = (),
    ) -> Job:
        """A new job (one build request). Use it as ``async with`` or call ``discard``.

        ``cache_sources`` are imported caches consulted after the solver's key storage
        for every vertex this job holds (see :class:`CacheSource`)."""
        job = Job(
            self,
            reporter or NullReporter(),
            dict(values or {}),
            name or f"job-{next(self._ids)}",
            tuple(cache_sources),
        )
        self._jobs.add(job)
        return job

    def statistics(self) -> SolverStatistics:
        return SolverStatistics(
            active_jobs=len(self._jobs),
            active_vertices=sum(map(len, self._states.values())),
            cache_hits=self._stats_hits,
            cache_misses=self._stats_misses,
            loads=self._stats_loads,
            execs=self._stats_execs,
            pruned=self._stats_pruned,
            imported=self._stats_imported,
        )

    def _slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """A global parallelism slot around one ``Op.exec``."""
        if self._semaphore is None:
            return contextlib.nullcontext()
        return self._semaphore

    def _spawn_release(self, refs: tuple[ResultRef, ...]) -> None:
        """Release handles in the background (from synchronous code); jobs wait for it."""
        if not refs:
            return
        task = asyncio.get_running_loop().create_task(release_all(refs, self))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def _report_release_failure(self, ref: ResultRef, exc: Exception) -> None:
        self.reporter.emit(
            BuildWarning(short=f"releasing result {ref.id} failed: {type(exc).__name__}: {exc}")
        )

    async def _settle(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Wait for cancelled work and background releases to finish their cleanup."""
        while True:
            pending = [t for t in tasks if not t.done()] + [
                t for t in self._releases if not t.done()
            ]
            if not pending:
                return
            await asyncio.wait(pending)
            tasks = []


class Job:
    """One build request: the vertices it holds, its reporter, its values, its results.

    Ownership: a job holds every vertex it has loaded (and so the results computed or
    loaded for them) until :meth:`discard`. Each :meth:`solve` returns a new handle that
    the job tracks: the caller may release it early, and :meth:`discard` releases the ones
    still open; ``ref.clone()`` gives a handle the caller owns beyond the job.

    Cancellation and failure: :meth:`discard` (or leaving ``async with``) cancels the
    job's pending solves; work nobody else waits for is cancelled, work another job waits
    for continues. A failing vertex fails every solve that needs it with an error naming
    it (``err.vertex``); the computations that waited for it stop waiting, so sibling work
    that no other solve (of any job) needs is cancelled at once — BuildKit cancels the
    build's context the same way. A failure is not remembered: solving again retries.
    """

    def __init__(
        self,
        solver: Solver,
        reporter: Reporter,
        values: dict[JobValue[Any], Any],
        name: str,
        cache_sources: tuple[CacheSource, ...] = (),
    ) -> None:
        self.solver = solver
        self.reporter = reporter
        self.values = values
        self.name = name
        self.cache_sources = cache_sources
        self._held: dict[str, VertexState] = {}
        self._refs: list[ResultRef] = []
        #: the vertices whose op ran (not loaded from a cache) for a solve of this job
        #: (or of another job holding the same vertex), in the order they started
        self.executed: list[Vertex] = []
        self._solves: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Job {self.name} vertices={len(self._held)}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def _discarded(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Job:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.discard()

    async def solve(self, edge: Edge) -> ResultRef:
        """The result of ``edge``, from the cache or by running what is needed.

        Only what is needed is touched: if the edge's vertex is cached, none of its inputs
        is loaded or run. The returned handle is tracked by the job (see the class doc).
        Raises the failing vertex's :class:`~dockyard.core.DockyardError` (``err.vertex``
        names it) or :class:`~dockyard.core.CancelledError` if the job was discarded.
        """
        if self._closed:
            raise CancelledError(f"{self.name} is discarded")
        state, fresh = self._load(edge.vertex)
        outputs = state.outputs
        if outputs is None:
            task = asyncio.get_running_loop().create_task(self._outputs(state, fresh))
            self._solves.add(task)
            try:
                outputs = await task
            except asyncio.CancelledError:
                if _cancelled_by_caller():
                    raise
                # the solve was cancelled by Job.cancel/discard, not its caller
                raise CancelledError(f"{self.name} was cancelled") from None
            finally:
                self._solves.discard(task)
        if not 0 <= edge.index < len(outputs):
            raise InternalError(
                f"output {edge.index} requested, the op has {len(outputs)} outputs",
                vertex=edge.vertex.ref(),
            )
        ref = outputs[edge.index].clone()
        if self._discarded():  # discarded while we were resuming
            await ref.release()
            raise CancelledError(f"{self.name} was cancelled")
        self._refs.append(ref)
        return ref

    async def _outputs(self, state: VertexState, fresh: list[VertexState]) -> tuple[ResultRef, ...]:
        primed: list[tuple[Memo[Any], asyncio.Task[Any]]] = []
        if not fresh and not state.key_memo.done:
            fresh = _pending_keys(state)  # loaded earlier (load(), a failed solve)
        try:
            if fresh:
                await self._prime([(s.key_memo, s.compute_key) for s in fresh], primed)
                # the target's outputs are needed whatever its key: started now, they
                # start its inputs as soon as its key computation knows it will run
                await self._prime([(state.out_memo, state.compute_outputs)], primed)
                await state.key_memo.get(state.compute_key)
                needed = _needed_outputs(state)
                await self._prime([(s.out_memo, s.compute_outputs) for s in needed], primed)
            return await state.out_memo.get(state.compute_outputs)
        finally:
            for memo, task in primed:
                memo.leave(task)

    async def _prime(
        self,
        items: list[tuple[Memo[Any], Factory[Any]]],
        primed: list[tuple[Memo[Any], asyncio.Task[Any]]],
    ) -> None:
        """Start computations bottom-up (``items`` in topological order), in batches.

        First every pending key (each ancestor's key is needed for the target's), then
        the outputs the keys show to be needed. Started from the top instead, each
        computation would wait for its inputs and all of them would be alive at once
        (10,000 pending tasks make the garbage collector's full passes dominate); started
        bottom-up, a vertex usually finds its inputs done and finishes in its first step.
        The solve stays a waiter of what it started until it ends, so that nothing it
        started outlives it unwanted.
        """
        for n, (memo, factory) in enumerate(items, 1):
            if not memo.done:
                task = memo.start(factory)
                memo.enter(task)
                primed.append((memo, task))
            if n % _PRIME_BATCH == 0:
                await asyncio.sleep(0)  # let the batch run

    def load(self, vertex: Vertex) -> VertexState:
        """Register ``vertex`` and everything it depends on with this job (idempotent).

        Emits a ``VertexStatus`` for each newly held vertex to the job's reporter (its
        current state, so a vertex another job already finished shows as such).
        """
        return self._load(vertex)[0]

    def _load(self, vertex: Vertex) -> tuple[VertexState, list[VertexState]]:
        """:meth:`load`, also returning the newly held states in topological order."""
        held = self._held
        state = held.get(vertex.digest)
        if state is not None:
            return state, []
        fresh: list[VertexState] = []
        solver = self.solver
        states = solver._states
        reporter = self.reporter
        visiting: set[str] = set()
        stack: list[tuple[Vertex, bool]] = [(vertex, False)]
        while stack:
            v, expanded = stack.pop()
            digest = v.digest
            if digest in held:
                continue
            if not expanded:
                if digest in visiting:
                    raise InternalError(f"{v.name or digest} depends on itself", vertex=v.ref())
                visiting.add(digest)
                stack.append((v, True))
                for edge in v.inputs:
                    if edge.vertex.digest not in held:
                        stack.append((edge.vertex, False))
                continue
            visiting.discard(digest)
            try:
                inputs = tuple(held[edge.vertex.digest] for edge in v.inputs)
            except KeyError:
                raise InternalError(
                    f"{v.name or digest} depends on itself", vertex=v.ref()
                ) from None
            variants = states.setdefault(digest, [])
            state = _shared_state(variants, v, inputs)
            if state is None:
                state = VertexState(solver, v, inputs)
                variants.append(state)
            state.jobs.append(self)
            held[digest] = state
            fresh.append(state)
            reporter.emit(state.status())
        return held[vertex.digest], fresh

    def cancel(self) -> None:
        """Cancel the pending solves now (they raise CancelledError); see :meth:`discard`."""
        for task in self._solves:
            task.cancel()

    async def discard(self) -> None:
        """Cancel pending solves, release this job's results and let go of its vertices.

        Returns once the cancelled work that only this job wanted has cleaned up and the
        results only this job held are released. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        solver = self.solver
        solves = list(self._solves)
        for task in solves:
            task.cancel()
        tasks: list[asyncio.Task[Any]] = list(solves)
        refs, self._refs = self._refs, []
        await release_all(refs, solver)
        dropped: list[VertexState] = []
        for state in self._held.values():
            state.jobs.remove(self)
            if not state.jobs:
                variants = solver._states[state.digest]
                variants.remove(state)
                if not variants:
                    del solver._states[state.digest]
                dropped.append(state)
        self._held.clear()
        solver._jobs.discard(self)
        for state in dropped:
            tasks.extend(state.drop())
        await solver._settle(tasks)
        # Exec flights these vertices ran were cancelled when their last waiter left
        # (above); wait for their cleanup too, unless another job still waits for them.
        await solver._settle(
            [
                state.flight_task
                for state in dropped
                if state.flight_task is not None and state.flight_task.cancelling()
            ]
        )


def _cancelled_by_caller() -> bool:
    """Whether the running task itself was asked to cancel (by whoever awaits it), as
    opposed to the work it awaited being cancelled by ``Job.cancel``/``discard``.

    A function rather than a local in :meth:`Job.solve`: a frame that raises while
    holding its own task in a local makes task -> exception -> traceback -> frame ->
    task a reference cycle, and a solve task nobody awaited then reports "Task exception
    was never retrieved" only at some later garbage collection (in another test, or
    after pytest's summary) instead of when it is dropped.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _pending_keys(target: VertexState) -> list[VertexState]:
    """``target`` and its ancestors whose keys are not computed, in topological order.

    A vertex whose key is done has all its ancestors' keys done, so the walk stops there.
    """
    order: list[VertexState] = []
    seen: set[str] = set()
    stack: list[tuple[VertexState, bool]] = [(target, False)]
    while stack:
        state, expanded = stack.pop()
        if expanded:
            order.append(state)
            continue
        if state.digest in seen or state.key_memo.done:
            continue
        seen.add(state.digest)
        stack.append((state, True))
        stack.extend((dep, False) for dep in state.inputs if dep.digest not in seen)
    return order


def _needed_outputs(target: VertexState) -> list[VertexState]:
    """The vertices whose outputs solving ``target`` needs, in topological order.

    Called once every key is known: the target, and the inputs of every vertex that will
    run (no record). A record that turns out pruned makes its inputs needed later; they
    are then computed on demand.
    """
    order: list[VertexState] = []
    seen: set[str] = set()
    stack: list[tuple[VertexState, bool]] = [(target, False)]
    while stack:
        state, expanded = stack.pop()
        if expanded:
            order.append(state)
            continue
        if state.digest in seen or state.out_memo.done:
            continue
        seen.add(state.digest)
        stack.append((state, True))
        if state.key_memo.done and state.key_memo.value.record is None:
            stack.extend((dep, False) for dep in state.inputs if dep.digest not in seen)
    return order


def _shared_state(
    variants: list[VertexState], vertex: Vertex, inputs: tuple[VertexState, ...]
) -> VertexState | None:
    """The active state of ``vertex``'s digest a job loading it over ``inputs`` takes
    (None: it makes its own).

    As BuildKit's job list, an ``ignore_cache`` vertex does not take an active plain
    one (that may have hit the cache: a ``--no-cache`` build beside another build of
    the same steps got its old results), while a plain vertex takes an active
    ``ignore_cache`` one (what it made is fresh). Unlike BuildKit's, a state is taken
    only over the same input states: a plain dependant of a vertex made afresh in this
    job does not take another job's state made from the old result.
    """
    for state in variants:
        if (
            len(state.inputs) == len(inputs)
            and all(a is b for a, b in zip(state.inputs, inputs, strict=True))
            and (state.vertex.options.ignore_cache or not vertex.options.ignore_cache)
        ):
            return state
    return None
