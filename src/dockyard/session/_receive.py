"""The receiving half of a file sync: bring a destination directory up to date with the
entries a (possibly hostile) sender describes, asking only for the content that changed.

Phases (each blocking, run in a thread by :func:`receive`):

1. :meth:`Receiver.plan` validates the entries (clean relative paths, walk order, a
   parent directory before its children, known file types, hard links to earlier
   regular files), compares them with what ``dest`` holds (``lstat``: type, size, mtime,
   permissions, owner, link target, device numbers), deletes what vanished, makes
   directories, symlinks and special files, fixes the metadata of files whose content
   is unchanged, and returns the ids of the files whose content it wants;
2. :meth:`Receiver.write` stores content as it arrives: into a temporary file next to
   its target, renamed into place when complete (with mode, owner and mtime set). In a
   *private* destination (a new layer or snapshot, which nobody sees before the sync's
   result is committed) a file that did not exist is written at its final name
   directly: an error or a crash leaves a destination that is thrown away, never one
   that is committed;
3. :meth:`Receiver.finish` makes hard links and restores directory metadata, deepest
   first.

Everything is done relative to directory file descriptors opened one component at a
time with ``O_NOFOLLOW``, so nothing the sender says can make the receiver write through
a symlink or outside ``dest``: symlinks are created as links and never followed.

Content copied from this host (:class:`~dockyard.session.types.LocalFile`) is opened
through directory fds cached along the walk order (``O_NOFOLLOW`` at every step; anything
unexpected falls back to :func:`~dockyard.core.open_in_root`), and copied with
``copy_file_range`` up to the size the walk saw.

A sync into a new layer (:class:`~dockyard.session.SyncBase`) compares the sender's
entries with the base tree's stat keys instead of scanning a directory: when nothing
differs nothing is written at all; otherwise only the changes land in the layer (see
:meth:`Receiver.plan`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from dockyard.core import (
    DockyardError,
    PathEscapeError,
    Reporter,
    SessionError,
)

from ._dirfds import DirStack as _DirStack
from ._dirfds import SourceFiles
from ._progress import TransferProgress
from ._values import FileStat, StatKey, SyncBase, SyncResult
from .types import Chunk, Content, LocalFile, SyncSource

__all__ = ["Receiver", "receive"]

_T = TypeVar("_T")

_TEMP_PREFIX = ".dockyard-sync."
_KNOWN_TYPES = frozenset(
    {stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK}
)
_MAX_ID = (1 << 32) - 1
_IFMT = 0o170000  # stat.S_IFMT's mask
_COPY_PIECE = 64 << 20  # bytes copied between checks for cancellation
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITERS = max(1, min(4, os.cpu_count() or 1))
"""Threads writing whole new files at once (see :meth:`Receiver.write`)."""
_PART = 32  # neighbouring files a writer thread takes at a time
_HASH_READ = 64 << 10  # local files up to this size are read, hashed and written
_EMPTY_SHA256 = hashlib.sha256(b"").digest()


def _key(path: str) -> list[str]:
    return path.split("/")


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _name(path: str) -> str:
    return path.rpartition("/")[2]


_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def _in_parts(
    items: Sequence[Content],
    fn: Callable[[Sequence[Content]], tuple[int, int]],
    stop: Callable[[], bool],
) -> tuple[int, int]:
    """``fn`` over parts of ``items`` of :data:`_PART` neighbours, by the calling thread
    and up to ``_WRITERS - 1`` threads of a shared pool that take the next part as they
    get free (a busy pool leaves the work to the caller); returns the sums of ``fn``'s
    results. After an error no part is started; the first error is raised once the
    parts in progress have ended (``fn`` gives up early when ``stop`` says so)."""
    global _pool
    parts = [items[i : i + _PART] for i in range(0, len(items), _PART)]
    helpers = min(_WRITERS, len(parts)) - 1
    if helpers <= 0:
        return fn(items)
    lock = threading.Lock()
    pending = iter(parts)
    failed: list[BaseException] = []
    totals = [0, 0]

    def drain() -> None:
        while True:
            with lock:
                part = None if failed or stop() else next(pending, None)
            if part is None:
                return
            try:
                files, size = fn(part)
            except BaseException as exc:
                with lock:
                    failed.append(exc)
                return
            with lock:
                totals[0] += files
                totals[1] += size

    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=_WRITERS - 1, thread_name_prefix="dockyard-sync"
            )
        pool = _pool
    started = [pool.submit(drain) for _ in range(helpers)]
    drain()
    for future in started:
        future.cancel()  # not started yet: nothing left for it
    concurrent.futures.wait(started)
    if failed:
        raise failed[0]
    if stop():
        raise SessionError("file sync cancelled")
    return totals[0], totals[1]


def _validate(entries: Sequence[FileStat], allow_devices: bool) -> dict[str, int]:
    """Index of each path; raises on anything a well-behaved sender does not send.
    (Runs once per entry of every received list: written for speed — membership tests
    on the split path, bit masks instead of ``stat`` calls.)"""
    index: dict[str, int] = {}
    dirs = {""}
    previous: list[str] | None = None
    for i, entry in enumerate(entries):
        path = entry.path
        parts = path.split("/")
        if (
            not path
            or "" in parts
            or "." in parts
            or ".." in parts
            or "\0" in path
            # a character is at most 4 bytes encoded: only long paths can be too long
            or (len(path) > 1024 and len(path.encode("utf-8", "surrogateescape")) > 4096)
        ):
            raise PathEscapeError(
                f"file sync: {path!r} is not a clean relative path inside the destination"
            )
        if previous is not None and parts <= previous:
            raise SessionError(f"file sync: entry {path!r} is out of order or repeated")
        previous = parts
        if path.rpartition("/")[0] not in dirs:
            raise SessionError(f"file sync: {path!r} arrived before its parent directory")
        mode = entry.mode
        fmt = mode & _IFMT
        if fmt not in _KNOWN_TYPES or mode > 0o177777 or mode < 0:
            raise SessionError(f"file sync: {path!r} has an unsupported mode {mode:o}")
        uid, gid = entry.uid, entry.gid
        if (uid or gid or entry.size < 0) and not (
            0 <= uid <= _MAX_ID and 0 <= gid <= _MAX_ID and entry.size >= 0
        ):
            raise SessionError(f"file sync: {path!r} has invalid ownership or size")
        if fmt == stat.S_IFDIR:
            dirs.add(path)
        elif fmt == stat.S_IFREG:
            if entry.linkname:
                target = index.get(entry.linkname)
                if target is None or not entries[target].is_regular or entries[target].linkname:
                    raise SessionError(
                        f"file sync: hard link {path!r} names {entry.linkname!r}, "
                        "which is not an earlier regular file"
                    )
        elif fmt == stat.S_IFLNK:
            if not entry.linkname or "\0" in entry.linkname:
                raise SessionError(f"file sync: symlink {path!r} has an invalid target")
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK) and not allow_devices:
            raise SessionError(f"file sync: device node {path!r} is not accepted")
        index[path] = i
    return index


def _same(entry: FileStat, cur: StatKey, owners: bool) -> bool:
    """Whether ``entry`` matches the base tree's stat key (owners only with ``owners``)."""
    return (
        cur[0] == entry.mode
        and cur[4] == entry.mtime_ns
        and cur[3] == entry.size
        and cur[5] == entry.linkname
        and cur[6] == entry.devmajor
        and cur[7] == entry.devminor
        and (not owners or (cur[1] == entry.uid and cur[2] == entry.gid))
    )


