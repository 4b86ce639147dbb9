"""What both snapshotters share: records, directories, removal, usage, walking, and the
creation of merge and diff snapshots.

Merge and diff snapshots are *composites*: committed snapshots without a parent whose
content is a list of layers (bottom first), as BuildKit's MergeOp and DiffOp define it.

- ``merge(key, parents)``: the layers of every parent in order — applying them one on
  top of the other, later layers win, and deletions (whiteouts) recorded in a later
  parent's layers delete from earlier parents too.
- ``make_diff(key, lower, upper)``: when ``lower``'s layers are the bottom of ``upper``'s
  (an ancestor), the layers in between; otherwise one *computed* layer: the tree
  comparison of the two, with whiteouts for what ``upper`` lacks. Mounted alone a diff
  shows what ``upper`` added or changed; merged on top of something, its deletions apply.

The overlayfs snapshotter stacks layer directories without copying anything; the
native one materializes the result (copying the first layer, applying the others as
layer tars). :meth:`BaseSnapshotter.layers` lists the layer snapshots of any snapshot, so
that an exporter writes one layer tar per layer and reuses those it already has.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shutil
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO

from dockyard.core import DockyardError

from ._metadata import MetaStore, Record
from .types import Info, Kind, LayerResult, Mount, Usage

__all__ = ["BaseSnapshotter", "disk_usage"]


def disk_usage(path: str) -> Usage:
    """Allocated bytes and distinct inodes under ``path`` (hard links counted once)."""
    seen: set[int] = set()
    size = 0
    stack = [path]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Usage()
    seen.add(st.st_ino)
    size += st.st_blocks * 512
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                size += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return Usage(size=size, inodes=len(seen))


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def mark_top_directory(path: Path) -> bool:
    """Mark ``path`` as the top of directory hierarchies (``chattr +T``; ext2/3/4, best
    effort: ``False`` where the file system has no such flag). ext4 then places each new
    directory made in it (a snapshot's) in a block group of its own choosing, spread by
    the directory's name, instead of next to its parent. A state directory deleted just
    before leaves thousands of freed inodes there, and ext4 without a journal checks each
    freed inode's deletion time on every allocation in that group until a minute or more
    has passed: 0.3-1 ms per new file (a first build's context, an image's files) instead
    of ~0.02 ms. Snapshot ids that start at random (``MetaStore``) make the names, and so
    the groups, differ from those of the state directory deleted before."""
    import array
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class BaseSnapshotter(abc.ABC):
    """Records in ``<root>/metadata.db``, one directory ``<root>/<id>`` per snapshot.

    A backend implements the abstract methods: how a snapshot is mounted, layer diff and
    apply, read-only view mounts and computed diffs."""

    name = "base"
    layered = False
    """Whether an active snapshot's own directory (:meth:`own_path`) holds only its
    changes over its parent's tree (an overlayfs upper directory) rather than the whole
    tree (a copy, for the native snapshotter)."""

    def __init__(self, root: Path, *, remove_orphans: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        mark_top_directory(self.root)
        self._meta = MetaStore(self.root / "metadata.db")
        self.left_over = False
        """Whether a removal left a directory behind (the next open must look for
        orphans even after a clean close)."""
        if remove_orphans:
            self.remove_orphans()

    def close(self) -> None:
        self._meta.close()

    # -- directories -------------------------------------------------------------------
    def _dir(self, sid: int) -> Path:
        return self.root / str(sid)

    def _fs(self, sid: int) -> Path:
        return self.root / str(sid) / "fs"

    def remove_orphans(self) -> None:
        """Remove directories left by a crash (made but never recorded, or half removed).
        A pass over every snapshot directory: the constructor does it unless told that
        the last user closed cleanly (``remove_orphans=False``; the cache manager knows)."""
        ids = self._meta.ids()
        for entry in os.scandir(self.root):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.isdigit() and int(entry.name) in ids:
                continue
            if entry.name.isdigit() or entry.name.startswith("rm-"):
                shutil.rmtree(entry.path, ignore_errors=True)

    def _make_dirs(self, rec: Record) -> None:
        d = self._dir(rec.id)
        d.mkdir(mode=0o700)
        (d / "fs").mkdir(mode=0o755)

    async def _create(self, key: str, kind: Kind, parent: str | None) -> Record:
        rec = self._meta.create(key, kind, parent)
        try:
            self._make_dirs(rec)
            await self._populate(rec)
        except BaseException:
            self._meta.remove(key)
            await self._rmtree(self._dir(rec.id))
            raise
        return rec

    async def _populate(self, rec: Record) -> None:  # noqa: B027 - a hook, no-op by default
        """Fill a new snapshot's directory (native copies its parent here)."""

    # -- the Snapshotter protocol --------------------------------------------------------
    async def stat(self, key: str) -> Info:
        return self._meta.get(key).info()

    async def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        rec = await self._create(key, Kind.ACTIVE, parent)
        return await self._mounts(rec)

    async def view(self, key: str, parent: str | None = None) -> list[Mount]:
        rec = await self._create(key, Kind.VIEW, parent)
        return await self._mounts(rec)

    async def mounts(self, key: str) -> list[Mount]:
        rec = self._meta.get(key)
        if rec.kind is Kind.COMMITTED:
            raise DockyardError(f"snapshot {key!r} is committed: make a view of it to read it")
        return await self._mounts(rec)

    @abc.abstractmethod
    async def _mounts(self, rec: Record) -> list[Mount]:
        """The mounts of active snapshot ``rec`` (read-write, or read-only for a view)."""

    async def commit(self, name: str, key: str) -> None:
        rec = self._meta.get(key)
        usage = await asyncio.to_thread(disk_usage, str(self._own_dir(rec)))
        self._meta.commit(name, key, usage.size, usage.inodes)

    def _own_dir(self, rec: Record) -> Path:
        """The directory holding what this snapshot alone owns."""
        return self._fs(rec.id)

    async def flatten(self, key: str, parent: str) -> None:
        """Create committed snapshot ``key``, without a parent, showing the tree of
        committed ``parent`` with its regular files hard-linked from ``parent``'s layers
        (no file content is copied): a long chain becomes one layer. Files of committed
        snapshots are never written in place, so sharing them is safe."""
        from ._copy import link_merged

        layers = await self._merged_dirs(parent)
        rec = await self._create(key, Kind.ACTIVE, None)
        try:
            await asyncio.to_thread(link_merged, layers, str(self._fs(rec.id)))
            await self.commit(key, key)
        except BaseException:
            await self.remove(key)
            raise

    async def _merged_dirs(self, key: str) -> list[str]:
        """Directories, top first, whose overlay shows committed ``key``."""
        return [str(self._fs(self._meta.get(key).id))]

    async def layer_path(self, key: str) -> Path | None:
        """The directory of committed snapshot ``key`` that holds what it alone owns
        (see :meth:`own_path`), or ``None`` for a merge or diff. Read only."""
        rec = self._meta.get(key)
        if rec.kind is not Kind.COMMITTED or rec.composite:
            return None
        return self._own_dir(rec)

    async def own_path(self, key: str) -> Path:
        """The directory of active snapshot ``key`` that holds what it alone owns, to be
        written without a mount: its whole tree, or with :attr:`layered` and a parent,
        an overlayfs upper directory (whiteouts as 0/0 character devices, directories
        merged with the parent's unless marked opaque)."""
        return self._own_dir(self._active(key))

    async def remove(self, key: str) -> None:
        rec = self._meta.remove(key)
        d = self._dir(rec.id)
        gone = self.root / f"rm-{rec.id}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, gone)
        await self._rmtree(gone)

    async def _rmtree(self, path: Path) -> None:
        def remove() -> None:
            shutil.rmtree(path, True)
            if os.path.lexists(path):
                self.left_over = True

        await asyncio.to_thread(remove)

    async def usage(self, key: str) -> Usage:
        rec = self._meta.get(key)
        if rec.kind is Kind.COMMITTED and rec.size >= 0:
            return Usage(size=rec.size, inodes=rec.inodes)
        if rec.kind is Kind.VIEW:
            return Usage()
        return await asyncio.to_thread(disk_usage, str(self._own_dir(rec)))

    def fingerprint(self) -> str:
        """Changes whenever a snapshot is made, committed or removed (cheap: one query)."""
        return self._meta.fingerprint()

    async def walk(self) -> AsyncIterator[Info]:
        for rec in self._meta.all():
            yield rec.info()

    async def set_labels(self, key: str, labels: dict[str, str]) -> None:
        """Replace the labels of ``key``."""
        self._meta.set_labels(key, labels)

    # -- layers ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        """Write the changes of ``key`` against its parent to ``out`` as a layer tar.

        ``key`` may be active or committed. OCI whiteouts, entries in name order, PAX
        headers; ``clamp_mtime`` caps every timestamp (``SOURCE_DATE_EPOCH``). Returns the
        digest and size of the uncompressed tar written.
        """

    @abc.abstractmethod
    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        """Extract the uncompressed layer tar ``stream`` into active snapshot ``key``.

        Whiteouts delete from the parent's tree; hard links, symlinks, xattrs, device
        nodes, owners, modes and times are kept. No entry can write outside the snapshot
        (:class:`~dockyard.core.PathEscapeError` for names climbing out). Returns the
        digest and size of the uncompressed stream, read to its end.
        """

    # -- composites: merge and diff --------------------------------------------------------
    async def layers(self, key: str) -> list[str]:
        """The keys of the layer snapshots that make up committed ``key``, bottom first.

        For a plain chain: its snapshots from the base up. A merge or diff contributes the
        layers it was made of; a computed diff is its own single layer. :meth:`diff` of
        each of these keys gives that layer's tar.
        """
        rec = self._meta.get(key)
        if rec.kind is not Kind.COMMITTED:
            raise DockyardError(f"snapshot {key!r} is not committed (it is {rec.kind.value})")
        return [self._meta.get_id(sid).key for sid in self._layer_ids(key)]

    async def layer_count(self, key: str) -> int:
        """How many layer snapshots make up committed ``key`` (``len(layers(key))`` in one
        query: a local source asks before every sync how deep its chain is)."""
        return len(self._layer_ids(key))

    @abc.abstractmethod
    async def view_mounts(self, key: str) -> list[Mount]:
        """Read-only mounts of committed ``key``, without creating a view snapshot.

        Valid for as long as ``key`` exists; the caller keeps it from being removed.
        """

    async def merge(self, key: str, parents: Sequence[str]) -> None:
        """Create committed snapshot ``key``: the layers of committed ``parents`` applied
        in order (see the module docstring)."""
        if not parents:
            raise DockyardError(f"merge {key!r} needs at least one parent")
        layers: list[int] = []
        for parent in parents:
            layers += self._layer_ids(parent)
        await self._composite(key, _dedupe_bottom_first(layers), computed=None)

    async def make_diff(self, key: str, lower: str | None, upper: str | None) -> None:
        """Create committed snapshot ``key``: the changes from committed ``lower`` to
        committed ``upper`` (``None``: the empty tree). See the module docstring."""
        low = self._layer_ids(lower) if lower is not None else []
        up = self._layer_ids(upper) if upper is not None else []
        if up[: len(low)] == low:
            await self._composite(key, up[len(low) :], computed=None)
            return
        await self._composite(key, [], computed=(lower, upper))

    def _layer_ids(self, key: str) -> list[int]:
        rec = self._meta.get(key)
        if rec.kind is not Kind.COMMITTED:
            raise DockyardError(f"snapshot {key!r} is not committed (it is {rec.kind.value})")
        ids, _ = self._meta.layer_chain(rec.id)
        return [sid for sid in reversed(ids) if sid > 0]

    async def _composite(
        self, key: str, layers: list[int], *, computed: tuple[str | None, str | None] | None
    ) -> None:
        rec = await self._create(key, Kind.ACTIVE, None)
        try:
            if computed is not None:
                await self._fill_computed(rec, *computed)
                layers = [rec.id]
            elif layers:
                await self._fill_composite(rec, layers)
            usage = await asyncio.to_thread(disk_usage, str(self._dir(rec.id)))
            if layers:
                self._meta.commit_composite(key, layers, usage.size, usage.inodes)
            else:  # nothing at all: a plain empty snapshot
                self._meta.commit(key, key, usage.size, usage.inodes)
        except BaseException:
            await self.remove(key)
            raise

    async def _fill_composite(self, rec: Record, layers: list[int]) -> None:  # noqa: B027 - a hook
        """Make active snapshot ``rec`` show ``layers`` (bottom first) once committed."""

    @abc.abstractmethod
    async def _fill_computed(self, rec: Record, lower: str | None, upper: str | None) -> None:
        """Write the computed diff layer from ``lower`` to ``upper`` for ``rec``."""

    def _active(self, key: str) -> Record:
        rec = self._meta.get(key)
        if rec.kind is not Kind.ACTIVE:
            raise DockyardError(f"snapshot {key!r} is not active (it is {rec.kind.value})")
        return rec


def _dedupe_bottom_first(layers: list[int]) -> list[int]:
    """Keep each layer only at its topmost (last) place; see ``MetaStore.layer_chain``."""
    seen: set[int] = set()
    out: list[int] = []
    for lid in reversed(layers):
        if lid not in seen:
            seen.add(lid)
            out.append(lid)
    out.reverse()
    return out
