"""The overlayfs snapshotter: each snapshot's ``fs`` is one overlay layer (an upperdir).

Layout: ``<root>/<id>/fs`` (the layer), ``<root>/<id>/work`` (overlay's workdir),
``<root>/<id>/flat`` (only for deep chains, see below).

The kernel stacks at most 500 lower layers. A longer chain is mounted as its top layers
plus one *flattened* ancestor: a full copy of that ancestor's merged tree, made once and
kept beside it (committed snapshots never change). Flattened ancestors sit at depths that
are multiples of ``flatten_stride``, so a growing chain reuses the same copy for many
steps instead of copying on every new layer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from ._apply import apply_tar
from ._base import BaseSnapshotter
from ._copy import copy_tree
from ._diff import write_upper_diff
from ._metadata import Record
from .mount import MAX_OVERLAY_LOWERS, mounted
from .types import Kind, LayerResult, Mount

__all__ = ["OverlaySnapshotter"]

_OVERLAY_OPTIONS = ("index=off", "redirect_dir=off")


class OverlaySnapshotter(BaseSnapshotter):
    """Snapshots as overlayfs layers; mounts are overlay (or bind for a single layer)."""

    name = "overlayfs"

    def __init__(
        self,
        root: Path,
        *,
        max_lowers: int = MAX_OVERLAY_LOWERS,
        flatten_stride: int = 128,
    ) -> None:
        if not 1 <= flatten_stride < max_lowers:
            raise ValueError("flatten_stride must be at least 1 and below max_lowers")
        super().__init__(root)
        self.max_lowers = max_lowers
        self.flatten_stride = flatten_stride
        self._flat_locks: dict[int, asyncio.Lock] = {}

    def _make_dirs(self, rec: Record) -> None:
        super()._make_dirs(rec)
        (self._dir(rec.id) / "work").mkdir(mode=0o700)

    async def _mounts(self, rec: Record) -> list[Mount]:
        fs = str(self._fs(rec.id))
        parents = self._meta.chain(rec.id)[1:]
        if rec.kind is Kind.ACTIVE:
            if not parents:
                return [Mount(type="bind", source=fs, options=("rbind", "rw"))]
            lowers = await self.lower_dirs(parents)
            work = str(self._dir(rec.id) / "work")
            return [
                Mount(
                    type="overlay",
                    source="overlay",
                    options=(
                        "lowerdir=" + ":".join(lowers),
                        f"upperdir={fs}",
                        f"workdir={work}",
                        *_OVERLAY_OPTIONS,
                    ),
                )
            ]
        if not parents:
            return [Mount(type="bind", source=fs, options=("rbind", "ro"))]
        lowers = await self.lower_dirs(parents)
        if len(lowers) == 1:
            return [Mount(type="bind", source=lowers[0], options=("rbind", "ro"))]
        return [
            Mount(
                type="overlay",
                source="overlay",
                options=("lowerdir=" + ":".join(lowers), *_OVERLAY_OPTIONS, "ro"),
            )
        ]

    async def lower_dirs(self, chain: list[int]) -> list[str]:
        """Layer directories (top first) that together show committed chain ``chain``.

        At most ``max_lowers`` of them: deeper chains end in a flattened ancestor.
        """
        n = len(chain)
        if n <= self.max_lowers:
            return [str(self._fs(sid)) for sid in chain]
        stride = self.flatten_stride
        need = n - self.max_lowers + 1
        depth = -(-need // stride) * stride  # the ancestor kept flattened
        cut = n - depth
        flat = await self._flattened(chain[cut:])
        return [str(self._fs(sid)) for sid in chain[:cut]] + [flat]

    async def _flattened(self, chain: list[int]) -> str:
        sid = chain[0]
        flat = self._dir(sid) / "flat"
        if flat.is_dir():
            return str(flat)
        lock = self._flat_locks.setdefault(sid, asyncio.Lock())
        async with lock:
            if flat.is_dir():
                return str(flat)
            lowers = await self.lower_dirs(chain)
            tmp = self._dir(sid) / f"flat.tmp-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                await asyncio.to_thread(_flatten, lowers, str(tmp))
                os.rename(tmp, flat)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
        self._flat_locks.pop(sid, None)
        return str(flat)

    async def _parent_lowers(self, rec: Record) -> list[str]:
        parents = self._meta.chain(rec.id)[1:]
        return await self.lower_dirs(parents) if parents else []

    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        rec = self._meta.get(key)
        if rec.kind is Kind.VIEW:
            return await asyncio.to_thread(write_upper_diff, None, out, clamp_mtime)
        return await asyncio.to_thread(write_upper_diff, str(self._fs(rec.id)), out, clamp_mtime)

    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        rec = self._active(key)
        lowers = await self._parent_lowers(rec)
        return await asyncio.to_thread(apply_tar, stream, str(self._fs(rec.id)), lowers)


def _flatten(lowers: list[str], dest: str) -> None:
    if len(lowers) == 1:
        copy_tree(lowers[0], dest)
        return
    mount = Mount(
        type="overlay",
        source="overlay",
        options=("lowerdir=" + ":".join(lowers), *_OVERLAY_OPTIONS, "ro"),
    )
    with mounted([mount]) as root:
        copy_tree(str(root), dest)
