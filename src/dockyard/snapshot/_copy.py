"""Full copies of directory trees that keep everything a layer can hold.

Modes, owners, timestamps (ns), xattrs, hard links (within the copy), symlinks, device
nodes, fifos and sockets are preserved. File data goes through ``copy_file_range`` (an
in-kernel copy; a reflink where the file system can share extents), falling back to
1 MiB reads and writes. Blocking: call from a thread.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["copy_metadata", "copy_tree", "copy_xattrs"]

CHUNK = 1 << 20
_SKIP_XATTR_PREFIXES = ("trusted.overlay.",)


def copy_xattrs(src: str, dst: str, *, follow_symlinks: bool = False) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=follow_symlinks)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        if name.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(src, name, follow_symlinks=follow_symlinks)
            os.setxattr(dst, name, value, follow_symlinks=follow_symlinks)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise


def copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    """Owner, mode, xattrs and times of ``src`` (already lstat-ed as ``st``) onto ``dst``."""
    is_link = stat.S_ISLNK(st.st_mode)
    os.lchown(dst, st.st_uid, st.st_gid)
    copy_xattrs(src, dst)
    if not is_link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_file_data(src: str, dst: str, mode: int) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o777
        )
        try:
            _copy_fd(fd_in, fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_fd(fd_in: int, fd_out: int) -> None:
    try:
        while os.copy_file_range(fd_in, fd_out, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while True:
        data = os.read(fd_in, CHUNK)
        if not data:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(fd_out, view) :]


def copy_tree(src: str, dst: str) -> None:
    """Copy the contents of directory ``src`` into existing directory ``dst``.

    ``dst`` itself takes ``src``'s metadata. Hard links between files of ``src`` stay
    hard links in ``dst``; nothing is ever linked back to ``src``.
    """
    links: dict[tuple[int, int], str] = {}
    _copy_dir(src, dst, links)
    copy_metadata(src, dst, os.lstat(src))


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        s = entry.path
        d = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir(s, d, links)
        elif stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = links.get(key)
                if first is not None:
                    os.link(first, d)
                    continue
                links[key] = d
            copy_file_data(s, d, mode)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:  # pragma: no cover - no other file types exist
            continue
        copy_metadata(s, d, st)
