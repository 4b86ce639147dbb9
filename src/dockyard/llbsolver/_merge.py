"""Merge and diff ops: composite refs made by the cache manager, no files copied here.

``merge`` layers its inputs in order (later inputs win; deletions in a later input's
layers apply to earlier ones). ``diff`` is what turns ``lower`` into ``upper``; an
input of ``-1`` is the empty tree (``diff(scratch, x)`` is all of ``x``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from dockyard.core import InternalError
from dockyard.solver import CacheMap, Result, VertexContext

from ._common import OpInfo, cache_digest
from .types import ImmutableRef, RefStore

__all__ = ["DiffOp", "MergeOp"]


def _refs(inputs: Sequence[Result], what: str) -> list[ImmutableRef]:
    out: list[ImmutableRef] = []
    for r in inputs:
        if not isinstance(r, ImmutableRef):
            raise InternalError(f"{what} input {r!r} is not a snapshot ref")
        out.append(r)
    return out


class MergeOp:
    """:class:`dockyard.solver.Op` of an LLB merge op."""

    def __init__(
        self, *, info: OpInfo, refs: RefStore, inputs: tuple[int, ...], n_inputs: int
    ) -> None:
        self.info = info
        self.refs = refs
        self.inputs = inputs
        self.n_inputs = n_inputs
        self._digest = cache_digest("merge", list(inputs))

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        return CacheMap(digest=self._digest)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        refs = _refs(inputs, "merge")
        async with self.info.errors():
            layers = [refs[i] for i in self.inputs if i >= 0]
            return [await self.refs.merge(layers, description=self.info.name)]


class DiffOp:
    """:class:`dockyard.solver.Op` of an LLB diff op."""

    def __init__(self, *, info: OpInfo, refs: RefStore, lower: int, upper: int) -> None:
        self.info = info
        self.refs = refs
        self.lower = lower
        self.upper = upper
        self._digest = cache_digest("diff", [lower, upper])

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        return CacheMap(digest=self._digest)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        refs = _refs(inputs, "diff")
        async with self.info.errors():
            lower = refs[self.lower] if self.lower >= 0 else None
            upper = refs[self.upper] if self.upper >= 0 else None
            return [await self.refs.diff(lower, upper, description=self.info.name)]
