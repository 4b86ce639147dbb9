"""The solver's seams: vertices and edges, the Op protocol, results and the two storages.

Everything here is small on purpose (BuildKit's ``solver.Op`` has three methods). The
engine in :mod:`dockyard.solver` drives these protocols; the ``llbsolver`` layer adapts LLB
ops to :class:`Op` and the snapshot cache manager implements :class:`ResultStorage`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

from dockyard.core import VertexRef

if TYPE_CHECKING:
    from ._context import VertexContext

__all__ = [
    "CacheKeyStorage",
    "CacheMap",
    "CacheRecord",
    "CacheSource",
    "ContentDigestFn",
    "Dep",
    "Edge",
    "JobValue",
    "Op",
    "Result",
    "ResultStorage",
    "Vertex",
    "VertexOptions",
]

T = TypeVar("T")


@runtime_checkable
class Result(Protocol):
    """A handle on one output of an op (for the real engine: a snapshot ref).

    ``id`` names the underlying thing (stable across handles on it). ``release()`` gives
    this handle up; it must be called exactly once by whoever owns the handle and may do
    I/O. Ownership rules (see the package docstring): what :meth:`Op.exec` returns is owned
    by the solver from then on; what :meth:`ResultStorage.load` returns is owned by the
    caller; inputs passed to an op are borrowed for the duration of the call only.
    """

    @property
    def id(self) -> str: ...

    async def release(self) -> None: ...


ContentDigestFn = Callable[[Result, "VertexContext"], Awaitable[str]]
"""Computes a content digest of (the selected part of) an input's result, e.g. a checksum
of the files a copy reads. The result is borrowed; the function must not release it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dep:
    """How one input contributes to the cache key of the vertex that reads it.

    ``selector`` narrows what the vertex reads from the input (a path, for a copy); it is
    part of the definition-based key. ``compute_digest``, when set, makes the input also
    contribute a *content* key: it is called (only when the definition-based lookup
    missed) with the input's result and must return a digest of exactly the part that
    matters, so that unrelated changes to the input do not invalidate this vertex.
    """

    selector: str | None = None
    compute_digest: ContentDigestFn | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheMap:
    """What an op contributes to its cache key (BuildKit's ``CacheMap``).

    ``digest`` identifies the op's definition (everything about it except its inputs).
    ``deps`` has one :class:`Dep` per input in order, or is empty to mean a plain
    ``Dep()`` for every input. ``volatile``: the digest is unique to this computation (a
    source that cannot know its content before fetching it, BuildKit's ``random:``
    keys); such keys, and keys made from them, never hit again, so cache exports leave
    them out.
    """

    digest: str
    deps: tuple[Dep, ...] = ()
    volatile: bool = False


