"""The native snapshotter: every snapshot is a full copy of its parent's tree.

Used where overlayfs is unavailable (inside some containers, on file systems that cannot
be an upperdir) or when configured. Preparing costs a full copy (an in-kernel copy, a
reflink where the file system shares extents); views bind the parent's tree read-only.

Merges and diffs (see :mod:`._base`) are materialized: the first layer is copied when it
is a plain base, every other layer is applied as its layer tar (streamed through a pipe
from :meth:`NativeSnapshotter.diff` into the contained extractor). A computed diff keeps
its layer, whiteouts included, in ``<id>/layer`` beside the visible tree in ``<id>/fs``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from dockyard.core import DockyardError

from ._apply import apply_tar
from ._base import BaseSnapshotter
from ._copy import copy_tree
from ._diff import write_tree_diff, write_tree_diff_dir, write_upper_diff
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

    async def view_mounts(self, key: str) -> list[Mount]:
        rec = self._meta.get(key)
        if rec.kind is not Kind.COMMITTED:
            raise DockyardError(f"snapshot {key!r} is not committed (it is {rec.kind.value})")
        return [Mount(type="bind", source=str(self._fs(rec.id)), options=("rbind", "ro"))]

    async def _fill_composite(self, rec: Record, layers: list[int]) -> None:
        dest = str(self._fs(rec.id))
        for index, lid in enumerate(layers):
            layer = self._meta.get_id(lid)
            if index == 0 and layer.parent_id is None and not layer.composite:
                await asyncio.to_thread(copy_tree, str(self._fs(lid)), dest)
                continue
            await self._apply_layer(layer.key, dest)

    async def _apply_layer(self, key: str, dest: str) -> None:
        """Apply the layer tar of ``key`` to the plain tree ``dest``, through a pipe."""
        write = self._layer_writer(key, None)
        await asyncio.to_thread(_pipe_through, write, lambda f: apply_tar(f, dest, None))

    async def _fill_computed(self, rec: Record, lower: str | None, upper: str | None) -> None:
        layer = str(self._dir(rec.id) / "layer")
        os.mkdir(layer, 0o755)
        old = str(self._fs(self._meta.get(lower).id)) if lower is not None else None
        new = str(self._fs(self._meta.get(upper).id)) if upper is not None else None
        fs = str(self._fs(rec.id))

        def fill() -> None:
            write_tree_diff_dir(old, new, layer)
            # the visible tree: the layer applied to nothing (its whiteouts delete nothing)
            _pipe_through(
                lambda f: write_upper_diff(layer, f, None), lambda f: apply_tar(f, fs, None)
            )

        await asyncio.to_thread(fill)

    def _layer_writer(self, key: str, clamp_mtime: int | None) -> Callable[[BinaryIO], LayerResult]:
        """A blocking function writing the layer tar of ``key`` (see :meth:`diff`)."""
        rec = self._meta.get(key)
        if rec.composite:
            layers = self._meta.layers(rec.id)
            if layers == [rec.id]:
                layer = str(self._dir(rec.id) / "layer")
                return lambda out: write_upper_diff(layer, out, clamp_mtime)
            if len(layers) != 1:
                raise DockyardError(
                    f"snapshot {key!r} is a merge or diff of {len(layers)} layers:"
                    " write the layer tar of each of its layers instead"
                )
            return self._layer_writer(self._meta.get_id(layers[0]).key, clamp_mtime)
        if rec.kind is Kind.VIEW:
            return lambda out: write_tree_diff(None, None, out, clamp_mtime)
        old = str(self._fs(rec.parent_id)) if rec.parent_id is not None else None
        new = str(self._fs(rec.id))
        return lambda out: write_tree_diff(old, new, out, clamp_mtime)

    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        return await asyncio.to_thread(self._layer_writer(key, clamp_mtime), out)

    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        rec = self._active(key)
        return await asyncio.to_thread(apply_tar, stream, str(self._fs(rec.id)), None)


def _pipe_through(
    produce: Callable[[BinaryIO], object], consume: Callable[[BinaryIO], object]
) -> None:
    """Run ``produce`` (writing) in a thread and ``consume`` (reading) here, joined by a
    pipe. Either side failing stops the other; the producer's error wins (the consumer
    then only saw a truncated stream)."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(w, "wb") as f:
                produce(f)
        except BrokenPipeError:
            pass  # the consumer stopped reading: its error is the one to report
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="layer-pipe", daemon=True)
    thread.start()
    try:
        with os.fdopen(r, "rb") as f:
            consume(f)
    except BaseException as exc:
        thread.join()
        if errors:
            raise errors[0] from exc
        raise
    thread.join()
    if errors:
        raise errors[0]
