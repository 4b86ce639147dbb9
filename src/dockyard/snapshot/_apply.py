"""Extracting a layer tar into a snapshot directory, contained inside it.

Two modes:

- *plain* (``lowers`` empty or ``None``): ``root`` is the whole tree (a native snapshot
  or a layer without parent); whiteouts delete.
- *overlay* (``lowers`` given): ``root`` is an overlay upperdir over ``lowers`` (top
  first). Entries are written into the upperdir directly, without mounting: a whiteout
  becomes a 0/0 character device, an opaque marker sets ``trusted.overlay.opaque=y``,
  a directory that must be created under an existing lower one is copied up first (its
  mode, owner, xattrs and times), and paths are resolved against the *merged* view, so a
  symlink from a lower layer is followed as the mounted tree would follow it.

Containment: member names are cleaned (a leading ``/`` is dropped; ``..`` that climbs
out raises :class:`PathEscapeError`), parent directories are resolved with symlinks
interpreted inside the root (``/`` means the root; ``..`` stops there), the final
component is never followed (an existing entry is replaced, not written through), and
hard-link targets are resolved the same way. ``trusted.overlay.*`` xattrs in a tar are
ignored: they would let a layer forge overlay metadata. Blocking: call from a thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from typing import TYPE_CHECKING, BinaryIO

from dockyard.core import ContentError, Digest, DockyardError, NotFoundError, PathEscapeError
from dockyard.core.fspath import MAX_SYMLINKS, clean_rel, directories_down_to

from ._copy import copy_file_data, copy_metadata
from ._diff import OPAQUE, WHITEOUT_PREFIX
from .types import LayerResult

if TYPE_CHECKING:
    import tarfile

__all__ = ["HashingReader", "apply_tar"]

CHUNK = 1 << 20
_OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX = "SCHILY.xattr."
# failures of the host, not of the entry being extracted: reported as they are
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM})


class HashingReader:
    """A readable file that hashes (sha256) and counts everything read from ``src``.

    It also offers ``tell`` and a forward-only ``seek`` (skipping by reading), which is
    all :class:`tarfile.TarFile` needs to read members in order from a pipe; that avoids
    tarfile's slow stream mode (``r|``) and its small buffers.
    """

    def __init__(self, src: BinaryIO, *, hashed: bool = True) -> None:
        self._src = src
        self._hash = hashlib.sha256() if hashed else None
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self.size

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.size
        elif whence != 0:
            raise OSError(errno.ESPIPE, "a layer stream can only seek forward")
        if pos < self.size:
            raise OSError(errno.ESPIPE, "a layer stream can only seek forward")
        while self.size < pos:
            if not self.read(min(CHUNK, pos - self.size)):
                break
        return self.size

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def result(self) -> LayerResult:
        if self._hash is None:
            raise ValueError("a HashingReader made with hashed=False has no digest")
        return LayerResult(diff_id=Digest("sha256:" + self._hash.hexdigest()), size=self.size)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _remove(path: str) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


_ABSENT = "absent"
_WHITEOUT = "whiteout"


class _Tree:
    """Path resolution and changes for one extraction (plain or overlay)."""

    def __init__(self, root: str, lowers: list[str]) -> None:
        self.root = root
        self.layers = [root, *lowers]
        self.overlay = bool(lowers)
        # merged dir (rel parts) -> indices of layers whose dir shows through, top first
        self._dirs: dict[tuple[str, ...], list[int]] = {(): list(range(len(self.layers)))}
        self.created: set[tuple[str, ...]] = set()
        # caches of what this extraction made or checked; dropped on any removal
        self._resolved: dict[str, tuple[str, ...]] = {}
        self._topdirs: set[tuple[str, ...]] = {()}
        # a directory of the top layer was removed: a path made before may now lead
        # through what replaced it (a symlink), so recorded paths must be re-checked
        self.dirs_removed = False

    def host(self, parts: tuple[str, ...], layer: int = 0) -> str:
        return os.path.join(self.layers[layer], *parts)

    def invalidate(self) -> None:
        self._dirs = {(): list(range(len(self.layers)))}
        self._resolved.clear()
        self._topdirs = {()}

    def parent_dir(self, rel: str) -> tuple[tuple[str, ...], str]:
        """Resolve directory ``rel`` and make it exist in the top layer: (parts, host path)."""
        parts = self._resolved.get(rel)
        if parts is None:
            parts = self.resolve(rel)
            path = self.ensure_dir(parts)
            self._resolved[rel] = parts
            return parts, path
        return parts, self.host(parts)

    # -- merged lookups ----------------------------------------------------------------
    def lookup(self, parts: tuple[str, ...]) -> tuple[str | int, os.stat_result | None]:
        """(layer index, lstat) of the visible entry at ``parts``; else (_ABSENT|_WHITEOUT, None).

        ``parts`` must have a visible directory as parent (resolve first).
        """
        parent = self._dirs.get(parts[:-1])
        if parent is None:
            parent = self._dir_layers(parts[:-1])
        for idx in parent:
            st = _lstat(self.host(parts, idx))
            if st is None:
                continue
            if _is_whiteout(st) and self.overlay:
                return _WHITEOUT, None
            return idx, st
        return _ABSENT, None

    def _dir_layers(self, parts: tuple[str, ...]) -> list[int]:
        cached = self._dirs.get(parts)
        if cached is not None:
            return cached
        if not parts:
            return self._dirs[()]
        parent = self._dir_layers(parts[:-1])
        out: list[int] = []
        for idx in parent:
            path = self.host(parts, idx)
            st = _lstat(path)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            out.append(idx)
            if self.overlay and _opaque(path):
                break
        self._dirs[parts] = out
        return out

    def resolve(self, rel: str) -> tuple[str, ...]:
        """Follow ``rel`` (clean, relative) through the merged tree; symlinks stay inside."""
        pending = [p for p in rel.split("/") if p and p != "."]
        pending.reverse()
        done: list[str] = []
        links = 0
        missing = False
        while pending:
            part = pending.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            if missing:
                done.append(part)
                continue
            where, st = self.lookup((*done, part))
            if st is None:
                missing = True
                done.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise DockyardError(f"too many levels of symbolic links in {rel!r}")
                assert isinstance(where, int)
                target = os.readlink(self.host((*done, part), where))
                if target.startswith("/"):
                    done = []
                new = [p for p in target.split("/") if p and p != "."]
                new.reverse()
                pending.extend(new)
                continue
            if not stat.S_ISDIR(st.st_mode):
                # a file in the middle of a path: it will be replaced by a directory
                missing = True
            done.append(part)
        return tuple(done)

    def _drop(self, parts: tuple[str, ...]) -> None:
        """Forget cached directory layers at and below ``parts``."""
        if parts not in self._dirs:
            return
        n = len(parts)
        for key in [k for k in self._dirs if k[:n] == parts]:
            del self._dirs[key]

    def _lower_has_dir(self, parts: tuple[str, ...]) -> bool:
        """Whether a lower layer would show a directory at ``parts`` (merging into ours)."""
        parent = self._dir_layers(parts[:-1])
        for idx in parent:
            if idx == 0:
                continue
            path = self.host(parts, idx)
            st = _lstat(path)
            if st is None:
                continue
            return stat.S_ISDIR(st.st_mode) and not _is_whiteout(st)
        return False

    def _new_dir(self, parts: tuple[str, ...], *, merge_from: int | None) -> str:
        """mkdir ``parts`` in the top layer (nothing there); merge with a lower dir or hide it."""
        path = self.host(parts)
        os.mkdir(path, 0o755)
        opaque = False
        if merge_from is not None:
            copy_metadata(
                self.host(parts, merge_from), path, os.lstat(self.host(parts, merge_from))
            )
        elif self.overlay and self._lower_has_dir(parts):
            os.setxattr(path, _OPAQUE_XATTR, b"y")
            opaque = True
        cached = self._dirs.get(parts)
        if cached is not None:
            if opaque:
                self._drop(parts)
                self._dirs[parts] = [0]
            else:
                self._dirs[parts] = [0, *(i for i in cached if i != 0)]
        return path

    def _clear_top(self, parts: tuple[str, ...], st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            self.invalidate()
            self.dirs_removed = True
        _remove(self.host(parts))

    def _merged_lower_dir(self, parts: tuple[str, ...]) -> int | None:
        where, lst = self.lookup(parts)
        if isinstance(where, int) and where > 0 and lst is not None and stat.S_ISDIR(lst.st_mode):
            return where
        return None

    def ensure_dir(self, parts: tuple[str, ...]) -> str:
        """Make ``parts`` (resolved) a directory in the top layer; copy up from lowers."""
        for i in range(1, len(parts) + 1):
            sub = parts[:i]
            if sub in self._topdirs:
                continue
            st = _lstat(self.host(sub))
            if st is None or not stat.S_ISDIR(st.st_mode):
                merge = self._merged_lower_dir(sub) if self.overlay else None
                if st is not None:
                    self._clear_top(sub, st)
                self._new_dir(sub, merge_from=merge)
            self._topdirs.add(sub)
        return self.host(parts)

    def make_dir(self, parts: tuple[str, ...]) -> str:
        """A directory entry: keep a top-layer dir, else replace what is there."""
        path = self.host(parts)
        st = _lstat(path)
        if st is None or not stat.S_ISDIR(st.st_mode):
            merge = self._merged_lower_dir(parts) if self.overlay else None
            if st is not None:
                self._clear_top(parts, st)
            self._new_dir(parts, merge_from=merge)
        self._topdirs.add(parts)
        return path

    def make_room(self, parts: tuple[str, ...]) -> None:
        """Clear the top layer at ``parts`` for a new non-directory entry."""
        st = _lstat(self.host(parts))
        if st is not None:
            self._clear_top(parts, st)
        self._drop(parts)

    def whiteout(self, parts: tuple[str, ...]) -> str | None:
        """Hide ``parts``; the whiteout device made for it, if one was needed."""
        if parts in self.created:
            return None  # a whiteout only hides what lower layers hold
        st = _lstat(self.host(parts))
        if st is not None:
            self._clear_top(parts, st)
        if not self.overlay:
            return None
        where, _ = self.lookup(parts)
        if isinstance(where, int):
            parent = self.ensure_dir(parts[:-1])
            path = os.path.join(parent, parts[-1])
            os.mknod(path, stat.S_IFCHR | 0o600, 0)
            self.invalidate()
            return path
        return None

    def opaque(self, parts: tuple[str, ...]) -> None:
        path = self.ensure_dir(parts)
        for name in os.listdir(path):
            if (*parts, name) not in self.created:
                _remove(os.path.join(path, name))
                self.dirs_removed = True
        if self.overlay:
            os.setxattr(path, _OPAQUE_XATTR, b"y")
        self.invalidate()


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _split(rel: str) -> tuple[str, str]:
    head, _, tail = rel.rpartition("/")
    return head, tail


def apply_tar(stream: BinaryIO, root: str, lowers: list[str] | None) -> LayerResult:
    """Extract the uncompressed tar ``stream`` into ``root``; see the module docstring."""
    import tarfile  # loaded when a layer is applied, not with the snapshotter

    # a stream may hash itself (in the thread that produces it, beside this one):
    # ``sha256_of_all()`` gives the digest and size of everything it returned, once at
    # its end
    own_hash = getattr(stream, "sha256_of_all", None)
    reader = HashingReader(stream, hashed=own_hash is None)
    tree = _Tree(os.path.abspath(root), list(lowers or []))
    # directory -> mtime, set once the entries below it are written; a directory met
    # again keeps its first place (before its children) and takes the later time
    dir_times: dict[str, int] = {}
    try:
        with tarfile.TarFile(fileobj=reader, mode="r") as tar:  # type: ignore[arg-type]
            for member in tar:
                try:
                    _apply_member(tar, member, tree, dir_times)
                except (ValueError, OverflowError) as exc:  # a NUL in a name, a huge uid
                    raise ContentError(f"invalid layer tar entry {member.name!r}: {exc}") from exc
                except OSError as exc:
                    if exc.errno in _HOST_ERRNOS:
                        raise
                    # the entry cannot be made as it says (a name too long, an xattr
                    # refused, a hard link to itself): name it, not a host path
                    raise ContentError(
                        f"layer tar entry {member.name!r} cannot be extracted: "
                        f"{exc.strerror or exc}"
                    ) from exc
    except tarfile.TarError as exc:
        raise ContentError(f"invalid layer tar: {exc}") from exc
    except OSError as exc:
        if exc.errno != errno.ESPIPE:
            raise
        # tarfile seeks back for GNU sparse entries (their map is read from the data);
        # the stream is read once, forward: a layer with one was an OSError traceback
        raise ContentError(f"unsupported layer tar: {exc.strerror} (a GNU sparse entry?)") from exc
    except EOFError as exc:
        raise ContentError(f"truncated layer tar: {exc}") from exc
    reader.drain()
    _set_dir_times(tree, dir_times)
    if own_hash is None:
        return reader.result()
    digest, size = own_hash()
    if size != reader.size:
        raise ContentError(f"layer stream hashed {size} bytes but {reader.size} were read")
    return LayerResult(diff_id=Digest(digest), size=size)


def _apply_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    tree: _Tree,
    dir_times: dict[str, int],
) -> None:
    try:
        rel = clean_rel(member.name)
    except PathEscapeError as exc:
        raise PathEscapeError(f"layer tar entry {member.name!r} points outside the layer") from exc
    if rel == ".":
        if member.isdir():
            _set_meta(tree.root, member)
            dir_times[tree.root] = int(member.mtime)
        return
    parent_rel, base = _split(rel)
    if base.startswith(WHITEOUT_PREFIX):
        parent = tree.resolve(parent_rel)
        if base == OPAQUE:
            tree.opaque(parent)
        else:
            name = base[len(WHITEOUT_PREFIX) :]
            if name in ("", ".", ".."):
                raise ContentError(f"invalid whiteout {member.name!r} in layer tar")
            made = tree.whiteout((*parent, name))
            if made is not None:  # the marker's time: a diff of this layer gives it back
                os.utime(made, (member.mtime, member.mtime), follow_symlinks=False)
        return
    parent, parent_path = tree.parent_dir(parent_rel)
    parts = (*parent, base)
    path = os.path.join(parent_path, base)
    if member.isdir():
        tree.make_dir(parts)
        _set_meta(path, member)
        dir_times[path] = int(member.mtime)
        tree.created.add(parts)
        return
    if member.islnk():
        src = _link_source(tree, member)
        tree.make_room(parts)
        os.link(src, path, follow_symlinks=False)
        tree.created.add(parts)
        return
    tree.make_room(parts)
    tree.created.add(parts)
    if member.isreg():
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            _write_data(tar, member, fd)
        finally:
            os.close(fd)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        raise ContentError(f"unsupported entry type {member.type!r} for {member.name!r}")
    _set_meta(path, member)


def _set_dir_times(tree: _Tree, dir_times: dict[str, int]) -> None:
    """Give the tar's directories their times, children before parents.

    A directory the tar later replaced (by a symlink, say) is skipped: its recorded path
    would now lead through that symlink, out of the root.
    """
    for path, mtime in reversed(dir_times.items()):
        if tree.dirs_removed and not directories_down_to(tree.root, path):
            continue
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def _write_data(tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
    """Copy a regular member's data to ``fd``. Read straight from the stream when it
    stands at the data (the usual case: members are read in order), which saves
    tarfile's file object and a copy of every piece; else (sparse members) through
    ``extractfile``."""
    reader = tar.fileobj
    if (
        isinstance(reader, HashingReader)
        and not member.issparse()
        and reader.tell() == member.offset_data
    ):
        left = member.size
        while left:
            chunk = reader.read(min(CHUNK, left))
            if not chunk:
                raise ContentError(f"truncated layer tar: {member.name!r} ends early")
            left -= len(chunk)
            _write_all(fd, chunk)
        return
    data = tar.extractfile(member)
    if data is not None:
        while chunk := data.read(CHUNK):
            _write_all(fd, chunk)


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


def _link_source(tree: _Tree, member: tarfile.TarInfo) -> str:
    try:
        rel = clean_rel(member.linkname)
    except PathEscapeError as exc:
        raise PathEscapeError(
            f"hard link {member.name!r} -> {member.linkname!r} points outside the layer"
        ) from exc
    if rel == ".":
        raise ContentError(f"hard link {member.name!r} points at the layer root")
    parent_rel, base = _split(rel)
    parts = (*tree.resolve(parent_rel), base)
    where, st = tree.lookup(parts)
    if st is None or not isinstance(where, int):
        raise NotFoundError(f"hard link {member.name!r}: target {member.linkname!r} not found")
    if stat.S_ISDIR(st.st_mode):
        raise ContentError(f"hard link {member.name!r}: target {member.linkname!r} is a directory")
    if where == 0:
        return tree.host(parts)
    # the target lives in a lower layer: copy it up so the link stays in this layer
    up = os.path.join(tree.ensure_dir(parts[:-1]), base)
    lower = tree.host(parts, where)
    if stat.S_ISREG(st.st_mode):
        copy_file_data(lower, up, st.st_mode)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(lower), up)
    else:
        os.mknod(up, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
    copy_metadata(lower, up, st)
    return up


def _set_meta(path: str, member: tarfile.TarInfo) -> None:
    try:
        os.lchown(path, member.uid, member.gid)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PAX):
            continue
        name = key[len(_XATTR_PAX) :]
        if name.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
        if not member.isdir():
            os.utime(path, (member.mtime, member.mtime))
    else:
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