@runtime_checkable
class Op(Protocol):
    """The work behind a vertex. Implementations must be safe to call concurrently.

    - :meth:`cache_map` is called once per key computation, before any input result is
      available, and should be cheap (a digest of the definition; a source may resolve
      what it points at here, e.g. an image tag to a digest).
    - :meth:`exec` is called only on a cache miss, with the results of the vertex's input
      edges in input order. The inputs are borrowed: do not release them or keep them
      after returning. The returned results (one per output) become the solver's. On
      cancellation (``asyncio.CancelledError``) or failure, ``exec`` releases whatever it
      created itself. Raise :class:`dockyard.core.DockyardError` subclasses; anything else
      is reported as an ``InternalError``. The solver attaches the vertex to the error.
    - :meth:`acquire` returns an async context manager held around :meth:`exec` for a
      per-op resource limit (e.g. one pull per registry at a time); return
      ``contextlib.nullcontext()`` when there is none. It is entered before the solver's
      global parallelism slot so that a waiting op never holds a slot.
    """

    async def cache_map(self, ctx: VertexContext) -> CacheMap: ...

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]: ...

    def acquire(self) -> AbstractAsyncContextManager[object]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VertexOptions:
    """Per-vertex options that do not change what the vertex computes.

    ``ignore_cache``: never look the vertex up; run it whenever a job needs it or
    anything downstream of it (see the package docstring for what its dependants see). ``description`` and ``progress_group``
    are carried to progress renderers.
    """

    ignore_cache: bool = False
    description: tuple[tuple[str, str], ...] = ()
    progress_group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Vertex:
    """One node of a build graph: an op, its input edges and a display name.

    ``digest`` is the vertex's identity: two vertices with the same digest are the same
    computation (same op, same inputs), wherever they come from, and are computed once
    while both are wanted. Equality and hashing use the digest only, so comparing or
    hashing a vertex never walks its (possibly huge) input graph.
    """

    digest: str
    name: str = ""
    inputs: tuple[Edge, ...] = ()
    op: Op
    options: VertexOptions = VertexOptions()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vertex):
            return NotImplemented
        return self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Vertex({self.name or self.digest!r}, inputs={len(self.inputs)})"

    def output(self, index: int = 0) -> Edge:
        """The edge for this vertex's output ``index``."""
        return Edge(vertex=self, index=index)

    def ref(self) -> VertexRef:
        """The vertex as errors name it."""
        return VertexRef(digest=self.digest, name=self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """One output (``index``) of a vertex: what a dependant consumes and a job solves."""

    vertex: Vertex
    index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheRecord:
    """A cached computation: the results (by :class:`ResultStorage` id, one per output)
    and the canonical key the vertex exposes to its dependants when it hits this record.
    ``id`` is unique per record; ``created`` is epoch seconds."""

    id: str
    canonical_key: str
    result_ids: tuple[str, ...]
    created: float


@runtime_checkable
class CacheKeyStorage(Protocol):
    """Maps cache keys to :class:`CacheRecord`; several keys may point at one record.

    Contract: :meth:`lookup` is a point read, called for every vertex of every build (the
    hot path of a no-op rebuild), so it must be fast and must not wait for writers.
    :meth:`save` atomically creates the record if its ``id`` is new and points every key
    in ``keys`` at it (replacing what they pointed at; no keys: nothing happens); a record
    no key points at any more may be deleted. The solver calls it only after the record's
    results are saved in the :class:`ResultStorage`. Storages never own results.
    """

    async def lookup(self, key: str) -> CacheRecord | None: ...

    async def save(self, keys: Sequence[str], record: CacheRecord) -> None: ...


@runtime_checkable
class CacheSource(Protocol):
    """A read-only cache a job brings along (an imported remote cache), consulted after
    the solver's own :class:`CacheKeyStorage` for the vertices that job holds.

    - :meth:`lookup` is called on a local miss, once per key computation and key kind;
      like :meth:`CacheKeyStorage.lookup` it must be cheap (an in-memory index). Its
      records' ``result_ids`` mean something to this source only.
    - :meth:`load` materializes one of those results (e.g. pulls and unpacks layers) and
      returns a new handle the caller owns, or ``None`` when it cannot (missing or
      corrupt data): the solver then runs the op as on a miss. It is called only when a
      hit's result is actually needed, and must not raise for bad data (report a warning
      through ``ctx`` instead): an imported cache never fails a build. The solver saves a
      loaded result in its :class:`ResultStorage` and records it under the vertex's keys
      in its key storage, so later builds find it without the source.
    """

    async def lookup(self, key: str) -> CacheRecord | None: ...

    async def load(self, result_id: str, ctx: VertexContext) -> Result | None: ...


@runtime_checkable
class ResultStorage(Protocol):
    """Keeps results loadable by id across builds (the snapshot cache manager, later).

    - :meth:`save` makes the given results loadable by the returned ids (one per result,
      in order) and returns only once they are complete and durable; it does not take
      the handles (the caller still releases them).
    - :meth:`load` returns a *new* handle owned by the caller, or ``None`` if the result
      is gone (pruned); the solver then runs the op again. There is deliberately no
      ``exists``: a check before a load would race with pruning, so the load is the check.
    """

    async def save(self, results: Sequence[Result]) -> Sequence[str]: ...

    async def load(self, result_id: str) -> Result | None: ...


class JobValue(Generic[T]):
    """A typed key for a job-scoped value (a session id, credentials, ...).

    Keys compare by identity, like :class:`contextvars.ContextVar`: create one per kind of
    value at module level and pass ``{KEY: value}`` to ``Solver.new_job(values=...)``; ops
    read it with ``ctx.values(KEY)``.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"JobValue({self.name!r})"
