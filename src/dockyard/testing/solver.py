"""Fake vertices, ops, results and result storage for exercising ``dockyard.solver``.

Like BuildKit's ``vtx()`` helpers: graphs of fake ops whose results are plain Python
values, so that cache hits, deduplication, cancellation and errors are testable in
milliseconds. One :class:`FakeBackend` is at once the :class:`~dockyard.solver.ResultStorage`
and the factory of vertices, and it counts what happened::

    backend = FakeBackend()
    base = backend.vertex("base", value={"a": "1", "b": "2"})
    copy = backend.vertex("copy", base, content={0: "a"}, fn=lambda ins: ins[0]["a"])
    async with solver.new_job() as job:
        ref = await job.solve(copy.output())
    assert backend.exec_counts["copy"] == 1
    backend.assert_no_leaks()
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from dockyard.solver import (
    CacheMap,
    Dep,
    Edge,
    Result,
    Vertex,
    VertexContext,
    VertexOptions,
)

__all__ = ["FakeBackend", "FakeOp", "FakeResult", "Hook", "random_dag"]

Hook = Callable[[VertexContext], Awaitable[None]]
"""Awaited at the start of a fake ``exec`` (barriers, events, logs from tests)."""


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeResult:
    """A handle on a value; records its release (a second release is a bug)."""

    __slots__ = ("_backend", "_id", "released", "value")

    def __init__(self, backend: FakeBackend, result_id: str, value: Any) -> None:
        self._backend = backend
        self._id = result_id
        self.value = value
        self.released = False

    @property
    def id(self) -> str:
        return self._id

    async def release(self) -> None:
        if self.released:
            raise AssertionError(f"result {self._id} released twice")
        self.released = True
        self._backend.live.discard(self)
        self._backend.released.append(self._id)

    def __repr__(self) -> str:
        return f"<FakeResult {self._id}={self.value!r}{' released' if self.released else ''}>"


class FakeOp:
    """An op computing ``fn(input values)`` (one value per output); see
    :meth:`FakeBackend.vertex` for the knobs."""

    def __init__(
        self,
        backend: FakeBackend,
        name: str,
        *,
        definition: str,
        outputs: int,
        fn: Callable[[list[Any]], Any] | None,
        deps: tuple[Dep, ...],
        hook: Hook | None,
        fail: BaseException | None,
        limit: contextlib.AbstractAsyncContextManager[object] | None,
        volatile: bool = False,
    ) -> None:
        self.backend = backend
        self.volatile = volatile
        self.name = name
        self.definition = definition
        self.outputs = outputs
        self.fn = fn
        self.deps = deps
        self.hook = hook
        self.fail = fail
        self.limit = limit
        self._digest = _sha(definition)

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        self.backend.cache_map_counts[self.name] += 1
        return CacheMap(digest=self._digest, deps=self.deps, volatile=self.volatile)

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        backend = self.backend
        backend.exec_counts[self.name] += 1
        backend.running.add(self.name)
        try:
            for result in inputs:
                if not isinstance(result, FakeResult) or result.released:
                    raise AssertionError(f"{self.name}: input {result!r} is not a live result")
            if self.hook is not None:
                await self.hook(ctx)
            if self.fail is not None:
                raise self.fail
            values = [result.value for result in inputs]  # type: ignore[attr-defined]
            if self.fn is not None:
                out = self.fn(values)
            else:
                ids = ",".join(result.id for result in inputs)
                out = f"{self.name}({ids})"
            outs: list[Any] = list(out) if self.outputs != 1 else [out]
            if len(outs) != self.outputs:
                raise AssertionError(f"{self.name}: fn made {len(outs)} of {self.outputs} outputs")
            return [backend.new_result(value) for value in outs]
        except asyncio.CancelledError:
            backend.cancelled.append(self.name)
            raise
        finally:
            backend.running.discard(self.name)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self.limit if self.limit is not None else contextlib.nullcontext()


class FakeBackend:
    """The :class:`~dockyard.solver.ResultStorage` of fake results plus a vertex factory.

    Counters: ``exec_counts`` / ``cache_map_counts`` per vertex name, ``loads`` (ids
    loaded), ``released`` (ids of released handles), ``cancelled`` (names of execs that
    were cancelled), ``running`` (names executing now), ``live`` (handles not released).
    ``save_hook``, if set, is awaited at the start of every :meth:`save`.
    """

    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}
        self.live: set[FakeResult] = set()
        self.released: list[str] = []
        self.loads: list[str] = []
        self.cancelled: list[str] = []
        self.running: set[str] = set()
        self.exec_counts: Counter[str] = Counter()
        self.cache_map_counts: Counter[str] = Counter()
        self.save_hook: Callable[[], Awaitable[None]] | None = None
        self._ids = itertools.count(1)

    # -- ResultStorage -----------------------------------------------------------------

    async def save(self, results: Sequence[Result]) -> Sequence[str]:
        if self.save_hook is not None:
            await self.save_hook()
        ids = []
        for result in results:
            if not isinstance(result, FakeResult) or result.released:
                raise AssertionError(f"saving {result!r}, not a live fake result")
            self.saved[result.id] = result.value
            ids.append(result.id)
        return ids

    async def load(self, result_id: str) -> Result | None:
        if result_id not in self.saved:
            return None
        self.loads.append(result_id)
        return self._handle(result_id, self.saved[result_id])

    # -- helpers -----------------------------------------------------------------------

    def new_result(self, value: Any) -> FakeResult:
        """A fresh result (as an op makes one)."""
        return self._handle(f"r{next(self._ids)}", value)

    def _handle(self, result_id: str, value: Any) -> FakeResult:
        result = FakeResult(self, result_id, value)
        self.live.add(result)
        return result

    def prune(self, *result_ids: str) -> None:
        """Forget saved results (all of them without arguments): loads return None."""
        for result_id in result_ids or list(self.saved):
            self.saved.pop(result_id, None)

    def assert_no_leaks(self) -> None:
        """Every handle ever made was released."""
        if self.live:
            raise AssertionError(f"unreleased results: {sorted(self.live, key=lambda r: r.id)}")

    def vertex(
        self,
        name: str,
        *inputs: Vertex | Edge,
        value: Any = None,
        fn: Callable[[list[Any]], Any] | None = None,
        outputs: int = 1,
        definition: str | None = None,
        content: Mapping[int, str | None] | None = None,
        selectors: Mapping[int, str] | None = None,
        ignore_cache: bool = False,
        hook: Hook | None = None,
        fail: BaseException | None = None,
        limit: contextlib.AbstractAsyncContextManager[object] | None = None,
        progress_group: str | None = None,
        volatile: bool = False,
    ) -> Vertex:
        """A fake vertex.

        ``value`` (or ``fn(input values)``) is what it produces; by default a string
        naming the vertex and its inputs' result ids. ``definition`` (default: ``name``
        and ``value``) is what its cache-map digest hashes; the vertex digest adds the
        inputs. ``content`` maps input numbers to a selector whose content digest is a
        content-based key (``None``: the whole value; a key: that item of a mapping).
        ``hook`` is awaited at the start of each exec; ``fail`` is raised by exec.
        ``volatile`` marks its cache-map digest as unique to the build (a local source).
        """
        edges = tuple(i if isinstance(i, Edge) else i.output(0) for i in inputs)
        if value is not None and fn is None:
            fn = _constant(value)
        if definition is None:
            definition = json.dumps([name, repr(value)])
        deps: tuple[Dep, ...] = ()
        if content or selectors:
            content = content or {}
            selectors = selectors or {}
            deps = tuple(
                Dep(
                    selector=content.get(i, selectors.get(i)),
                    compute_digest=_content_digest(content[i]) if i in content else None,
                )
                for i in range(len(edges))
            )
        op = FakeOp(
            self,
            name,
            definition=definition,
            outputs=outputs,
            fn=fn,
            deps=deps,
            hook=hook,
            fail=fail,
            limit=limit,
            volatile=volatile,
        )
        digest = _sha(json.dumps([definition, [[e.vertex.digest, e.index] for e in edges]]))
        return Vertex(
            digest=digest,
            name=name,
            inputs=edges,
            op=op,
            options=VertexOptions(ignore_cache=ignore_cache, progress_group=progress_group),
        )


def _constant(value: Any) -> Callable[[list[Any]], Any]:
    def fn(_values: list[Any]) -> Any:
        return value

    return fn


def _content_digest(selector: str | None) -> Callable[[Result, VertexContext], Awaitable[str]]:
    async def compute(result: Result, ctx: VertexContext) -> str:
        if not isinstance(result, FakeResult) or result.released:
            raise AssertionError(f"content digest of {result!r}, not a live fake result")
        value = result.value
        if selector is not None:
            value = value.get(selector) if isinstance(value, Mapping) else None
        return _sha(json.dumps(value, sort_keys=True, default=repr))

    return compute


def random_dag(
    backend: FakeBackend, size: int, *, seed: int, max_inputs: int = 3, window: int = 50
) -> list[Vertex]:
    """``size`` vertices in topological order, each reading up to ``max_inputs`` of the
    ``window`` vertices made before it (so the graph is deep as well as wide)."""
    rng = random.Random(seed)
    vertices: list[Vertex] = []
    for n in range(size):
        lo = max(0, n - window)
        count = rng.randint(0, min(max_inputs, n - lo))
        picks = sorted(set(rng.sample(range(lo, n), count))) if count else []
        vertices.append(backend.vertex(f"v{n}", *(vertices[i] for i in picks)))
    return vertices