def _differs(
    entries: Sequence[FileStat], base: Mapping[str, StatKey], owners: bool, compare: bool
) -> bool:
    """Whether a sync of ``entries`` would change the base tree (the paths are unique)."""
    if len(entries) != len(base):
        return True
    get = base.get
    for entry in entries:
        cur = get(entry.path)
        if cur is None or not _same(entry, cur, owners):
            return True
        if not compare and entry.is_regular and not entry.linkname:
            return True
    return False


def _scan(dest: str, fix_access: bool) -> tuple[dict[str, os.stat_result], list[str]]:
    """``lstat`` of everything below ``dest`` (not following symlinks). With
    ``fix_access`` (not root) directories we could not write into get ``u+rwx``; their
    paths are returned so their modes can be restored."""
    found: dict[str, os.stat_result] = {}
    fixed: list[str] = []

    def visit(full: str, prefix: str) -> None:
        with os.scandir(full) as it:
            items = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        for name, st in items:
            rel = prefix + name
            if fix_access and stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
                os.chmod(os.path.join(full, name), stat.S_IMODE(st.st_mode) | 0o700)
                fixed.append(rel)
            found[rel] = st
            if stat.S_ISDIR(st.st_mode):
                visit(os.path.join(full, name), rel + "/")

    visit(dest, "")
    return found, fixed


