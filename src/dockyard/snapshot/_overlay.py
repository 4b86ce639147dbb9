"""The overlayfs snapshotter: each snapshot's ``fs`` is one overlay layer (an upperdir).

Layout: ``<root>/<id>/fs`` (the layer), ``<root>/<id>/work`` (overlay's workdir),
``<root>/<id>/flat`` (only for deep chains, see below).

The kernel stacks at most 500 lower layers. A longer chain is mounted as its top layers
plus one *flattened* ancestor: a full copy of that ancestor's merged tree, made once and
kept beside it (committed snapshots never change). Flattened ancestors sit at depths that
are multiples of ``flatten_stride``, so a growing chain reuses the same copy for many
steps instead of copying on every new layer.

Merges and diffs (see :mod:`._base`) stack their layers' directories: a merge costs no
copy at all. A computed diff's own ``fs`` is an upperdir-style layer (whiteouts as 0/0
devices). Stacked this way, a whiteout can sit in a directory that no other layer of the
stack has; overlayfs lists such a "pure" directory as it is, whiteout devices included.
So every composite has a *skeleton*, ``<id>/skel``: the directories of its layers that
hold whiteouts, empty, stacked below all its layers. Every such directory is then a
merged one, whose listing overlayfs filters. (The skeleton also makes a single-layer
composite two lower layers, which a read-only overlay needs.) Which directories of a
layer hold whiteouts is found once per layer and kept in ``<id>/whiteout-dirs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import BinaryIO

from dockyard.core import DockyardError

from ._apply import apply_tar
from ._base import BaseSnapshotter
from ._copy import copy_tree
from ._diff import write_tree_diff_dir, write_upper_diff
from ._metadata import Record
from .mount import MAX_OVERLAY_LOWERS, mounted, readable
from .types import Kind, LayerResult, Mount

__all__ = ["OverlaySnapshotter"]

_OVERLAY_OPTIONS = ("index=off", "redirect_dir=off")


class OverlaySnapshotter(BaseSnapshotter):
    """Snapshots as overlayfs layers; mounts are overlay (or bind for a single layer)."""

    name = "overlayfs"
    layered = True

    def __init__(
        self,
        root: Path,
        *,
        max_lowers: int = MAX_OVERLAY_LOWERS,
        flatten_stride: int = 128,
        remove_orphans: bool = True,
    ) -> None:
        if not 1 <= flatten_stride < max_lowers:
            raise ValueError("flatten_stride must be at least 1 and below max_lowers")
        super().__init__(root, remove_orphans=remove_orphans)
        self.max_lowers = max_lowers
        self.flatten_stride = flatten_stride
        self._flat_locks: dict[Path, asyncio.Lock] = {}

    def _make_dirs(self, rec: Record) -> None:
        super()._make_dirs(rec)
        (self._dir(rec.id) / "work").mkdir(mode=0o700)

    async def _mounts(self, rec: Record) -> list[Mount]:
        fs = str(self._fs(rec.id))
        parents = self._meta.layer_chain(rec.id)[0][1:]
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
        return await self._readonly(parents)

    async def view_mounts(self, key: str) -> list[Mount]:
        rec = self._meta.get(key)
        if rec.kind is not Kind.COMMITTED:
            raise DockyardError(f"snapshot {key!r} is not committed (it is {rec.kind.value})")
        chain, _ = self._meta.layer_chain(rec.id)
        return await self._readonly(chain)

    async def _merged_dirs(self, key: str) -> list[str]:
        rec = self._meta.get(key)
        if rec.kind is not Kind.COMMITTED:
            raise DockyardError(f"snapshot {key!r} is not committed (it is {rec.kind.value})")
        chain, _ = self._meta.layer_chain(rec.id)
        return await self.lower_dirs(chain)

    async def _readonly(self, chain: list[int]) -> list[Mount]:
        lowers = await self.lower_dirs(chain)
        if len(lowers) == 1:  # a plain base layer: no whiteouts in it
            return [Mount(type="bind", source=lowers[0], options=("rbind", "ro"))]
        return [
            Mount(
                type="overlay",
                source="overlay",
                options=("lowerdir=" + ":".join(lowers), *_OVERLAY_OPTIONS, "ro"),
            )
        ]

    def _layer_dir(self, sid: int) -> str:
        """The directory of layer ``sid``; a negative id is that composite's skeleton."""
        return str(self._dir(-sid) / "skel") if sid < 0 else str(self._fs(sid))

    async def _fill_composite(self, rec: Record, layers: list[int]) -> None:
        await asyncio.to_thread(self._make_skeleton, rec, layers)

    def _make_skeleton(self, rec: Record, layers: list[int]) -> None:
        skel = self._dir(rec.id) / "skel"
        skel.mkdir(mode=0o755)
        dirs: set[str] = set()
        for lid in layers:
            dirs.update(self._whiteout_dirs(lid))
        for rel in sorted(dirs):
            (skel / rel).mkdir(mode=0o755, parents=True, exist_ok=True)

    def _whiteout_dirs(self, lid: int) -> list[str]:
        """Directories (relative) of layer ``lid`` that hold whiteouts; cached on disk."""
        cache = self._dir(lid) / "whiteout-dirs"
        try:
            return [line for line in cache.read_text().split("\n") if line]
        except FileNotFoundError:
            pass
        found = _find_whiteout_dirs(str(self._fs(lid)))
        tmp = self._dir(lid) / f"whiteout-dirs.tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_text("".join(d + "\n" for d in found))
        os.replace(tmp, cache)
        return found

    async def lower_dirs(self, chain: list[int]) -> list[str]:
        """Layer directories (top first) that together show committed chain ``chain``.

        At most ``max_lowers`` of them: deeper chains end in a flattened ancestor.
        """
        n = len(chain)
        if n <= self.max_lowers:
            return [self._layer_dir(sid) for sid in chain]
        stride = self.flatten_stride
        need = n - self.max_lowers + 1
        depth = -(-need // stride) * stride  # the ancestor kept flattened
        cut = n - depth
        flat = await self._flattened(chain[cut:])
        return [self._layer_dir(sid) for sid in chain[:cut]] + [flat]

    async def _flattened(self, chain: list[int]) -> str:
        sid = abs(chain[0])
        flat = self._dir(sid) / "flat"
        if self._meta.layer_chain(sid)[0] != chain:
            # a layer stacked by a merge has other layers below it than its own parents
            digest = hashlib.sha256(",".join(map(str, chain)).encode()).hexdigest()[:16]
            flat = self._dir(sid) / f"flat-{digest}"
        if flat.is_dir():
            return str(flat)
        lock = self._flat_locks.setdefault(flat, asyncio.Lock())
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
        self._flat_locks.pop(flat, None)
        return str(flat)

    async def _parent_lowers(self, rec: Record) -> list[str]:
        parents = self._meta.layer_chain(rec.id)[0][1:]
        return await self.lower_dirs(parents) if parents else []

    async def _fill_computed(self, rec: Record, lower: str | None, upper: str | None) -> None:
        low = await self.view_mounts(lower) if lower is not None else None
        up = await self.view_mounts(upper) if upper is not None else None
        await asyncio.to_thread(_compute_diff, low, up, str(self._fs(rec.id)))
        await asyncio.to_thread(self._make_skeleton, rec, [rec.id])

    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        rec = self._meta.get(key)
        if rec.composite:
            layers = self._meta.layers(rec.id)
            if layers != [rec.id]:
                if len(layers) != 1:
                    raise DockyardError(
                        f"snapshot {key!r} is a merge or diff of {len(layers)} layers:"
                        " write the layer tar of each of its layers instead"
                    )
                return await self.diff(
                    self._meta.get_id(layers[0]).key, out, clamp_mtime=clamp_mtime
                )
        if rec.kind is Kind.VIEW:
            return await asyncio.to_thread(write_upper_diff, None, out, clamp_mtime)
        lowers = await self._parent_lowers(rec)
        return await asyncio.to_thread(
            write_upper_diff, str(self._fs(rec.id)), out, clamp_mtime, lowers
        )

    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        rec = self._active(key)
        lowers = await self._parent_lowers(rec)
        return await asyncio.to_thread(apply_tar, stream, str(self._fs(rec.id)), lowers)


def _find_whiteout_dirs(root: str) -> list[str]:
    found: set[str] = set()
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(f"{rel}/{e.name}" if rel else e.name)
                elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    found.add(rel)
    return sorted(d for d in found if d)


def _compute_diff(low: list[Mount] | None, up: list[Mount] | None, dest: str) -> None:
    with contextlib.ExitStack() as stack:
        old = str(stack.enter_context(readable(low))) if low is not None else None
        new = str(stack.enter_context(readable(up))) if up is not None else None
        write_tree_diff_dir(old, new, dest)


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
