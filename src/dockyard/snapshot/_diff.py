"""Layer tars from snapshots: OCI whiteouts, name order, PAX headers, clamped times.

- :func:`write_upper_diff` reads an overlay upperdir directly: every entry there is a
  change; a 0/0 character device is a whiteout (``.wh.<name>``) and a directory marked
  ``trusted.overlay.opaque=y`` gets an opaque marker (``.wh..wh..opq``). Given the
  layers below (``lowers``), a directory overlayfs merely copied up — one the layers
  below have with the same type, mode, owner and xattrs — is written only as the
  parent of a change, as BuildKit's overlay differ skips it: a step that made and
  removed a mount point, or a file in ``/tmp``, leaves an empty layer.
- :func:`write_tree_diff` compares two full trees (the native snapshotter): entries
  whose type, mode, owner, size, mtime (ns), link target, device or xattrs differ are
  written (a directory's mtime alone is no change, as in BuildKit's differs), entries
  gone from the new tree become whiteouts, and the parent directories of every change
  are included so the layer extracts with the right metadata.

Entries are written in a depth-first walk with names sorted bytewise, with empty user and
group names, so the same tree gives the same bytes. Blocking: call from a thread.

:func:`write_tree_diff_dir` makes the same comparison but writes the changes as an
overlay layer directory instead of a tar (a whiteout is a 0/0 character device): the
computed layer of a diff snapshot.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from typing import BinaryIO, Protocol

from dockyard.core import Digest

from ._copy import copy_file_data, copy_metadata
from .types import LayerResult

__all__ = [
    "OPAQUE",
    "WHITEOUT_PREFIX",
    "HashingWriter",
    "write_tree_diff",
    "write_tree_diff_dir",
    "write_upper_diff",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
_OVERLAY_XATTR = "trusted.overlay."


class HashingWriter:
    """A write-only file that hashes (sha256) and counts what it passes on to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._out.flush()

    def result(self) -> LayerResult:
        return LayerResult(diff_id=Digest("sha256:" + self._hash.hexdigest()), size=self.size)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTR):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


_BLOCK = 512
_RECORD = 20 * _BLOCK
_MAGIC = b"ustar\x0000"
_MAX_ID = 8**7
_MAX_NUMBER = 8**11


