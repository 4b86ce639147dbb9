"""The solver: a generic DAG engine with parallel, deduplicated, persistently cached work.

It knows vertices, ops and results — never LLB, containers or protobuf (import-linter
forbids it). ``dockyard.llbsolver`` adapts LLB ops to :class:`Op`; the snapshot cache
manager implements :class:`ResultStorage`; tests use ``dockyard.testing.solver``.

Graph
    A :class:`Vertex` is a frozen value: ``digest`` (its identity), ``name``, ``inputs``
    (:class:`Edge` = one output of another vertex), ``op`` and :class:`VertexOptions`.
    Ops may have several outputs.

Cache keys (:mod:`._keys`)
    For each vertex the solver calls ``op.cache_map()`` and combines its digest with the
    inputs' canonical keys into the *definition key*
    ``H(digest, [(input key, selector, output index), ...])`` and looks it up. On a hit
    the recorded results are loaded and **no input is loaded or run** — a no-op rebuild
    computes keys (``cache_map`` + one lookup per vertex) and loads only the results
    asked for. On a miss, inputs whose :class:`Dep` has ``compute_digest`` are resolved
    (loaded or run), their content digests computed, and the *content key*
    ``H(digest, [content digest | (input key, selector, index), ...])`` looked up; a hit
    links the definition key to the same record. Otherwise the op runs and its results
    are recorded under every key computed (results saved first, then the record).

    Each vertex exposes a **canonical key** to its dependants: its content key if it has
    content-based deps, else its definition key; it is stored in the record, so that a
    definition-key hit returns it too. So when an unrelated part of an input changes, a
    copy that reads only the unchanged part hits by content and everything downstream of
    it keeps its keys and hits as well.

    Every record of a vertex with several inputs is also saved under one *link key* per
    input, ``H(op digest, input number, input key, selector, output index)`` (BuildKit's
    cache links, in a hash-keyed store): a key made from an input key can exist only if
    that input's link key does. So as soon as one input's key is known, a missing link key
    proves that the vertex cannot hit by definition (nor by content, for an input it
    reads by definition only) — before its other inputs' keys are known (see
    Scheduling). Link keys are exported with the other keys of a record.

``ignore_cache``
    Such a vertex is never looked up: whenever a job needs anything that depends on it,
    it runs (once per job; shared with concurrent jobs, but it never takes another
    job's active plain vertex of the same digest, nor does a dependant over it take one
    made from another input state: ``_solver._shared_state``), and its results
    are recorded under its usual keys. Its canonical key, though, is a *run key* unique
    to that run (``H("run", usual key, nonce)``), published to dependants only after it
    ran: what it made now may differ from what its usual key denoted before. What its
    dependants see: one that reads it by content (``compute_digest``) skips its
    definition lookup and is decided by the content key — it reruns if the part it reads
    changed, hits otherwise; one that reads it by definition misses (its key is made from
    the run key) and runs, and so does everything made from that, up to a vertex that
    reads by content and finds the same content. This is BuildKit's behaviour (an
    ignore-cache edge publishes no keys, so a dependant can only match it through a
    content-based key); hitting the old records instead mixed stale results with the
    fresh ones (``--no-cache-filter a`` reran stage ``a`` but kept ``FROM a`` +
    ``RUN`` of the old ``a``). A later build without ``ignore_cache`` finds the record
    by the usual key, with the run key as its canonical key, and so the dependants'
    records made from it.

Pruned results
    A record whose results cannot be loaded any more (``ResultStorage.load`` → None)
    counts as a miss: the op runs again (inputs resolved as needed) and the record is
    replaced.

Scheduling and deduplication
    A :class:`Solver` serves many :class:`Job` objects (one per build request, each with
    its own reporter, values and cancellation). Vertex work is shared by digest across all
    live jobs, and execution is additionally deduplicated by cache key (two different
    vertices with the same key run once). Independent vertices run concurrently;
    ``max_parallelism`` bounds concurrent ``Op.exec`` calls, and ``Op.acquire`` adds
    per-op limits. A solve starts work bottom-up, in topological order: first every
    pending key, then the outputs those keys show to be needed (the target's, and the
    inputs of every vertex that must run), so that a vertex usually finds its inputs done.

    Work that is certain to be needed starts as soon as that is known, not when a vertex
    gets to it: while a vertex waits for an input key that takes time (a copy source
    that must run to be checksummed), each input key that arrives and missed is checked
    for its link key. Without one the vertex cannot hit by definition, so the inputs it
    reads by content start at once; if it cannot hit at all it will run, and when its
    outputs are wanted (the target's always are) all its inputs start at once, which
    repeats downwards. So independent stages run side by side even when the final
    stage copies from one onto a copy from the other (BuildKit does the same with its
    cache links). Inputs found in the cache are never started ahead: a definition-key
    hit still loads and runs nothing upstream. Work started ahead belongs to the
    computation that started it (cancelled with it; a failure there fails it at once).

Cancellation and failure (:mod:`._flight`)
    Each computation runs in its own task *while someone waits for it*: a job's
    ``solve`` or a dependant's computation. When its last waiter leaves it is cancelled,
    which cascades to what it waits for; work another job (or another solve) waits for
    keeps running. Discarding a job cancels its pending solves. A failing vertex fails
    every solve that needs it with a :class:`~dockyard.core.DockyardError` whose
    ``vertex`` names it (foreign exceptions from ops become ``InternalError``); waiters
    fail fast, so sibling work only the failed solve needed is cancelled at once, as
    BuildKit cancels the build's context. Failures are not cached.

Results and ownership (:class:`ResultRef`)
    Results are reference-counted handles. What ``Op.exec`` returns becomes the
    solver's; ``ResultStorage.load`` returns a new handle owned by the solver; inputs are
    lent to an op for the duration of a call. A vertex's results are held by the solver
    while any job holds the vertex (so a frontend solving overlapping graphs in one job
    reuses them); :meth:`Job.discard` lets go of the job's vertices and releases what no
    other job holds. ``Job.solve`` returns a handle tracked by the job: release it early
    or let ``discard`` do it; ``clone()`` it to keep the result beyond the job.

Progress
    Through the job's reporter (and the solver-wide one): a ``VertexStatus`` when a job
    first holds a vertex (seen), when it starts running, completes, is cached, fails or is
    cancelled (``error="cancelled"``); a vertex found in the cache reports
    ``cached=True`` (and, should its results turn out pruned, a later status with the
    rerun). Ops report logs, progress and warnings through their :class:`VertexContext`,
    which is bound to the vertex and reaches every job holding it; it also carries the
    jobs' :class:`JobValue` values (e.g. a session id) and a thread-safe ``cancelled``
    event.

Storage
    :class:`CacheKeyStorage` maps keys to :class:`CacheRecord` (results by id + the
    canonical key): :class:`InMemoryCacheKeyStorage`, and :class:`SqliteCacheKeyStorage`
    (WAL, survives restarts, many readers and processes, versioned schema).

Imported and exported caches (``--cache-from`` / ``--cache-to``)
    A job may bring :class:`CacheSource` objects (``Solver.new_job(cache_sources=...)``):
    read-only caches consulted after the key storage for the vertices it holds. A hit
    there counts like any hit (no input is loaded); its results are materialized by the
    source only when needed (``CacheSource.load``) and then saved and recorded locally
    under the vertex's keys; a source that cannot load them makes it a miss. For exports,
    :func:`cache_chain` walks the vertices behind a job's results and lists their keys,
    links to their inputs' records (selector, output index) and records
    (:class:`CacheChainRecord`), inputs first; formats and transports live above
    (:mod:`dockyard.remotecache`). Keys travel as they are: an importer indexes the keys
    it is given, so they are the keys this module computes (``_keys._VERSION`` is part
    of each, so a cache written with other key rules simply never hits).
"""

from ._chain import CacheChainLink, CacheChainRecord, cache_chain
from ._context import VertexContext
from ._memory import InMemoryCacheKeyStorage
from ._results import ResultRef
from ._solver import Job, Solver, SolverStatistics
from ._sqlite import SqliteCacheKeyStorage
from .types import (
    CacheKeyStorage,
    CacheMap,
    CacheRecord,
    CacheSource,
    ContentDigestFn,
    Dep,
    Edge,
    JobValue,
    Op,
    Result,
    ResultStorage,
    Vertex,
    VertexOptions,
)

__all__ = [
    "CacheChainLink",
    "CacheChainRecord",
    "CacheKeyStorage",
    "CacheMap",
    "CacheRecord",
    "CacheSource",
    "ContentDigestFn",
    "Dep",
    "Edge",
    "InMemoryCacheKeyStorage",
    "Job",
    "JobValue",
    "Op",
    "Result",
    "ResultRef",
    "ResultStorage",
    "Solver",
    "SolverStatistics",
    "SqliteCacheKeyStorage",
    "Vertex",
    "VertexContext",
    "VertexOptions",
    "cache_chain",
]