class Receiver:
    """Applies one sync to ``dest`` (see the module docstring). Not thread-safe: call its
    methods one after the other (each may run in a different thread)."""

    def __init__(
        self,
        dest: Path,
        *,
        preserve_owner: bool | None = None,
        allow_devices: bool = False,
        merge: bool = False,
        compare: bool = True,
        layer_over: Mapping[str, StatKey] | None = None,
        private: bool = False,
    ) -> None:
        if layer_over is not None and merge:
            raise ValueError("a layer sync cannot merge")
        if private and merge:
            raise ValueError("a merge into a directory is never private")
        self.dest = dest
        self.merge = merge
        self.compare = compare
        self.layer_over = layer_over
        self.private = private
        self.preserve_owner = os.geteuid() == 0 if preserve_owner is None else preserve_owner
        self.allow_devices = allow_devices
        self.files = 0
        self.bytes = 0
        self._entries: Sequence[FileStat] = ()
        self._wanted: list[int] = []
        self._want_pos = 0
        self._hardlinks: list[int] = []
        self._changed: set[str] = set()
        self._deleted: list[str] = []
        self._dirty: set[str] = set()  # directories whose metadata must be (re)applied
        self._dirs: _DirStack | None = None
        # the file being written: (id, fd, temp name; "" when at its final name)
        self._temp: tuple[int, int, str] | None = None
        self._fresh: set[int] = set()  # wanted ids with nothing at their path (private)
        self._digests: dict[str, tuple[int, bytes]] = {}  # (size, sha256) of written files
        self._hasher = hashlib.sha256()  # of the file written in order, in pieces
        self._hashed = 0
        self._sources = SourceFiles()  # for the files written in order
        self._existing: dict[str, os.stat_result] | None = None
        self._stopping = False
        self._index: dict[str, int] | None = None  # path -> position in the entries
        self._different: list[int] | None = None  # layer syncs: entries unlike the base

    def stop(self) -> None:
        """Ask a copy running in another thread to give up (the sync was cancelled)."""
        self._stopping = True

    def _stop(self) -> bool:
        return self._stopping

    # -- helpers -------------------------------------------------------------------

    def _open(self) -> _DirStack:
        if self._dirs is None:
            os.makedirs(self.dest, exist_ok=True)
            made = self._dirty.add if self.layer_over is not None else None
            self._dirs = _DirStack.opened(
                self.dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, made
            )
        return self._dirs

    def _fail(self, path: str, exc: OSError) -> DockyardError:
        return DockyardError(
            f"file sync into {str(self.dest)!r}: cannot update {path!r}: {exc.strerror}"
        )

    def _remove(self, path: str, st: os.stat_result) -> None:
        dirs = self._open()
        fd = dirs.fd(_parent(path))  # also drops a cached fd of ``path`` itself
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(_name(path), dir_fd=fd)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                shutil.rmtree(_name(path), dir_fd=fd)  # merging: what was inside goes too
        else:
            os.unlink(_name(path), dir_fd=fd)
        self._dirty.add(_parent(path))

    def _set_meta(self, fd_dir: int, name: str, entry: FileStat, *, owner: bool) -> None:
        """Owner, permissions and mtime of ``name`` (never following a symlink)."""
        if owner and self.preserve_owner:
            os.chown(name, entry.uid, entry.gid, dir_fd=fd_dir, follow_symlinks=False)
        if not entry.is_symlink:
            os.chmod(name, stat.S_IMODE(entry.mode), dir_fd=fd_dir, follow_symlinks=False)
        os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=fd_dir, follow_symlinks=False)

    def _lstat(self, path: str, dirs: _DirStack) -> os.stat_result | None:
        try:
            return os.lstat(_name(path), dir_fd=dirs.fd(_parent(path)))
        except FileNotFoundError:
            return None

    def _owner_differs(self, entry: FileStat, st: os.stat_result) -> bool:
        return self.preserve_owner and (st.st_uid != entry.uid or st.st_gid != entry.gid)

    def _temp_name(self, i: int) -> str:
        return f"{_TEMP_PREFIX}{i}.{secrets.token_hex(6)}"

    # -- phase 1 -------------------------------------------------------------------

    def scan(self) -> None:
        """Look at what ``dest`` holds (may run while the entries are still arriving;
        :meth:`plan` does it itself otherwise). Not used when merging."""
        os.makedirs(self.dest, exist_ok=True)
        existing, fixed = _scan(os.fspath(self.dest), not self.preserve_owner)
        self._dirty.update(fixed)
        self._existing = existing

    def plan(self, entries: Sequence[FileStat], index: dict[str, int] | None = None) -> list[int]:
        """Validate, diff and apply everything but file content; return wanted ids.

        ``index`` is the result of validating ``entries`` already (path → position).
        In a layer (``layer_over``) the destination is an empty overlayfs upper directory
        over a tree whose entries are known: deleted entries become whiteouts (one for a
        whole deleted directory), new and changed ones are written with the directories
        leading to them, and a changed hard-link group is written again as a whole (a
        link cannot reach into a lower layer). A regular file whose mode or owner alone
        changed travels again too (it cannot be changed in place there).
        """
        if index is None:
            index = _validate(entries, self.allow_devices)
        self._entries = entries
        self._index = index
        if self.layer_over is not None:
            self._plan_layer(entries, index, self.layer_over)
            if self.private:
                self._fresh.update(self._wanted)  # the upper directory starts empty
            return list(self._wanted)
        dirs = self._open()
        existing: dict[str, os.stat_result] | None = None
        if not self.merge:
            if self._existing is None:
                self.scan()
            existing = self._existing
        links_to: dict[str, int] = {}
        for entry in entries:
            if entry.is_hardlink:
                links_to[entry.linkname] = links_to.get(entry.linkname, 0) + 1

        gone = [] if existing is None else [p for p in existing if p not in index]
        for path in sorted(gone, key=_key, reverse=True):
            assert existing is not None
            try:
                self._remove(path, existing[path])
            except OSError as exc:
                raise self._fail(path, exc) from exc
            self._deleted.append(path)

        for i, entry in enumerate(entries):
            path = entry.path
            try:
                cur = existing.get(path) if existing is not None else self._lstat(path, dirs)
                self._plan_one(i, entry, cur, dirs, links_to)
            except OSError as exc:
                raise self._fail(path, exc) from exc
        return list(self._wanted)

    def _plan_layer(
        self, entries: Sequence[FileStat], index: dict[str, int], base: Mapping[str, StatKey]
    ) -> None:
        dirs = self._open()
        owners = self.preserve_owner
        gone = sorted((p for p in base if p not in index), key=_key)
        gone_set = set(gone)
        for path in gone:
            parent = _parent(path)
            if parent in gone_set:
                continue  # hidden with its directory
            if parent and not (entries[index[parent]].is_dir and stat.S_ISDIR(base[parent][0])):
                continue  # the directory became something else: that covers it
            try:
                os.mknod(_name(path), stat.S_IFCHR | 0o600, 0, dir_fd=dirs.fd(parent))
            except OSError as exc:
                raise self._fail(path, exc) from exc
            self._dirty.add(parent)
        self._deleted = gone

        regroup: set[str] = set()  # hard-link targets whose group is written again
        links: dict[str, list[int]] = {}
        different: list[int] = []  # unlike the base in any field (owners included)
        self._different = different
        for i, entry in enumerate(entries):
            path = entry.path
            cur = base.get(path)
            if cur is None:
                same = False
                different.append(i)
            elif _same(entry, cur, True):
                same = True
            else:
                different.append(i)
                same = not owners and _same(entry, cur, False)
            fmt = stat.S_IFMT(entry.mode)
            try:
                if fmt == stat.S_IFDIR:
                    if not same:
                        with contextlib.suppress(FileExistsError):  # made for a whiteout
                            os.mkdir(_name(path), 0o700, dir_fd=dirs.fd(_parent(path)))
                        self._changed.add(path)
                        self._dirty.add(path)
                    continue
                if fmt == stat.S_IFREG:
                    if entry.linkname:
                        links.setdefault(entry.linkname, []).append(i)
                        if not same:
                            regroup.add(entry.linkname)
                    elif not same or not self.compare:
                        self._wanted.append(i)
                        regroup.add(path)
                    continue
                if same:
                    continue
                fd = dirs.fd(_parent(path))
                if fmt == stat.S_IFLNK:
                    temp = self._temp_name(i)
                    os.symlink(entry.linkname, temp, dir_fd=fd)
                    self._set_meta(fd, temp, entry, owner=True)
                    os.rename(temp, _name(path), src_dir_fd=fd, dst_dir_fd=fd)
                else:
                    name = _name(path)
                    device = os.makedev(entry.devmajor, entry.devminor)
                    os.mknod(name, fmt | 0o600, device, dir_fd=fd)
                    self._set_meta(fd, name, entry, owner=True)
                self._created(path)
            except OSError as exc:
                raise self._fail(path, exc) from exc
        # a group changes when a member does or the set of links to the target differs
        before: dict[str, set[str]] = {}
        for path, key in base.items():
            if key[5] and stat.S_ISREG(key[0]):
                before.setdefault(key[5], set()).add(path)
        for target, paths in before.items():
            if target in links and {entries[i].path for i in links[target]} != paths:
                regroup.add(target)
        wanted = set(self._wanted)
        for target in regroup:
            members = links.get(target)
            if not members:
                continue
            first = index[target]
            if first not in wanted:
                wanted.add(first)
                self._wanted.append(first)
            self._hardlinks.extend(members)
        self._wanted.sort()

    def _plan_one(
        self,
        i: int,
        entry: FileStat,
        cur: os.stat_result | None,
        dirs: _DirStack,
        links_to: dict[str, int],
    ) -> None:
        path = entry.path
        name = _name(path)
        fmt = stat.S_IFMT(entry.mode)
        if cur is not None and stat.S_IFMT(cur.st_mode) != fmt:
            self._remove(path, cur)
            cur = None
        parent = _parent(path)
        if fmt == stat.S_IFDIR:
            if cur is None:
                os.mkdir(name, 0o700, dir_fd=dirs.fd(parent))
                self._created(path)
                self._dirty.add(path)
            elif (
                stat.S_IMODE(cur.st_mode) != stat.S_IMODE(entry.mode)
                or self._owner_differs(entry, cur)
                or cur.st_mtime_ns != entry.mtime_ns
            ):
                self._changed.add(path)
                self._dirty.add(path)
            return
        if fmt == stat.S_IFREG:
            if entry.linkname:
                self._hardlinks.append(i)
                return
            if cur is not None and cur.st_nlink > 1:
                cur = os.lstat(name, dir_fd=dirs.fd(parent))  # links may have been removed
            if (
                cur is None
                or not self.compare
                or cur.st_size != entry.size
                or cur.st_mtime_ns != entry.mtime_ns
                or cur.st_nlink != 1 + links_to.get(path, 0)
            ):
                self._wanted.append(i)
                if cur is None and self.private:
                    self._fresh.add(i)
            elif stat.S_IMODE(cur.st_mode) != stat.S_IMODE(entry.mode) or self._owner_differs(
                entry, cur
            ):
                self._set_meta(dirs.fd(parent), name, entry, owner=True)
                self._changed.add(path)
            return
        fd = dirs.fd(parent)
        if fmt == stat.S_IFLNK:
            if cur is not None and os.readlink(name, dir_fd=fd) == entry.linkname:
                if self._owner_differs(entry, cur) or cur.st_mtime_ns != entry.mtime_ns:
                    self._set_meta(fd, name, entry, owner=True)
                    self._changed.add(path)
                return
            temp = self._temp_name(i)
            os.symlink(entry.linkname, temp, dir_fd=fd)
            self._set_meta(fd, temp, entry, owner=True)
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            self._created(path)
            return
        # fifo, character or block device
        device = os.makedev(entry.devmajor, entry.devminor)
        if (
            cur is not None
            and stat.S_IMODE(cur.st_mode) == stat.S_IMODE(entry.mode)
            and (fmt == stat.S_IFIFO or cur.st_rdev == device)
        ):
            if self._owner_differs(entry, cur) or cur.st_mtime_ns != entry.mtime_ns:
                self._set_meta(fd, name, entry, owner=True)
                self._changed.add(path)
            return
        if cur is not None:
            os.unlink(name, dir_fd=fd)
        os.mknod(name, fmt | 0o600, device, dir_fd=fd)
        self._set_meta(fd, name, entry, owner=True)
        self._created(path)

    def _created(self, path: str) -> None:
        self._changed.add(path)
        self._dirty.add(_parent(path))

    # -- phase 2 -------------------------------------------------------------------

    def write(self, pieces: Sequence[Content]) -> int:
        """Store content as it arrives; returns the number of content bytes stored.

        Whole files new to a private destination (a :class:`LocalFile`, or a file in
        one chunk) are written by up to :data:`_WRITERS` threads at once, in parts of
        neighbouring files: creating files is most of a first sync, and the kernel
        creates them on both cores while the other threads wait for it."""
        ordered, whole, pos = self._split(pieces)
        stored = 0
        for piece in ordered:
            entry = self._entries[piece.id]
            try:
                if isinstance(piece, LocalFile):
                    stored += self._copy_local(piece, entry)
                else:
                    stored += self._write_chunk(piece, entry)
            except OSError as exc:
                raise self._fail(entry.path, exc) from exc
        if whole:
            self._open()
            files, size = _in_parts(whole, self._write_whole, self._stop)
            self.files += files
            self.bytes += size
            stored += size
        self._want_pos = pos
        return stored

    def _split(self, pieces: Sequence[Content]) -> tuple[list[Content], list[Content], int]:
        """Check that ``pieces`` continue the wanted order; split them into those written
        in order (a file in several pieces, or one replacing an existing file) and whole
        files new to a private destination (any order). Also returns the wanted position
        after them."""
        pos = self._want_pos
        wanted = self._wanted
        fresh = self._fresh
        open_id = self._temp[0] if self._temp is not None else -1
        ordered: list[Content] = []
        whole: list[Content] = []
        for piece in pieces:
            if pos >= len(wanted) or piece.id != wanted[pos]:
                raise SessionError(f"file sync: unexpected content for entry {piece.id}")
            complete = isinstance(piece, LocalFile) or piece.eof
            if complete and piece.id != open_id and piece.id in fresh:
                whole.append(piece)
            else:
                ordered.append(piece)
                open_id = -1 if complete else piece.id
            if complete:
                pos += 1
        return ordered, whole, pos

    def _write_whole(self, pieces: Sequence[Content]) -> tuple[int, int]:
        """Write files that arrived whole at their final names (see :meth:`write`);
        may run in several threads at once, each with its own directory fds. Returns
        (files, bytes)."""
        made = self._dirty.add if self.layer_over is not None else None
        dirs = _DirStack(self._open().root, made)  # opened before the writers start
        sources = SourceFiles()
        files = stored = 0
        fd = fd_dir = -1
        name = ""
        try:
            for piece in pieces:
                if self._stopping:
                    raise SessionError("file sync cancelled")
                entry = self._entries[piece.id]
                try:
                    fd_dir = dirs.fd(_parent(entry.path))
                    name = _name(entry.path)
                    fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=fd_dir)
                    n, digest = self._fill(fd, piece, entry, sources)
                    if digest is None and isinstance(piece, Chunk):
                        digest = hashlib.sha256(piece.data).digest()
                    if digest is not None:
                        self._digests[entry.path] = (n, digest)
                    stored += n
                    self._finish_file(fd, entry)
                    fd = -1
                except OSError as exc:
                    raise self._fail(entry.path, exc) from exc
                self._created(entry.path)
                files += 1
        except BaseException:
            if fd >= 0:  # a partly written file (the destination is thrown away anyway)
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd_dir)
            raise
        finally:
            dirs.close()
            sources.close()
        return files, stored

    def _fill(
        self, fd: int, piece: Content, entry: FileStat, sources: SourceFiles
    ) -> tuple[int, bytes | None]:
        """Write the content ``piece`` carries (all of it) into ``fd``; returns the bytes
        written and, for a whole local file it read (a small one), their sha256. A big
        local file is copied in the kernel instead (and read again for its index)."""
        if isinstance(piece, LocalFile):
            try:
                src = sources.open(piece.root, piece.path)
            except DockyardError:
                # vanished since the walk: stored empty, the next sync repairs
                return 0, _EMPTY_SHA256
            try:
                if entry.size <= _HASH_READ:
                    data = _read_upto(src, entry.size)
                    _write_all(fd, data)
                    return len(data), hashlib.sha256(data).digest()
                return _copy_fd(src, fd, self._stop, entry.size), None
            finally:
                os.close(src)
        _write_all(fd, piece.data)
        return len(piece.data), None

    def _finish_file(self, fd: int, entry: FileStat) -> None:
        """Owner, permissions and mtime of a written file; closes ``fd``."""
        try:
            if self.preserve_owner:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, stat.S_IMODE(entry.mode))
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def _start(self, i: int, entry: FileStat) -> int:
        if self._temp is None:
            fd_dir = self._open().fd(_parent(entry.path))
            # private and nothing there: no reader can see it half-written
            temp = "" if i in self._fresh else self._temp_name(i)
            fd = os.open(temp or _name(entry.path), _CREATE_FLAGS, 0o600, dir_fd=fd_dir)
            self._temp = (i, fd, temp)
            self._hasher = hashlib.sha256()
            self._hashed = 0
        return self._temp[1]

    def _write_chunk(self, piece: Chunk, entry: FileStat) -> int:
        fd = self._start(piece.id, entry)
        stored, _ = self._fill(fd, piece, entry, self._sources)
        self._hasher.update(piece.data)
        self._hashed += stored
        self.bytes += stored
        if piece.eof:
            self._digests[entry.path] = (self._hashed, self._hasher.digest())
            self._complete(entry)
        return stored

    def _copy_local(self, piece: LocalFile, entry: FileStat) -> int:
        fd = self._start(piece.id, entry)
        copied, digest = self._fill(fd, piece, entry, self._sources)
        if digest is not None:
            self._digests[entry.path] = (copied, digest)
        self.bytes += copied
        self._complete(entry)
        return copied

    def _complete(self, entry: FileStat) -> None:
        assert self._temp is not None
        _, fd, temp = self._temp
        self._temp = None
        self._finish_file(fd, entry)
        if temp:
            fd_dir = self._open().fd(_parent(entry.path))
            os.rename(temp, _name(entry.path), src_dir_fd=fd_dir, dst_dir_fd=fd_dir)
        self._created(entry.path)
        self.files += 1

    # -- phase 3 -------------------------------------------------------------------

    def finish(self) -> SyncResult:
        """Hard links and directory metadata; the result of the whole sync."""
        if self._temp is not None or self._want_pos != len(self._wanted):
            raise SessionError("file sync: the sender stopped before all content arrived")
        dirs = self._open()
        for i in self._hardlinks:
            entry = self._entries[i]
            try:
                self._link(entry, dirs)
            except OSError as exc:
                raise self._fail(entry.path, exc) from exc
        entries = self._entries
        index = self._index
        if index is None:
            index = {e.path: i for i, e in enumerate(entries)}
        for path in sorted(self._dirty, key=_key, reverse=True):
            position = index.get(path)
            dir_entry = entries[position] if position is not None else None
            if dir_entry is None or not dir_entry.is_dir:
                continue  # the root, or a directory removed since
            try:
                self._set_meta(dirs.fd(_parent(path)), _name(path), dir_entry, owner=True)
            except OSError as exc:
                raise self._fail(path, exc) from exc
        self.close()
        return SyncResult(
            entries=len(self._entries),
            files_transferred=self.files,
            bytes_transferred=self.bytes,
            changed=tuple(sorted(self._changed, key=_key)),
            deleted=tuple(sorted(self._deleted, key=_key)),
            tree=tuple(self._entries),
            digests=self._digests,
            different=tuple(self._different) if self._different is not None else None,
        )

    def _link(self, entry: FileStat, dirs: _DirStack) -> None:
        target_fd = os.dup(dirs.fd(_parent(entry.linkname)))
        try:
            target = os.lstat(_name(entry.linkname), dir_fd=target_fd)
            fd = dirs.fd(_parent(entry.path))
            name = _name(entry.path)
            try:
                cur: os.stat_result | None = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                cur = None
            if cur is not None and (cur.st_ino, cur.st_dev) == (target.st_ino, target.st_dev):
                return
            temp = self._temp_name(0)
            os.link(
                _name(entry.linkname),
                temp,
                src_dir_fd=target_fd,
                dst_dir_fd=fd,
                follow_symlinks=False,
            )
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            self._created(entry.path)
        finally:
            os.close(target_fd)

    def close(self) -> None:
        """Release fds and remove a partly written file (after an error, too)."""
        if self._temp is not None:
            i, fd, temp = self._temp
            self._temp = None
            os.close(fd)
            path = self._entries[i].path
            try:
                os.unlink(temp or _name(path), dir_fd=self._open().fd(_parent(path)))
            except OSError:
                pass
        self._sources.close()
        if self._dirs is not None:
            self._dirs.release()
            self._dirs = None


