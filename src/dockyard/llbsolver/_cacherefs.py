"""The :class:`~dockyard.llbsolver.types.RefStore` of a real worker: the cache manager.

A thin adapter: the ops speak the small :class:`RefStore` protocol (so that their unit
tests can run on directories), the cache manager has a richer API of its own. The refs
the ops get are the cache manager's own :class:`dockyard.cache.ImmutableRef` and
:class:`dockyard.cache.MutableRef` objects, which satisfy the protocols directly.
"""

from __future__ import annotations

import contextlib
import posixpath
import stat
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from dockyard.cache import CacheManager, FileIndex, Sharing
from dockyard.cache import ImmutableRef as CacheImmutableRef
from dockyard.cache import MutableRef as CacheMutableRef
from dockyard.core import InternalError, NotFoundError
from dockyard.llb import CacheSharing
from dockyard.snapshot.types import Mount

from .types import ContentSelector, ImmutableRef, MutableRef, PreviousCopy

_COPY_LABEL = "dockyard.copy.of"  # "<op digest>@<base record id>" of a copy's result
_COPY_SOURCE_LABEL = "dockyard.copy.source"  # the record it copied from
# earlier results of a copy tried for links (newest first; every re-run adds one)
_PREVIOUS_COPIES = 8

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
    """:class:`~dockyard.llbsolver.types.RefStore` over a :class:`CacheManager`, with its
    :class:`~dockyard.llbsolver.types.CopyHistory`: a copy's result is labelled with the
    copy (op digest and base) and its source, and a source with a file index (a local
    source's snapshot) tells which entries are unchanged since."""

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

    @contextlib.asynccontextmanager
    async def previous_copy(
        self, key: str, base: ImmutableRef | None, source: ImmutableRef, src_path: str
    ) -> AsyncIterator[PreviousCopy | None]:
        manager = self.manager
        src = _own(source)
        assert src is not None
        current = await manager.file_index(src)
        held: list[CacheImmutableRef] = []
        try:
            found: PreviousCopy | None = None
            labelled = manager.records_with_label(
                _COPY_LABEL, _copy_of(key, base), limit=_PREVIOUS_COPIES
            )
            for rid in labelled if current is not None else ():
                assert current is not None
                try:
                    previous = await manager.get(rid)
                    held.append(previous)
                    # only its index is read: not a use (a local source's next sync
                    # builds on its most recently used snapshot)
                    before = await manager.get(
                        previous.labels.get(_COPY_SOURCE_LABEL, ""), touch=False
                    )
                    held.append(before)
                except NotFoundError:
                    continue
                old = await manager.file_index(before)
                layer = await manager.layer_path(previous)
                if old is None or layer is None or not _same_root(old, current, src_path):
                    continue
                found = PreviousCopy(layer=layer, unchanged=_unchanged(old, current))
                break
            yield found
        finally:
            for ref in held:
                await ref.release()

    async def remember_copy(
        self, key: str, *, base: ImmutableRef | None, source: ImmutableRef, result: ImmutableRef
    ) -> None:
        ref, src = _own(result), _own(source)
        assert ref is not None
        assert src is not None
        if await self.manager.file_index(src) is None:
            return  # nothing to compare a later source with
        ref.set_label(_COPY_LABEL, _copy_of(key, base))
        ref.set_label(_COPY_SOURCE_LABEL, src.id)

    async def own_path(self, ref: MutableRef) -> tuple[Path, bool]:
        if not isinstance(ref, CacheMutableRef):
            raise InternalError(f"{ref!r} is not a ref of the cache manager")
        return await self.manager.own_path(ref)

    async def layer_path(self, ref: ImmutableRef) -> Path | None:
        own = _own(ref)
        return await self.manager.layer_path(own) if own is not None else None


def _copy_of(key: str, base: ImmutableRef | None) -> str:
    return f"{key}@{base.id if base is not None else ''}"


def _same_root(old: FileIndex, new: FileIndex, src_path: str) -> bool:
    """Whether ``src_path`` names the same kind of entry in both trees, reached without
    a symlink (so that the copy maps the same source paths to the same destinations)."""
    rel = posixpath.normpath("/" + src_path.lstrip("/")).lstrip("/")
    for index in (old, new):
        if index.resolve(src_path, follow_final=True) != rel:
            return False
    if rel == "":
        return True
    return stat.S_IFMT(old.meta[rel][0]) == stat.S_IFMT(new.meta[rel][0])


def _unchanged(old: FileIndex, new: FileIndex) -> Callable[[str], bool]:
    def unchanged(rel: str) -> bool:
        node = new.nodes.get(rel)
        return (
            node is not None
            and node == old.nodes.get(rel)
            and new.meta.get(rel) == old.meta.get(rel)
        )

    return unchanged
