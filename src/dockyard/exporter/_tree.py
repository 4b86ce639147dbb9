"""A mounted result tree to a tar stream or into a directory (blocking; run in a thread).

Both walk the tree depth-first with names in bytewise order, so the same tree always
gives the same output. Modes, numeric owners, times (whole seconds, capped at ``epoch``
when given), symlinks, hard links (within the tree), device nodes, fifos and xattrs are
kept; sockets are skipped.

Copying into a directory never follows a symlink that is already in the destination:
it descends with ``O_NOFOLLOW`` directory descriptors and replaces whatever is in the way
(an entry of another type), so a hostile or stale destination cannot redirect a write
outside it. Files there that the tree does not have are kept (BuildKit's local exporter).
Owners are set only when running as root.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tarfile
import time
from collections.abc import Sequence
from typing import BinaryIO

from dockyard.core import DockyardError

__all__ = ["copy_into", "write_tree_tar"]

_CHUNK = 1 << 20
_SKIP_XATTRS = ("trusted.overlay.",)


def _entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: os.fsencode(e.name))


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if name.startswith(_SKIP_XATTRS):
            continue
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


# -- tar ---------------------------------------------------------------------------------


class _Counting:
    """A write-only stream that knows its position (tarfile asks; pipes cannot tell)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._out.flush()


class _TarWriter:
    def __init__(self, out: BinaryIO, epoch: int | None) -> None:
        self.out = _Counting(out)
        self.tar = tarfile.TarFile(fileobj=self.out, mode="w", format=tarfile.PAX_FORMAT)  # type: ignore[arg-type]
        self.tar.copybufsize = _CHUNK  # type: ignore[attr-defined]
        self.epoch = epoch
        self.links: dict[tuple[int, int], str] = {}

    def add(self, rel: str, path: str, st: os.stat_result) -> None:
        mode = st.st_mode
        ti = tarfile.TarInfo(rel)
        ti.mode = stat.S_IMODE(mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        mtime = int(st.st_mtime)
        ti.mtime = mtime if self.epoch is None else min(mtime, self.epoch)
        xattrs = _xattrs(path)
        if xattrs:
            ti.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
            }
        if stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = first
                    self.tar.addfile(ti)
                    return
                self.links[key] = rel
            ti.size = st.st_size
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb", buffering=0) as f:
                self.tar.addfile(ti, f)
            return
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        else:
            return
        self.tar.addfile(ti)

    def add_files(self, files: Sequence[tuple[str, bytes]], mtime: int) -> None:
        """Regular files made here (attestation statements): mode 0600, root's."""
        for rel, data in files:
            ti = tarfile.TarInfo(rel)
            ti.mode = 0o600
            ti.uname = ti.gname = ""
            ti.mtime = mtime
            ti.size = len(data)
            self.tar.addfile(ti, io.BytesIO(data))

    def walk(self, path: str, rel: str) -> None:
        for e in _entries(path):
            child = f"{rel}/{e.name}" if rel else e.name
            st = e.stat(follow_symlinks=False)
            self.add(child, e.path, st)
            if stat.S_ISDIR(st.st_mode):
                self.walk(e.path, child)


