"""Full copies of directory trees that keep everything a layer can hold.

Modes, owners, timestamps (ns), xattrs, hard links (within the copy), symlinks, device
nodes, fifos and sockets are preserved. File data goes through ``copy_file_range`` (an
in-kernel copy; a reflink where the file system can share extents), falling back to
1 MiB reads and writes. Blocking: call from a thread.

:func:`mirror_tree` makes an existing tree equal to another one touching only what
differs (rsync's quick check: type, mode, owner, size, mtime, link target, device,
xattrs), so that on an overlay only the changes land in the upper layer.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable

__all__ = ["copy_metadata", "copy_tree", "copy_xattrs", "link_merged", "mirror_tree"]

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


def _xattr_map(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for name in names:
        if name.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _same_meta(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    return (
        a.st_mode == b.st_mode
        and a.st_uid == b.st_uid
        and a.st_gid == b.st_gid
        and a.st_mtime_ns == b.st_mtime_ns
        and _xattr_map(pa) == _xattr_map(pb)
    )


def _same_entry(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    """Whether ``pb`` (lstat ``b``) already is what ``pa`` (lstat ``a``) is; directories
    compare their own metadata only."""
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if stat.S_ISREG(a.st_mode) and a.st_size != b.st_size:
        return False
    if stat.S_ISLNK(a.st_mode):
        return (
            os.readlink(pa) == os.readlink(pb)
            and a.st_uid == b.st_uid
            and a.st_gid == b.st_gid
            and a.st_mtime_ns == b.st_mtime_ns
        )
    if (stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode)) and a.st_rdev != b.st_rdev:
        return False
    return _same_meta(a, b, pa, pb)


def _remove(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def mirror_tree(
    src: str,
    dst: str,
    *,
    decide: Callable[[str, os.stat_result, os.stat_result], bool | None] | None = None,
    verify: Callable[[str, os.stat_result, os.stat_result], bool] | None = None,
    copied: Callable[[str, os.stat_result, str], None] | None = None,
) -> int:
    """Make existing directory ``dst`` hold what ``src`` holds; return how many entries
    were written or removed.

    Entries equal by the quick check are left alone. For a regular file present on both
    sides, ``decide(rel, src_stat, dst_stat)`` may settle it first (``True``: the same,
    ``False``: copy it, ``None``: don't know); a file that then passes the quick check is
    still copied if ``verify(rel, src_stat, dst_stat)`` says no (the caller compares
    content hashes). Without them, a file whose content changed while its size and mtime
    did not is *not* copied: the caller vouches for its mtimes, as rsync's users do.
    Hard links are not recreated. ``copied(rel, src_stat, dst_path)`` is called for every
    regular file written.
    """
    changes = _mirror_dir(src, dst, "", decide, verify, copied)
    sst, dstt = os.lstat(src), os.lstat(dst)
    if changes or not _same_meta(sst, dstt, src, dst):
        _sync_metadata(src, dst, sst)
    return changes


def _sync_metadata(src: str, dst: str, st: os.stat_result) -> None:
    """:func:`copy_metadata` onto an existing entry, dropping xattrs ``src`` lacks."""
    extra = set(_xattr_map(dst)) - set(_xattr_map(src))
    for name in extra:
        try:
            os.removexattr(dst, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise
    copy_metadata(src, dst, st)


def _mirror_dir(
    src: str,
    dst: str,
    rel: str,
    decide: Callable[[str, os.stat_result, os.stat_result], bool | None] | None,
    verify: Callable[[str, os.stat_result, os.stat_result], bool] | None,
    copied: Callable[[str, os.stat_result, str], None] | None,
) -> int:
    with os.scandir(src) as it:
        wanted = {e.name: e for e in it}
    with os.scandir(dst) as it:
        present = {e.name: e for e in it}
    changes = 0
    for name, entry in present.items():
        if name not in wanted:
            _remove(entry.path, entry.stat(follow_symlinks=False))
            changes += 1
    for name in sorted(wanted):
        s = wanted[name].path
        d = os.path.join(dst, name)
        child = f"{rel}/{name}" if rel else name
        sst = wanted[name].stat(follow_symlinks=False)
        old = present.get(name)
        dstt = old.stat(follow_symlinks=False) if old is not None else None
        if stat.S_ISDIR(sst.st_mode):
            fresh = dstt is None or not stat.S_ISDIR(dstt.st_mode)
            if fresh:
                if dstt is not None:
                    _remove(d, dstt)
                os.mkdir(d, 0o700)
            inner = _mirror_dir(s, d, child, decide, verify, copied)
            if fresh or inner or dstt is None or not _same_meta(sst, dstt, s, d):
                _sync_metadata(s, d, sst)
                changes += 1
            changes += inner
            continue
        if dstt is not None and _keep(child, s, d, sst, dstt, decide, verify):
            continue
        if dstt is not None:
            _remove(d, dstt)
        if stat.S_ISREG(sst.st_mode):
            copy_file_data(s, d, sst.st_mode)
        elif stat.S_ISLNK(sst.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISSOCK(sst.st_mode):
            continue
        else:
            os.mknod(d, stat.S_IFMT(sst.st_mode) | 0o600, sst.st_rdev)
        copy_metadata(s, d, sst)
        changes += 1
        if copied is not None and stat.S_ISREG(sst.st_mode):
            copied(child, sst, d)
    return changes


def _keep(
    rel: str,
    s: str,
    d: str,
    sst: os.stat_result,
    dstt: os.stat_result,
    decide: Callable[[str, os.stat_result, os.stat_result], bool | None] | None,
    verify: Callable[[str, os.stat_result, os.stat_result], bool] | None,
) -> bool:
    both_files = stat.S_ISREG(sst.st_mode) and stat.S_ISREG(dstt.st_mode)
    if both_files and decide is not None:
        known = decide(rel, sst, dstt)
        if known is not None:
            return known
    if not _same_entry(sst, dstt, s, d):
        return False
    return not both_files or verify is None or verify(rel, sst, dstt)


_OPAQUE_XATTR = "trusted.overlay.opaque"


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def link_merged(layers: list[str], dest: str) -> None:
    """Make the empty directory ``dest`` show what an overlay of ``layers`` (top first:
    upper directories with whiteouts and opaque markers) shows, without copying file
    content: regular files are hard links to the layer file that shows through,
    directories, symlinks and special files are made with the metadata (owner, mode,
    xattrs but ``trusted.overlay.*``, times) of the entry that shows through. Hard links
    between files of the tree stay (they are links to the same inode). ``dest`` itself
    takes the top layer's root metadata. Blocking: call from a thread."""
    _link_dir(layers, list(range(len(layers))), "", dest)
    top = layers[0]
    copy_metadata(top, dest, os.lstat(top))


def _link_dir(layers: list[str], shown: list[int], rel: str, dest: str) -> None:
    """Fill ``dest`` with the merged directory ``rel`` of the layers ``shown`` (indices,
    top first, in which ``rel`` is a directory that shows through)."""
    found: dict[str, tuple[int, str, os.stat_result]] = {}
    for i in shown:
        path = os.path.join(layers[i], rel) if rel else layers[i]
        with os.scandir(path) as it:
            for entry in it:
                if entry.name not in found:
                    found[entry.name] = (i, entry.path, entry.stat(follow_symlinks=False))
    for name, (i, path, st) in found.items():
        if _whiteout(st):
            continue
        child = f"{rel}/{name}" if rel else name
        target = os.path.join(dest, name)
        if stat.S_ISDIR(st.st_mode):
            below = [i]
            if not _opaque(path):
                for j in shown[shown.index(i) + 1 :]:
                    lower = os.path.join(layers[j], child)
                    try:
                        lst = os.lstat(lower)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    if not stat.S_ISDIR(lst.st_mode):
                        break  # a whiteout or another entry: nothing below shows
                    below.append(j)
                    if _opaque(lower):
                        break
            os.mkdir(target, 0o700)
            _link_dir(layers, below, child, target)
            copy_metadata(path, target, st)
        elif stat.S_ISREG(st.st_mode):
            os.link(path, target, follow_symlinks=False)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(path), target)
            copy_metadata(path, target, st)
        else:
            os.mknod(target, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
            copy_metadata(path, target, st)
