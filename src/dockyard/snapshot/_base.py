"""What both snapshotters share: records, directories, removal, usage, walking."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
from collections.abc import AsyncIterator
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


class BaseSnapshotter:
    """Records in ``<root>/metadata.db``, one directory ``<root>/<id>`` per snapshot."""

    name = "base"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._meta = MetaStore(self.root / "metadata.db")
        self._cleanup_orphans()

    def close(self) -> None:
        self._meta.close()

    # -- directories -------------------------------------------------------------------
    def _dir(self, sid: int) -> Path:
        return self.root / str(sid)

    def _fs(self, sid: int) -> Path:
        return self.root / str(sid) / "fs"

    def _cleanup_orphans(self) -> None:
        """Remove directories left by a crash (made but never recorded, or half removed)."""
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
            await asyncio.to_thread(shutil.rmtree, self._dir(rec.id), True)
            raise
        return rec

    async def _populate(self, rec: Record) -> None:
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

    async def _mounts(self, rec: Record) -> list[Mount]:
        raise NotImplementedError

    async def commit(self, name: str, key: str) -> None:
        rec = self._meta.get(key)
        usage = await asyncio.to_thread(disk_usage, str(self._own_dir(rec)))
        self._meta.commit(name, key, usage.size, usage.inodes)

    def _own_dir(self, rec: Record) -> Path:
        """The directory holding what this snapshot alone owns."""
        return self._fs(rec.id)

    async def remove(self, key: str) -> None:
        rec = self._meta.remove(key)
        d = self._dir(rec.id)
        gone = self.root / f"rm-{rec.id}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, gone)
        await asyncio.to_thread(shutil.rmtree, gone, True)

    async def usage(self, key: str) -> Usage:
        rec = self._meta.get(key)
        if rec.kind is Kind.COMMITTED and rec.size >= 0:
            return Usage(size=rec.size, inodes=rec.inodes)
        if rec.kind is Kind.VIEW:
            return Usage()
        return await asyncio.to_thread(disk_usage, str(self._own_dir(rec)))

    async def walk(self) -> AsyncIterator[Info]:
        for rec in self._meta.all():
            yield rec.info()

    async def set_labels(self, key: str, labels: dict[str, str]) -> None:
        """Replace the labels of ``key``."""
        self._meta.set_labels(key, labels)

    # -- layers ----------------------------------------------------------------------------
    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        """Write the changes of ``key`` against its parent to ``out`` as a layer tar.

        ``key`` may be active or committed. OCI whiteouts, entries in name order, PAX
        headers; ``clamp_mtime`` caps every timestamp (``SOURCE_DATE_EPOCH``). Returns the
        digest and size of the uncompressed tar written.
        """
        raise NotImplementedError

    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        """Extract the uncompressed layer tar ``stream`` into active snapshot ``key``.

        Whiteouts delete from the parent's tree; hard links, symlinks, xattrs, device
        nodes, owners, modes and times are kept. No entry can write outside the snapshot
        (:class:`~dockyard.core.PathEscapeError` for names climbing out). Returns the
        digest and size of the uncompressed stream, read to its end.
        """
        raise NotImplementedError

    def _active(self, key: str) -> Record:
        rec = self._meta.get(key)
        if rec.kind is not Kind.ACTIVE:
            raise DockyardError(f"snapshot {key!r} is not active (it is {rec.kind.value})")
        return rec