def write_tree_tar(
    root: str | None,
    out: BinaryIO,
    *,
    epoch: int | None = None,
    extra: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Write the tree under ``root`` (``None``: empty) to ``out`` as a tar (entries are
    relative names without ``./``; the root itself is not an entry); ``extra`` files
    (relative name, content) follow it, timed ``epoch`` or now."""
    w = _TarWriter(out, epoch)
    if root is not None:
        w.walk(root, "")
    w.add_files(extra, epoch if epoch is not None else int(time.time()))
    w.tar.close()
    w.out.flush()


def write_trees_tar(
    trees: Sequence[tuple[str, str | None]],
    out: BinaryIO,
    *,
    epoch: int | None = None,
    extra: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Write several trees to ``out`` as one tar, each under its own top directory:
    ``trees`` are ``(name, root)`` pairs (``root`` ``None``: an empty directory). The
    top directories are entries of their own (mode 0755, owned by root, time the
    ``epoch`` or 0) so that an empty tree still shows."""
    w = _TarWriter(out, epoch)
    for name, root in trees:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        ti.uname = ti.gname = ""
        ti.mtime = epoch if epoch is not None else 0
        w.tar.addfile(ti)
        if root is not None:
            w.walk(root, name)
    w.add_files(extra, epoch if epoch is not None else int(time.time()))
    w.tar.close()
    w.out.flush()


# -- copy into a directory ---------------------------------------------------------------


class _Copier:
    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch
        self.root = os.geteuid() == 0
        self.links: dict[tuple[int, int], tuple[str, str]] = {}  # -> (parent rel, name)
        self.dest_fd = -1

    def _mtime(self, st: os.stat_result) -> tuple[int, int]:
        ns = st.st_mtime_ns
        if self.epoch is not None:
            ns = min(ns, self.epoch * 1_000_000_000)
        return st.st_atime_ns if self.epoch is None else ns, ns

    def _clear(self, dirfd: int, name: str, keep_dir: bool) -> os.stat_result | None:
        """Remove ``name`` unless it is a directory we may keep; returns what stays."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            try:
                _remove_contents(fd)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=dirfd)
            return None
        os.unlink(name, dir_fd=dirfd)
        return None

    def _owner(self, fd: int, st: os.stat_result) -> None:
        if self.root:
            os.fchown(fd, st.st_uid, st.st_gid)

    def copy_dir(self, src: str, dirfd: int, rel: str) -> None:
        for e in _entries(src):
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            name = e.name
            child_rel = f"{rel}/{name}" if rel else name
            if stat.S_ISDIR(mode):
                if self._clear(dirfd, name, keep_dir=True) is None:
                    os.mkdir(name, 0o700, dir_fd=dirfd)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
                try:
                    self.copy_dir(e.path, fd, child_rel)
                    self._owner(fd, st)
                    os.fchmod(fd, stat.S_IMODE(mode))
                    os.utime(fd, ns=self._mtime(st))
                finally:
                    os.close(fd)
                continue
            self._clear(dirfd, name, keep_dir=False)
            if stat.S_ISREG(mode):
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    first = self.links.get(key)
                    if first is not None and self._link(first, dirfd, name):
                        continue
                    self.links[key] = (rel, name)
                self._copy_file(e.path, dirfd, name, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(e.path), name, dir_fd=dirfd)
                if self.root:
                    os.chown(name, st.st_uid, st.st_gid, dir_fd=dirfd, follow_symlinks=False)
                os.utime(name, ns=self._mtime(st), dir_fd=dirfd, follow_symlinks=False)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                try:
                    os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dirfd)
                except PermissionError:
                    continue  # device nodes need root; a non-root export skips them
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dirfd)
                try:
                    if self.root:
                        os.chown(name, st.st_uid, st.st_gid, dir_fd=dirfd, follow_symlinks=False)
                    os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
                finally:
                    os.close(fd)
                os.utime(name, ns=self._mtime(st), dir_fd=dirfd, follow_symlinks=False)

    def _link(self, first: tuple[str, str], dirfd: int, name: str) -> bool:
        parent_rel, first_name = first
        try:
            pfd = _open_rel(self.dest_fd, parent_rel)
        except OSError:
            return False
        try:
            os.link(first_name, name, src_dir_fd=pfd, dst_dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            return False
        finally:
            os.close(pfd)
        return True

    def _copy_file(self, src: str, dirfd: int, name: str, st: os.stat_result) -> None:
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd_out = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dirfd,
            )
            try:
                _copy_data(fd_in, fd_out)
                self._owner(fd_out, st)
                os.fchmod(fd_out, stat.S_IMODE(st.st_mode))
                os.utime(fd_out, ns=self._mtime(st))
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)


def _open_rel(root_fd: int, rel: str) -> int:
    fd = os.dup(root_fd)
    for part in [p for p in rel.split("/") if p]:
        try:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nfd
    return fd


def _copy_data(fd_in: int, fd_out: int) -> None:
    try:
        while os.copy_file_range(fd_in, fd_out, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while data := os.read(fd_in, _CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(fd_out, view) :]


def _remove_contents(dirfd: int) -> None:
    for name in os.listdir(dirfd):
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            try:
                _remove_contents(fd)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=dirfd)
        else:
            os.unlink(name, dir_fd=dirfd)


def copy_into(root: str | None, dest: str, *, epoch: int | None = None) -> None:
    """Copy the tree under ``root`` (``None``: empty) into directory ``dest`` (made if
    missing, with its parents); see the module docstring."""
    try:
        os.makedirs(dest, exist_ok=True)
        dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DockyardError(f"cannot export to directory {dest!r}: {exc.strerror}") from exc
    try:
        if root is None:
            return
        copier = _Copier(epoch)
        copier.dest_fd = dest_fd
        try:
            copier.copy_dir(root, dest_fd, "")
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise DockyardError(f"exporting to {dest!r} failed: {exc.strerror}{where}") from exc
    finally:
        os.close(dest_fd)
