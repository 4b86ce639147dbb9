"""The source op: delegated to the resolver registered for the identifier's scheme."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from dockyard.core import NotFoundError
from dockyard.solver import CacheMap, Result, Vertex, VertexContext

from ._common import OpInfo, cache_digest
from .types import RANDOM_KEY_PREFIX, SourceInstance, SourceRequest, SourceResolver

__all__ = ["SourceOp", "source_scheme"]


def source_scheme(vertex: Vertex) -> str | None:
    """The scheme of a source op's vertex (``local``, ``docker-image`` ...); ``None`` for
    a vertex of any other op."""
    op = vertex.op
    return op.request.scheme if isinstance(op, SourceOp) else None


class SourceOp:
    """:class:`dockyard.solver.Op` of an LLB source op.

    The resolver is asked once per op (the first key computation) for a
    :class:`~dockyard.llbsolver.types.SourceInstance`; its key becomes the op's cache-map
    digest and its snapshot the op's result.
    """

    def __init__(self, *, info: OpInfo, request: SourceRequest, resolver: SourceResolver) -> None:
        self.info = info
        self.request = request
        self.resolver = resolver
        self._instance: SourceInstance | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def create(
        cls,
        *,
        info: OpInfo,
        request: SourceRequest,
        sources: Mapping[str, SourceResolver],
    ) -> SourceOp:
        resolver = sources.get(request.scheme)
        if resolver is None:
            known = ", ".join(sorted(sources)) or "none"
            raise NotFoundError(
                f"no source for {request.scheme}:// (identifier {request.identifier!r};"
                f" this worker has: {known})",
                vertex=info.ref(),
            )
        return cls(info=info, request=request, resolver=resolver)

    @property
    def instance(self) -> SourceInstance | None:
        """The resolved source (``None`` before the first key computation): what it
        pinned (an image's digest, a commit) is read from it for provenance."""
        return self._instance

    async def _resolved(self, ctx: VertexContext) -> SourceInstance:
        async with self._lock:
            if self._instance is None:
                self._instance = await self.resolver.resolve(self.request, ctx)
            return self._instance

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        async with self.info.errors():
            instance = await self._resolved(ctx)
            key = await instance.cache_key(ctx)
        return CacheMap(
            digest=cache_digest("source", [self.request.scheme, key]),
            volatile=key.startswith(RANDOM_KEY_PREFIX),
        )

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        async with self.info.errors():
            instance = await self._resolved(ctx)
            return [await instance.snapshot(ctx)]
