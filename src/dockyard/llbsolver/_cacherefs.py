"""The :class:`~dockyard.llbsolver.types.RefStore` of a real worker: the cache manager.

A thin adapter: the ops speak the small :class:`RefStore` protocol (so that their unit
tests can run on directories), the cache manager has a richer API of its own. The refs
the ops get are the cache manager's own :class:`dockyard.cache.ImmutableRef` and
:class:`dockyard.cache.MutableRef` objects, which satisfy the protocols directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from dockyard.cache import CacheManager, Sharing
from dockyard.cache import ImmutableRef as CacheImmutableRef
from dockyard.core import InternalError
from dockyard.llb import CacheSharing
from dockyard.snapshot.types import Mount

from .types import ContentSelector, ImmutableRef, MutableRef

__all__ = ["CacheRefs"]

_SHARING = {
    CacheSharing.SHARED: Sharing.SHARED,
    CacheSharing.PRIVATE: Sharing.PRIVATE,
    CacheSharing.LOCKED: Sharing.LOCKED,
}


def _own(ref: ImmutableRef | None) -> CacheImmutableRef | None:
    if ref is None or isinstance(ref, CacheImmutableRef):
        return ref
    raise InternalError(f"{ref!r} is not a ref of the cache manager")


class CacheRefs:
    """:class:`~dockyard.llbsolver.types.RefStore` over a :class:`CacheManager`."""

    def __init__(self, manager: CacheManager) -> None:
        self.manager = manager

    async def new_mutable(
        self, parent: ImmutableRef | None, *, description: str = ""
    ) -> MutableRef:
        return await self.manager.new_mutable(_own(parent), description=description)

    async def _empty(self, description: str) -> ImmutableRef:
        mutable = await self.manager.new_mutable(None, description=description)
        return await mutable.commit()

    async def merge(self, inputs: Sequence[ImmutableRef], *, description: str = "") -> ImmutableRef:
        refs = [r for r in (_own(i) for i in inputs) if r is not None]
        if not refs:
            return await self._empty(description)
        return await self.manager.merge(refs, description=description)

    async def diff(
        self, lower: ImmutableRef | None, upper: ImmutableRef | None, *, description: str = ""
    ) -> ImmutableRef:
        ref = await self.manager.diff(_own(lower), _own(upper), description=description)
        return ref if ref is not None else await self._empty(description)

    @contextlib.asynccontextmanager
    async def cache_mount(
        self, id: str, *, sharing: CacheSharing, base: ImmutableRef | None = None
    ) -> AsyncIterator[Sequence[Mount]]:
        async with self.manager.cache_mount(
            id, sharing=_SHARING[CacheSharing(sharing)], parent=_own(base)
        ) as mutable:
            yield await mutable.mounts()

    async def checksum(self, ref: ImmutableRef, selector: ContentSelector) -> str:
        own = _own(ref)
        assert own is not None
        return await self.manager.checksum(
            own,
            selector.path,
            include_patterns=selector.include_patterns,
            exclude_patterns=selector.exclude_patterns,
            follow_links=selector.follow_links,
            wildcard=selector.wildcard,
        )