def _read_upto(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes of ``fd`` (fewer at its end)."""
    data = os.read(fd, size) if size > 0 else b""
    if 0 < len(data) < size:
        parts = [data]
        got = len(data)
        while got < size:
            more = os.read(fd, size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_fd(src: int, dst: int, stop: Callable[[], bool], size: int = -1) -> int:
    """Copy to the end of ``src`` (in the kernel when it can), or ``size`` bytes when
    ``src`` has that many (the size the walk saw: a file that grew since is stored as
    the entry describes it; the next sync sees the new size). ``stop`` is asked between
    pieces so that a cancelled sync does not finish copying a huge file."""
    total = 0
    try:
        while True:
            if stop():
                raise SessionError("file sync cancelled")
            want = _COPY_PIECE if size < 0 else min(_COPY_PIECE, size - total)
            if want <= 0:
                return total
            n = os.copy_file_range(src, dst, want)
            if n == 0:
                return total
            total += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while True:
        if stop():
            raise SessionError("file sync cancelled")
        want = 1 << 20 if size < 0 else min(1 << 20, size - total)
        data = os.read(src, want) if want > 0 else b""
        if not data:
            return total
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]
        total += len(data)


async def _in_thread(receiver: Receiver, fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn`` in a thread; if the caller is cancelled, ask the receiver to stop and
    wait for the thread before propagating (so that cleanup never races with it)."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        receiver.stop()
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: superseded by the cancellation
        raise


async def receive(
    source: SyncSource,
    dest: Path | SyncBase,
    *,
    name: str = "",
    reporter: Reporter | None = None,
    progress_digest: str = "",
    preserve_owner: bool | None = None,
    allow_devices: bool = False,
    merge: bool = False,
    compare: bool = True,
) -> SyncResult:
    """Drive ``source`` to bring ``dest`` up to date (see :class:`Receiver`).

    ``preserve_owner`` defaults to "when running as root" (owners are neither applied
    nor compared otherwise). With ``merge`` nothing that the source does not mention is
    deleted (an export into a directory of the user). Reports ``VertexProgress`` (bytes
    and files) for ``progress_digest`` when one is given. With ``compare=False`` every
    regular file is fetched again. Syncs into the same ``dest`` run one after the other
    (within this process). A :class:`SyncBase` destination is a new layer over a known
    tree: nothing is written (and its ``open`` is never called) when nothing changed.
    """
    progress = TransferProgress(
        reporter, progress_digest, name or (dest.name if isinstance(dest, Path) else "")
    )
    if isinstance(dest, SyncBase):
        if merge:
            raise ValueError("a sync into a new layer cannot merge")
        return await _receive_base(
            source,
            dest,
            progress=progress,
            preserve_owner=preserve_owner,
            allow_devices=allow_devices,
            compare=compare,
        )
    try:  # a file in its place: named here, not a FileExistsError out of the sync
        os.makedirs(dest, exist_ok=True)
    except OSError as exc:
        what = "export to" if merge else "sync into"
        raise DockyardError(f"cannot {what} directory {str(dest)!r}: {exc.strerror}") from exc
    async with _dest_lock(dest):
        return await _receive(
            source,
            dest,
            progress=progress,
            preserve_owner=preserve_owner,
            allow_devices=allow_devices,
            merge=merge,
            compare=compare,
        )


_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _dest_lock(dest: Path) -> asyncio.Lock:
    """One sync at a time into a destination (within this process)."""
    key = os.path.abspath(dest)
    lock = _locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _locks[key] = lock
    return lock


async def _entries(source: SyncSource, scanning: asyncio.Future[None] | None) -> list[FileStat]:
    entries: list[FileStat] = []
    stats = source.stats()
    try:
        async for batch in stats:
            entries.extend(batch)
    finally:
        try:
            aclose = getattr(stats, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if scanning is not None:
                await asyncio.wait([scanning])  # the thread must end before anything else
    if scanning is not None:
        scanning.result()
    return entries


async def _transfer(
    source: SyncSource,
    receiver: Receiver,
    entries: list[FileStat],
    progress: TransferProgress,
    index: dict[str, int] | None = None,
) -> SyncResult:
    wanted = await _in_thread(receiver, receiver.plan, entries, index)
    progress.totals(len(wanted), sum(entries[i].size for i in wanted))
    progress.emit(0, 0, force=True)
    content = source.fetch(wanted)
    try:
        async for pieces in content:
            await _in_thread(receiver, receiver.write, pieces)
            progress.emit(receiver.files, receiver.bytes)
    finally:
        aclose = getattr(content, "aclose", None)
        if aclose is not None:
            await aclose()
    result = await _in_thread(receiver, receiver.finish)
    progress.emit(result.files_transferred, result.bytes_transferred, done=True)
    return result


async def _receive(
    source: SyncSource,
    dest: Path,
    *,
    progress: TransferProgress,
    preserve_owner: bool | None,
    allow_devices: bool,
    merge: bool,
    compare: bool,
) -> SyncResult:
    receiver = Receiver(
        dest,
        preserve_owner=preserve_owner,
        allow_devices=allow_devices,
        merge=merge,
        compare=compare,
    )
    # look at the destination while the sender walks its tree
    scanning = None if merge else asyncio.ensure_future(asyncio.to_thread(receiver.scan))
    try:
        entries = await _entries(source, scanning)
        return await _transfer(source, receiver, entries, progress)
    finally:
        receiver.close()


async def _receive_base(
    source: SyncSource,
    base: SyncBase,
    *,
    progress: TransferProgress,
    preserve_owner: bool | None,
    allow_devices: bool,
    compare: bool,
) -> SyncResult:
    entries = await _entries(source, None)
    owners = os.geteuid() == 0 if preserve_owner is None else preserve_owner

    def check() -> tuple[dict[str, int], bool]:
        index = _validate(entries, allow_devices)
        return index, _differs(entries, base.entries, owners, compare)

    index, differs = await asyncio.to_thread(check)
    if not differs:
        progress.totals(0, 0)
        progress.emit(0, 0, force=True)
        content = source.fetch([])
        try:
            async for _ in content:
                raise SessionError("file sync: content arrived that was not asked for")
        finally:
            aclose = getattr(content, "aclose", None)
            if aclose is not None:
                await aclose()
        progress.emit(0, 0, done=True)
        return SyncResult(
            entries=len(entries), files_transferred=0, bytes_transferred=0, tree=tuple(entries)
        )
    path, layer = await base.open()
    receiver = Receiver(
        path,
        preserve_owner=owners,
        allow_devices=allow_devices,
        compare=compare,
        layer_over=base.entries if layer else None,
        private=True,
    )
    try:
        if not layer:
            await _in_thread(receiver, receiver.scan)
        return await _transfer(source, receiver, entries, progress, index)
    finally:
        receiver.close()
