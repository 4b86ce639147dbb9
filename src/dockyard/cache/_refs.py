"""Handles on cache records: :class:`ImmutableRef` (committed, read-only) and
:class:`MutableRef` (a writable work area)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from dockyard.core import DockyardError, InternalError
from dockyard.snapshot import LayerResult, Mount
from dockyard.snapshot.mount import mount_all, readonly_mounts, unmount

from ._db import RecordRow
from .types import LayerBlob, RecordType

if TYPE_CHECKING:
    from ._manager import CacheManager

__all__ = ["ImmutableRef", "MutableRef"]

T = TypeVar("T")


class _RefBase:
    __slots__ = ("_manager", "_released", "_row")

    def __init__(self, manager: CacheManager, row: RecordRow) -> None:
        self._manager = manager
        self._row = row
        self._released = False

    @property
    def id(self) -> str:
        """The record id (also the snapshot key); stable across handles and restarts."""
        return self._row.id

    @property
    def record_type(self) -> RecordType:
        return self._row.record_type

    @property
    def description(self) -> str:
        return self._row.description

    @property
    def created(self) -> float:
        return self._row.created

    @property
    def parent_ids(self) -> tuple[str, ...]:
        """The records this one is built on, in order (a chain parent, merge inputs, or
        a diff's lower and upper)."""
        return tuple(p.id for p in self._row.parents)

    @property
    def released(self) -> bool:
        return self._released

    def _check(self) -> None:
        if self._released:
            raise InternalError(f"cache ref {self.id} used after release")

    def _mount(self, mounts: list[Mount]) -> contextlib.AbstractAsyncContextManager[Path]:
        return _mounted(mounts, self._manager.mount_dir)


class ImmutableRef(_RefBase):
    """A counted handle on a committed record; satisfies the solver's ``Result``.

    Several handles may share one record (:meth:`clone`, or another ``get``/``load``);
    the record is *in use* while any is live. :meth:`release` gives this handle up and
    never deletes anything: unused records stay until ``prune`` removes them. Releasing
    twice is harmless; using a released handle raises :class:`InternalError`.
    """

    __slots__ = ()

    @property
    def size(self) -> int:
        """Bytes the record's snapshot owns alone (computed when committed)."""
        return self._row.size

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._row.labels)

    def clone(self) -> ImmutableRef:
        """Another handle on the same record; the caller owns and releases it."""
        self._check()
        return self._manager._acquire(self._row, touch=False)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._manager._release_immutable(self.id)

    async def mounts(self) -> list[Mount]:
        """Read-only mount specs of the tree (valid while this handle is live)."""
        self._check()
        return await self._manager.snapshotter.view_mounts(self.id)

    @contextlib.asynccontextmanager
    async def mount(self) -> AsyncIterator[Path]:
        """Mount the tree read-only on a temporary directory for the block."""
        async with self._mount(await self.mounts()) as root:
            yield root

    async def layers(self) -> list[ImmutableRef]:
        """Handles on the records whose layers make up this tree, bottom first (for an
        image export: one layer tar per entry, see :meth:`write_layer`). The caller
        releases them."""
        self._check()
        return await self._manager._layers(self)

    async def write_layer(self, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        """Write this record's own layer (its changes over what it is built on) to
        ``out`` as an uncompressed tar with OCI whiteouts; ``out`` is written from a
        worker thread. For a merge or diff of several layers, use :meth:`layers`."""
        self._check()
        return await self._manager.snapshotter.diff(self.id, out, clamp_mtime=clamp_mtime)

    def blob(self, variant: str) -> LayerBlob | None:
        """The compressed blob recorded for this record's layer in ``variant``, if any."""
        self._check()
        return self._manager._db.blob(self.id, variant)

    def set_blob(self, blob: LayerBlob) -> None:
        """Remember the compressed blob made from this record's layer. Blocks until the
        write is committed (a thread may call it: see :mod:`dockyard.cache._db`)."""
        self._check()
        self._manager._db.set_blob(self.id, blob).wait()

    def set_created(self, created: float) -> None:
        """Date the record's content (epoch seconds) to when it was first made: a layer
        imported from a build cache keeps the time it was built at, as BuildKit's
        ``createdAt`` does, so that images made from it are the same."""
        self._check()
        self._manager._db.set_created(self.id, created).wait()
        self._row = self._manager._row(self.id)

    def set_label(self, key: str, value: str | None) -> None:
        """Set (or with ``None`` remove) a label on the record. Blocks until the write is
        committed (a thread may call it)."""
        self._check()
        self._manager._set_label(self, key, value)

    def __repr__(self) -> str:
        state = " released" if self._released else ""
        return f"<ImmutableRef {self.id} {self.record_type.value}{state}>"


class MutableRef(_RefBase):
    """A writable work area on top of an optional committed parent.

    Mount it (:meth:`mounts` for specs, :meth:`mount` here), then :meth:`commit` it into
    an :class:`ImmutableRef`, or :meth:`release` it to throw it away. A *persistent*
    mutable ref (a cache mount, a named ref from ``CacheManager.named_mutable``) outlives
    its users and builds and is never committed; its context manager releases it.
    """

    __slots__ = ("_persistent",)

    def __init__(self, manager: CacheManager, row: RecordRow) -> None:
        super().__init__(manager, row)
        self._persistent = row.persistent

    @property
    def persistent(self) -> bool:
        return self._persistent

    @property
    def name(self) -> str | None:
        """The name of a persistent ref (``cachemount:<id>`` for cache mounts)."""
        return self._row.name

    async def mounts(self) -> list[Mount]:
        """Writable mount specs of the tree (valid until commit or release)."""
        self._check()
        return await self._manager.snapshotter.mounts(self.id)

    @contextlib.asynccontextmanager
    async def mount(self, *, readonly: bool = False) -> AsyncIterator[Path]:
        """Mount the tree on a temporary directory for the block (writable unless
        ``readonly``, which may be used while the tree is mounted writable elsewhere)."""
        mounts = await self.mounts()
        async with self._mount(readonly_mounts(mounts) if readonly else mounts) as root:
            yield root

    async def commit(self) -> ImmutableRef:
        """Make the tree a committed record (same id) and return a handle on it; this
        mutable handle is used up. The tree must no longer be mounted."""
        self._check()
        if self._persistent:
            raise DockyardError(
                f"cache ref {self.id} ({self.name}) is persistent and cannot be committed"
            )
        self._released = True
        return await self._manager._commit(self)

    async def release(self) -> None:
        """Give the handle up: an uncommitted ref is removed, a persistent one stays."""
        if self._released:
            return
        self._released = True
        await self._manager._release_mutable(self)

    def __repr__(self) -> str:
        kind = f" persistent {self.name}" if self._persistent else ""
        state = " released" if self._released else ""
        return f"<MutableRef {self.id}{kind}{state}>"


async def finish(start: Callable[[], Awaitable[T]]) -> T:
    """Await ``start()`` to its end even if the caller is cancelled meanwhile (then the
    cancellation is re-raised afterwards): for work that must not be left half done,
    like a mount whose target must be unmounted again."""
    task = asyncio.ensure_future(start())
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


@contextlib.asynccontextmanager
async def _mounted(mounts: list[Mount], parent: Path) -> AsyncIterator[Path]:
    target = Path(tempfile.mkdtemp(prefix="m-", dir=parent))
    try:
        try:
            await finish(lambda: asyncio.to_thread(mount_all, mounts, target))
        except asyncio.CancelledError:
            # the mount finished after all: undo it (unmounting nothing is no error)
            await finish(lambda: asyncio.to_thread(unmount, target))
            raise
        try:
            yield target
        finally:
            await finish(lambda: asyncio.to_thread(unmount, target))
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)