class _TarOut:
    """A PAX-format tar stream, byte for byte what :class:`tarfile.TarFile` writes with
    ``format=PAX_FORMAT`` (and ``uname``/``gname`` empty): the common entry — an ASCII
    name and link target of at most 100 bytes, no xattrs, numbers that fit — gets its
    ustar header made here directly (tarfile's ``TarInfo`` round trip costs tens of
    microseconds an entry, most of a 20,000-file layer's tar); anything else is made by
    ``TarInfo.tobuf`` with its PAX extended header."""

    def __init__(self, out: BinaryIO, clamp: int | None) -> None:
        self.hw = HashingWriter(out)
        self.clamp = clamp
        self.inodes: dict[tuple[int, int], str] = {}

    def _mtime(self, st_mtime: float) -> int:
        t = int(st_mtime)
        return t if self.clamp is None else min(t, self.clamp)

    def entry(self, rel: str, path: str, st: os.stat_result) -> None:
        """Add ``path`` (lstat ``st``) under name ``rel``."""
        mode = st.st_mode
        xattrs = _xattrs(path)
        mtime = self._mtime(st.st_mtime)
        linkname = ""
        size = 0
        major = minor = 0
        if stat.S_ISREG(mode):
            kind = b"0"
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.inodes.get(key)
                if first is not None:
                    kind, linkname = b"1", first
                else:
                    self.inodes[key] = rel
            if kind == b"0":
                size = st.st_size
        elif stat.S_ISDIR(mode):
            kind = b"5"
            if not rel.endswith("/"):
                rel += "/"
        elif stat.S_ISLNK(mode):
            kind, linkname = b"2", os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = b"3" if stat.S_ISCHR(mode) else b"4"
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            kind = b"6"
        else:
            return  # sockets cannot be stored in a tar
        self._header(rel, stat.S_IMODE(mode), st.st_uid, st.st_gid, size, mtime, kind,
                     linkname, major, minor, xattrs)  # fmt: skip
        if size:
            self._data(path, size)

    def marker(self, rel: str, mtime: float) -> None:
        """An empty whiteout or opaque marker file."""
        self._header(rel, 0, 0, 0, 0, self._mtime(mtime), b"0", "", 0, 0, {})

    def _header(
        self,
        name: str,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime: int,
        kind: bytes,
        linkname: str,
        major: int,
        minor: int,
        xattrs: dict[str, bytes],
    ) -> None:
        if (
            not xattrs
            and len(name) <= 100
            and len(linkname) <= 100
            and name.isascii()
            and linkname.isascii()
            and 0 <= uid < _MAX_ID
            and 0 <= gid < _MAX_ID
            and 0 <= size < _MAX_NUMBER
            and 0 <= mtime < _MAX_NUMBER
        ):
            devices = b"%07o\0%07o\0" % (major, minor) if kind in (b"3", b"4") else b"\0" * 16
            block = bytearray(
                name.encode("ascii").ljust(100, b"\0")
                + b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode & 0o7777, uid, gid, size, mtime)
                + b"        "
                + kind
                + linkname.encode("ascii").ljust(100, b"\0")
                + _MAGIC
                + b"\0" * 64
                + devices
                + b"\0" * 167
            )
            block[148:155] = b"%06o\0" % sum(block)
            self.hw.write(bytes(block))
            return
        import tarfile  # the rare entry that needs a PAX extended header

        ti = tarfile.TarInfo(name)
        ti.mode, ti.uid, ti.gid, ti.size, ti.mtime = mode, uid, gid, size, mtime
        ti.type, ti.linkname = kind, linkname
        ti.devmajor, ti.devminor = major, minor
        ti.uname = ti.gname = ""
        if xattrs:
            ti.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
            }
        self.hw.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _data(self, path: str, size: int) -> None:
        """``size`` bytes of the file, padded to a whole block (an error if it is
        shorter, like tarfile's)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            left = size
            while left:
                data = os.read(fd, min(left, CHUNK))
                if not data:
                    raise OSError("unexpected end of data")
                self.hw.write(data)
                left -= len(data)
        finally:
            os.close(fd)
        if size % _BLOCK:
            self.hw.write(b"\0" * (_BLOCK - size % _BLOCK))

    def close(self) -> LayerResult:
        self.hw.write(b"\0" * (2 * _BLOCK))
        if self.hw.size % _RECORD:
            self.hw.write(b"\0" * (_RECORD - self.hw.size % _RECORD))
        self.hw.flush()
        return self.hw.result()


class _Sink(Protocol):
    def entry(self, rel: str, path: str, st: os.stat_result) -> None: ...

    def marker(self, rel: str, mtime: float) -> None: ...


class _DirOut:
    """Writes entries into an overlay layer directory (whiteouts as 0/0 devices)."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self.inodes: dict[tuple[int, int], str] = {}
        self.dirs: list[tuple[str, os.stat_result]] = []

    def entry(self, rel: str, path: str, st: os.stat_result) -> None:
        target = os.path.join(self.dest, rel)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(target, 0o700)
            copy_metadata(path, target, st)
            self.dirs.append((target, st))
            return
        if stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.inodes.get(key)
                if first is not None:
                    os.link(first, target)
                    return
                self.inodes[key] = target
            copy_file_data(path, target, mode)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(path), target)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(target, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:
            return  # sockets are not part of a layer
        copy_metadata(path, target, st)

    def marker(self, rel: str, mtime: float) -> None:
        head, _, base = rel.rpartition("/")
        parent = os.path.join(self.dest, head) if head else self.dest
        if base == OPAQUE:
            os.setxattr(parent, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            return
        os.mknod(os.path.join(parent, base[len(WHITEOUT_PREFIX) :]), stat.S_IFCHR | 0o600, 0)

    def close(self) -> None:
        for target, st in reversed(self.dirs):
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def write_tree_diff_dir(old: str | None, new: str | None, dest: str) -> None:
    """Write the changes from tree ``old`` to tree ``new`` (``None``: empty) into the empty
    directory ``dest`` as an overlay layer: changed and added entries copied (hard links
    among them kept), removed ones as whiteout devices."""
    out = _DirOut(dest)
    if new is not None:
        pending: list[tuple[str, str, os.stat_result]] = []
        _walk_compare(out, old, new, "", pending)
    elif old is not None:
        for e in _sorted_entries(old):
            out.marker(WHITEOUT_PREFIX + e.name, 0)
    out.close()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: os.fsencode(e.name))


def write_upper_diff(
    upper: str | None,
    out: BinaryIO,
    clamp_mtime: int | None,
    lowers: Sequence[str] | None = None,
) -> LayerResult:
    """Write overlay upperdir ``upper`` (``None``: no changes) to ``out`` as a layer tar;
    ``lowers`` (the layer directories below it, top first) let directories that are
    unchanged but for their times be left out unless something below them changed."""
    tw = _TarOut(out, clamp_mtime)
    if upper is not None:
        pending: list[tuple[str, str, os.stat_result]] = []
        _walk_upper(tw, upper, "", list(lowers) if lowers is not None else None, pending)
    return tw.close()


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk_upper(
    tw: _TarOut,
    path: str,
    rel: str,
    lowers: list[str] | None,
    pending: list[tuple[str, str, os.stat_result]],
) -> None:
    """Write upperdir ``path`` (at ``rel``); ``lowers`` are the layers below (``None``:
    no comparison, as under an opaque directory); ``pending`` holds unwritten parents."""
    for e in _sorted_entries(path):
        st = e.stat(follow_symlinks=False)
        name = _join(rel, e.name)
        if _is_whiteout(st):
            _flush(tw, pending)
            tw.marker(_join(rel, WHITEOUT_PREFIX + e.name), st.st_mtime)
            continue
        if not stat.S_ISDIR(st.st_mode):
            _flush(tw, pending)
            tw.entry(name, e.path, st)
            continue
        if _is_opaque(e.path):
            _flush(tw, pending)
            tw.entry(name, e.path, st)
            tw.marker(_join(name, OPAQUE), st.st_mtime)
            _walk_upper(tw, e.path, name, None, pending)
            continue
        below = _lower_entry(lowers, name) if lowers is not None else None
        if below is not None and _same_dir(below[1], st, below[0], e.path):
            pending.append((name, e.path, st))
            _walk_upper(tw, e.path, name, lowers, pending)
            if pending and pending[-1][0] == name:
                pending.pop()  # nothing below it changed: copied up only
            continue
        _flush(tw, pending)
        tw.entry(name, e.path, st)
        _walk_upper(tw, e.path, name, lowers, pending)


def _lower_entry(lowers: list[str], rel: str) -> tuple[str, os.stat_result] | None:
    """The path and lstat of ``rel`` as the overlay of ``lowers`` (top first) shows it:
    whiteouts, opaque directories and non-directories on the way hide what is below.
    Looked up one name at a time through real directories (never through a link)."""
    parts = rel.split("/")
    for layer in lowers:
        path = layer
        sealed = False  # an opaque directory on the way hides the deeper layers
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                if sealed:
                    return None
                break  # not in this layer: a deeper one may have it
            if _is_whiteout(st):
                return None
            if i == len(parts) - 1:
                return path, st
            if not stat.S_ISDIR(st.st_mode):
                return None
            if _is_opaque(path):
                sealed = True
    return None


def _same_dir(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    """Whether directory ``b`` is directory ``a`` but for its times (BuildKit's
    differs compare mode, owner and capabilities, never a directory's mtime)."""
    return (
        stat.S_ISDIR(a.st_mode)
        and a.st_mode == b.st_mode
        and a.st_uid == b.st_uid
        and a.st_gid == b.st_gid
        and _xattrs(pa) == _xattrs(pb)
    )


def _same(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    if stat.S_ISDIR(a.st_mode):
        return _same_dir(a, b, pa, pb)
    if (
        a.st_mode != b.st_mode
        or a.st_uid != b.st_uid
        or a.st_gid != b.st_gid
        or a.st_mtime_ns != b.st_mtime_ns
    ):
        return False
    if stat.S_ISREG(a.st_mode) and a.st_size != b.st_size:
        return False
    if (stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode)) and a.st_rdev != b.st_rdev:
        return False
    if stat.S_ISLNK(a.st_mode) and os.readlink(pa) != os.readlink(pb):
        return False
    return _xattrs(pa) == _xattrs(pb)


def write_tree_diff(
    old: str | None, new: str | None, out: BinaryIO, clamp_mtime: int | None
) -> LayerResult:
    """Write the changes from tree ``old`` to tree ``new`` (``None``: empty) to ``out``."""
    tw = _TarOut(out, clamp_mtime)
    if new is not None:
        pending: list[tuple[str, str, os.stat_result]] = []  # dirs not yet written
        _walk_compare(tw, old, new, "", pending)
    return tw.close()


def _walk_compare(
    tw: _Sink,
    old: str | None,
    new: str,
    rel: str,
    pending: list[tuple[str, str, os.stat_result]],
) -> None:
    """Compare directory ``new`` with ``old``; ``pending`` holds unwritten parent dirs."""
    new_entries = {e.name: e for e in _sorted_entries(new)}
    old_entries = {e.name: e for e in _sorted_entries(old)} if old is not None else {}
    names = sorted(set(new_entries) | set(old_entries), key=os.fsencode)
    for name in names:
        ne = new_entries.get(name)
        oe = old_entries.get(name)
        child = _join(rel, name)
        if ne is None:
            assert oe is not None
            _flush(tw, pending)
            # the time of what it deletes: the parent's would be the time this tree was
            # made (or re-applied), so the same layer would not diff to the same bytes
            tw.marker(_join(rel, WHITEOUT_PREFIX + name), oe.stat(follow_symlinks=False).st_mtime)
            continue
        nst = ne.stat(follow_symlinks=False)
        ost = oe.stat(follow_symlinks=False) if oe is not None else None
        if stat.S_ISDIR(nst.st_mode):
            old_dir = (
                oe.path
                if oe is not None and ost is not None and stat.S_ISDIR(ost.st_mode)
                else None
            )
            pushed = False
            if ost is None or oe is None or not _same(ost, nst, oe.path, ne.path):
                _flush(tw, pending)
                tw.entry(child, ne.path, nst)
            else:
                pending.append((child, ne.path, nst))
                pushed = True
            _walk_compare(tw, old_dir, ne.path, child, pending)
            if pushed and pending and pending[-1][0] == child:
                pending.pop()
            continue
        if ost is not None and oe is not None and _same(ost, nst, oe.path, ne.path):
            continue
        _flush(tw, pending)
        tw.entry(child, ne.path, nst)


def _flush(tw: _Sink, pending: list[tuple[str, str, os.stat_result]]) -> None:
    for rel, path, st in pending:
        tw.entry(rel, path, st)
    pending.clear()
