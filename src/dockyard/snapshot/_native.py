"""The native snapshotter: every snapshot is a full copy of its parent's tree.

Used where overlayfs is unavailable (inside some containers, on file systems that cannot
be an upperdir) or when configured. Preparing costs a full copy (an in-kernel copy, a
reflink where the file system shares extents); views bind the parent's tree read-only.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO

from ._apply import apply_tar
from ._base import BaseSnapshotter
from ._copy import copy_tree
from ._diff import write_tree_diff
from ._metadata import Record
from .types import Kind, LayerResult, Mount

__all__ = ["NativeSnapshotter"]


class NativeSnapshotter(BaseSnapshotter):
    """Snapshots as full directory copies; mounts are bind mounts."""

    name = "native"

    async def _populate(self, rec: Record) -> None:
        if rec.kind is Kind.ACTIVE and rec.parent_id is not None:
            await asyncio.to_thread(copy_tree, str(self._fs(rec.parent_id)), str(self._fs(rec.id)))

    async def _mounts(self, rec: Record) -> list[Mount]:
        if rec.kind is Kind.VIEW:
            src = self._fs(rec.parent_id if rec.parent_id is not None else rec.id)
            return [Mount(type="bind", source=str(src), options=("rbind", "ro"))]
        return [Mount(type="bind", source=str(self._fs(rec.id)), options=("rbind", "rw"))]

    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        rec = self._meta.get(key)
        if rec.kind is Kind.VIEW:
            return await asyncio.to_thread(write_tree_diff, None, None, out, clamp_mtime)
        old = str(self._fs(rec.parent_id)) if rec.parent_id is not None else None
        return await asyncio.to_thread(
            write_tree_diff, old, str(self._fs(rec.id)), out, clamp_mtime
        )

    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        rec = self._active(key)
        return await asyncio.to_thread(apply_tar, stream, str(self._fs(rec.id)), None)
