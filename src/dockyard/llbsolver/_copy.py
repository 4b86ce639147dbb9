"""The copy action on plain directory trees (BuildKit's ``docopy`` over fsutil's
``copy``). See :mod:`._fsops` for the rules every file action follows: paths resolved
inside their roots, nothing followed below a resolved directory, owners kept unless the
action has one, exact modes, hard links preserved within one copy."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

from dockyard.core import (
    CancelledError,
    DockyardError,
    MatchState,
    NotFoundError,
    PatternMatcher,
)

from ._actions import CopyAction
from ._fsops import mkdir_all, os_error, remove_all, set_times, show
from ._glob import resolve_wildcards
from ._owner import Owner
from ._paths import base_name, clean_path, root_path, split_dir
from .types import PreviousCopy

__all__ = ["copy", "link_deferred"]

_COPY_CHUNK = 1 << 30
_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)


def copy(
    src_root: Path,
    dest_root: Path,
    action: CopyAction,
    owner: Owner | None,
    *,
    cancelled: threading.Event | None = None,
    previous: PreviousCopy | None = None,
    source_layer: Path | None = None,
    deferred: list[tuple[str, str]] | None = None,
    claims: dict[tuple[int, int], object] | None = None,
) -> None:
    """Copy ``action.src`` of the tree at ``src_root`` into the tree at ``dest_root``.

    With ``previous`` (what this same copy wrote on the same destination tree before,
    see :class:`~dockyard.llbsolver.types.PreviousCopy`) a regular file whose source
    entry is unchanged is hard-linked from that earlier result when the file there has
    exactly the size, times, mode and owner this copy would give it: the result is the
    same tree, without reading or writing the content again. When ``dest_root`` is a
    mounted overlay (a link cannot cross into it) pass ``deferred``: such a file is then
    left out and ``(earlier file, destination path relative to dest_root)`` appended
    there, for :func:`link_deferred` to link into the layer once it is unmounted (its
    directory is made part of the layer here).

    With ``source_layer`` (the directory of the source tree's top layer, read only:
    see :meth:`~dockyard.llbsolver.types.CopyHistory.layer_path`) a regular file of the
    source that lives in that layer — an overlay's top layer always wins, so it is the
    file the copy reads — is hard-linked from there on the same condition: the copy
    would give it exactly the metadata it has. A first build's ``COPY`` of the build
    context then writes no file content. Committed layers are never written in place
    (later changes go to new layers), so sharing their files is safe.

    Hard links are kept within one source (a directory's hard-linked files stay linked),
    never made between sources: each source (each wildcard match, each copy action) is
    copied on its own, as BuildKit copies them, so two sources that are links of one
    file (``COPY a hard-link-of-a /d/``, a followed symlink) become two files. ``claims``
    records which source each earlier file linked into the destination stands for (pass
    one dict to every copy into the same layer): a file already linked for another source
    is copied instead.

    Destination rules (BuildKit's): a ``dest`` ending in ``/`` is a directory (made if
    missing); a file copied onto an existing directory lands inside it; a directory
    copied onto an existing path lands inside it unless ``dir_contents_only``, which
    copies its contents into ``dest`` (made if missing); a source ending in ``/.`` means
    the directory's contents. With ``create_dest_path`` missing parents of ``dest`` are
    made, otherwise the directory ``dest`` is in must exist.
    """
    src_path = clean_path(action.src, what="copy source")
    dest_path = clean_path(action.dest, what="copy destination")
    if not action.create_dest_path:
        parent = root_path(dest_root, dest_path.rstrip("/") or "/", follow_links=True).parent
        if not parent.is_relative_to(dest_root):
            parent = dest_root
        if not os.path.lexists(parent):
            raise NotFoundError(
                f"copy: the destination directory of {action.dest!r} does not exist"
            )
    for required in action.required_paths:
        path = clean_path(required, what="required path")
        if not os.path.lexists(root_path(src_root, path, follow_links=False)):
            raise NotFoundError(f"copy: required path {required!r} not found")
    if action.allow_wildcard:
        matches = [
            "/" + m
            for m in resolve_wildcards(src_root, src_path, follow_links=action.follow_symlinks)
        ]
        if not matches:
            if action.allow_empty_wildcard:
                return
            raise NotFoundError(
                f"copy: no source files were specified: {action.src!r} matches nothing"
            )
    else:
        matches = [src_path]
    copier = _Copier(
        src_root, dest_root, action, owner, cancelled, previous, deferred, source_layer, claims
    )
    for src in matches:
        if action.unpack:
            from ._unpack import unpack

            if unpack(
                src_root,
                src,
                dest_root,
                dest_path,
                owner=owner,
                timestamp=action.timestamp,
                cancelled=cancelled,
            ):
                continue
        copier.copy_source(src, dest_path)
    copier.finish()


class _ParentDir:
    __slots__ = ("copied", "delayed", "dst", "src")

    def __init__(self, src: Path, dst: Path, copied: bool) -> None:
        self.src = src
        self.dst = dst
        self.copied = copied
        self.delayed = False


class _Copier:
    """One copy action: fsutil's ``copier``, walking with ``lstat`` and never following
    a link below the resolved source and destination paths."""

    def __init__(
        self,
        src_root: Path,
        dest_root: Path,
        action: CopyAction,
        owner: Owner | None,
        cancelled: threading.Event | None,
        previous: PreviousCopy | None = None,
        deferred: list[tuple[str, str]] | None = None,
        source_layer: Path | None = None,
        claims: dict[tuple[int, int], object] | None = None,
    ) -> None:
        self.src_root = src_root
        self.dest_root = dest_root
        self.previous = previous
        self.source_layer = source_layer
        self.deferred = deferred
        self._in_layer: set[str] = set()  # directories of deferred files, copied up
        self._pending: set[str] = set()  # destination paths (relative) of deferred files
        self._src_prefix = len(os.path.join(str(src_root), ""))
        self._dest_prefix = len(os.path.join(str(dest_root), ""))
        self.action = action
        self.owner = owner
        self.mode = action.mode
        self.timestamp = action.timestamp
        self.cancelled = cancelled
        self.include = PatternMatcher(action.include_patterns) if action.include_patterns else None
        self.exclude = PatternMatcher(action.exclude_patterns) if action.exclude_patterns else None
        self.filtered = self.include is not None or self.exclude is not None
        self.inodes: dict[tuple[int, int], Path] = {}
        # earlier files linked into the destination -> the source (match) they stand for
        self.claims: dict[tuple[int, int], object] = {} if claims is None else claims
        self._source: object = object()
        # source inodes whose first file was deferred: the file it will be linked to
        self._deferred_groups: dict[tuple[int, int], str] = {}
        self.parents: list[_ParentDir] = []
        self.made_dirs: list[Path] = []  # destination parents we made, to re-time at the end

    # -- entry points

    def copy_source(self, src: str, dest_path: str) -> None:
        # hard links are kept within one source only (BuildKit copies each on its own)
        self.inodes = {}
        self._deferred_groups = {}
        self._source = object()
        action = self.action
        head, tail = split_dir(dest_path)
        ensure = head if tail not in ("", ".") else dest_path
        if ensure:
            self._mkdir_all(root_path(self.dest_root, ensure, follow_links=True))
        dst = root_path(self.dest_root, dest_path, follow_links=True)
        src_followed = root_path(self.src_root, src, follow_links=action.follow_symlinks)
        try:
            src_st = os.lstat(src_followed)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise NotFoundError(f"copy: source {src!r} not found") from exc
            raise os_error(f"copy: {src}", exc) from exc
        dst = self._prepare_target(src_st, src, dst)
        self._copy(src_followed, "", dst, src_st, overwrite=False, inc=None, exc=None, fresh=False)

    def finish(self) -> None:
        if self.timestamp is not None:
            for path in reversed(self.made_dirs):
                set_times(path, self.timestamp)

    # -- helpers

    def _mkdir_all(self, target: Path) -> None:
        self.made_dirs.extend(
            mkdir_all(
                self.dest_root, target, mode=0o755, owner=self.owner, timestamp=self.timestamp
            )
        )

    def _prepare_target(self, src_st: os.stat_result, src: str, dst: Path) -> Path:
        try:
            dest_st: os.stat_result | None = os.stat(dst)
        except (FileNotFoundError, NotADirectoryError):
            dest_st = None
        except OSError as exc:
            raise os_error(f"copy: {show(self.dest_root, dst)}", exc) from exc
        src_is_dir = stat.S_ISDIR(src_st.st_mode)
        dest_is_dir = dest_st is not None and stat.S_ISDIR(dest_st.st_mode)
        if (not self.action.dir_contents_only and src_is_dir and dest_st is not None) or (
            not src_is_dir and dest_is_dir
        ):
            name = base_name(src)
            if name not in (".", "/"):
                dst = dst / name  # dst is a resolved directory: the name is not followed
        target = dst.parent
        if self.action.dir_contents_only and src_is_dir and dest_st is None:
            target = dst
        if target.is_relative_to(self.dest_root):
            self._mkdir_all(target)
        return dst

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise CancelledError("copy cancelled")

    def _matches(
        self, components: str, is_dir: bool, inc: MatchState | None, exc: MatchState | None
    ) -> tuple[bool, bool, MatchState | None, MatchState | None]:
        """``(include, descend, include state, exclude state)`` for a walked entry."""
        include = True
        descend = is_dir
        inc_state = exc_state = None
        if self.include is not None:
            include, inc_state = self.include.match_with_parent(components, inc)
            if not include and is_dir:
                descend = any(
                    p.could_match_below(components)
                    for p in self.include.patterns
                    if not p.exclusion
                )
        if self.exclude is not None:
            excluded, exc_state = self.exclude.match_with_parent(components, exc)
            if excluded:
                include = False
                if is_dir and not self.exclude.may_include_inside(components):
                    descend = False
        return include, descend, inc_state, exc_state

    def _copy(
        self,
        src: Path,
        components: str,
        target: Path,
        st: os.stat_result,
        *,
        overwrite: bool,
        inc: MatchState | None,
        exc: MatchState | None,
        fresh: bool,
    ) -> None:
        """``fresh``: ``target``'s directory was made by this copy just now (nothing
        can be in the way)."""
        self._check_cancelled()
        is_dir = stat.S_ISDIR(st.st_mode)
        include = True
        if components and self.filtered:
            include, descend, inc, exc = self._matches(components, is_dir, inc, exc)
            if not include and not descend:
                return
        try:
            self._copy_entry(src, components, target, st, overwrite, include, inc, exc, fresh)
        except OSError as err:
            raise os_error(
                f"copy {show(self.src_root, src)} to {show(self.dest_root, target)}", err
            ) from err

    def _copy_entry(
        self,
        src: Path,
        components: str,
        target: Path,
        st: os.stat_result,
        overwrite: bool,
        include: bool,
        inc: MatchState | None,
        exc: MatchState | None,
        fresh: bool,
    ) -> None:
        mode = st.st_mode
        is_dir = stat.S_ISDIR(mode)
        target_st: os.stat_result | None = None
        if not fresh:
            try:
                target_st = os.lstat(target)
            except FileNotFoundError:
                target_st = None
            if target_st is None and include and self._pending:
                # an earlier source of this copy went there as a deferred link (not on
                # disk yet): this one replaces it, as BuildKit's later source does
                self._drop_pending(str(target)[self._dest_prefix :])
        if include:
            if (
                self.action.replace_existing
                and target_st is not None
                and not (is_dir and stat.S_ISDIR(target_st.st_mode))
            ):
                remove_all(target)
                target_st = None
            self._create_parents(overwrite)
        if not is_dir:
            if not include:
                return
            if target_st is not None:
                if stat.S_ISDIR(target_st.st_mode):
                    raise DockyardError(
                        f"copy: cannot replace directory {show(self.dest_root, target)}"
                        f" with {show(self.src_root, src)}, which is not a directory"
                    )
                os.unlink(target)
        copy_info = include
        if is_dir:
            created = self._copy_dir(src, components, target, st, overwrite, include, inc, exc)
            if not overwrite:
                copy_info = created
        elif stat.S_ISREG(mode):
            if self._copy_file(src, target, st, copy_info):
                return  # its metadata went with it
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), target)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(target, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            # BuildKit's copy (fsutil) leaves pipes and sockets out without a word: its
            # "unsupported mode" error wraps a nil error, which is no error
            return
        else:
            raise DockyardError(f"copy: {show(self.src_root, src)} has an unsupported file type")
        if copy_info:
            self._copy_info(src, target, st)

    def _copy_dir(
        self,
        src: Path,
        components: str,
        dst: Path,
        st: os.stat_result,
        overwrite: bool,
        include: bool,
        inc: MatchState | None,
        exc: MatchState | None,
    ) -> bool:
        created = False
        if include:
            created = self._dir_only(dst, st, overwrite)
        parent = _ParentDir(src, dst, copied=include)
        self.parents.append(parent)
        try:
            with os.scandir(src) as it:
                children = sorted((entry.name, entry) for entry in it)
            for name, entry in children:
                self._copy(
                    src / name,
                    f"{components}/{name}" if components else name,
                    dst / name,
                    entry.stat(follow_symlinks=False),
                    overwrite=True,
                    inc=inc,
                    exc=exc,
                    fresh=created,
                )
        finally:
            self.parents.pop()
        if parent.delayed:
            # made when something inside was included; its times were set before
            # the entries inside it changed them
            self._copy_info(src, dst, st)
        return created

    def _dir_only(self, dst: Path, st: os.stat_result, overwrite: bool) -> bool:
        try:
            existing = os.lstat(dst)
        except FileNotFoundError:
            os.mkdir(dst, 0o700)
            return True
        if not stat.S_ISDIR(existing.st_mode):
            raise DockyardError(
                f"copy: cannot copy a directory to non-directory {show(self.dest_root, dst)}"
            )
        if overwrite:
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        return False

    def _create_parents(self, overwrite: bool) -> None:
        for parent in self.parents:
            if parent.copied:
                continue
            st = os.stat(parent.src)
            if self._dir_only(parent.dst, st, overwrite):
                self._copy_info(parent.src, parent.dst, st)
                parent.delayed = True
            parent.copied = True

    def _copy_file(self, src: Path, target: Path, st: os.stat_result, info: bool) -> bool:
        """Copy one regular file; with ``info`` its owner, mode, times and xattrs too,
        set through the open descriptors (no path lookups). Returns whether the
        metadata was set (a hard link to an earlier copy gets it by path)."""
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.inodes.get(key)
            if first is not None:
                earlier = self._deferred_groups.get(key)
                if earlier is not None:  # the group's first file is linked after the unmount
                    self._defer(earlier, target)
                    return True
                os.link(first, target)
                return False
            self.inodes[key] = target
        if info and self.previous is not None and self._link_previous(src, target, st):
            return True
        if info and self.source_layer is not None and self._link_source(src, target, st):
            return True
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd_out = os.open(
                target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                _copy_data(fd_in, fd_out, st.st_size)
                if info:
                    self._fd_info(fd_in, fd_out, st)
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
        return info

    def _link_previous(self, src: Path, target: Path, st: os.stat_result) -> bool:
        """Link ``target`` to the earlier result's file if that is what this copy would
        write (see :func:`copy`); whether it did."""
        previous = self.previous
        assert previous is not None
        src_path, dest_path = str(src), str(target)
        if not (
            src_path.startswith(str(self.src_root))
            and dest_path.startswith(str(self.dest_root))
            and previous.unchanged(src_path[self._src_prefix :])
        ):
            return False
        earlier = os.path.join(previous.layer, dest_path[self._dest_prefix :])
        return self._link_to(earlier, target, st)

    def _link_source(self, src: Path, target: Path, st: os.stat_result) -> bool:
        """Link ``target`` to the source's own file in its top layer if that is what this
        copy would write (see :func:`copy`); whether it did."""
        assert self.source_layer is not None
        src_path = str(src)
        if not src_path.startswith(str(self.src_root)) or not str(target).startswith(
            str(self.dest_root)
        ):
            return False
        real = os.path.join(self.source_layer, src_path[self._src_prefix :])
        try:
            rst = os.lstat(real)
        except OSError:
            return False  # in a lower layer (or gone): copied
        if not (
            stat.S_ISREG(rst.st_mode)
            and not _overlay_marked(real)
            and rst.st_mode == st.st_mode
            and rst.st_size == st.st_size
            and rst.st_mtime_ns == st.st_mtime_ns
            and (rst.st_uid, rst.st_gid) == (st.st_uid, st.st_gid)
        ):
            return False
        return self._link_to(real, target, st, rst)

    def _link_to(
        self, earlier: str, target: Path, st: os.stat_result, est: os.stat_result | None = None
    ) -> bool:
        """Link ``target`` to the file ``earlier`` (whose stat ``est`` the caller may
        have) if it has exactly the size, times, mode and owner this copy would give
        ``target`` (now, or deferred until the destination is unmounted); whether it
        did."""
        if est is None:
            try:
                est = os.lstat(earlier)
            except OSError:
                return False
        owner = self.owner
        uid, gid = (owner.uid, owner.gid) if owner is not None else (st.st_uid, st.st_gid)
        bits = stat.S_IMODE(st.st_mode) if self.mode is None else self.mode.apply(st.st_mode)
        mtime = self.timestamp if self.timestamp is not None else st.st_mtime_ns
        if not (
            stat.S_ISREG(est.st_mode)
            and est.st_size == st.st_size
            and est.st_mtime_ns == mtime
            and stat.S_IMODE(est.st_mode) == bits
            and (est.st_uid, est.st_gid) == (uid, gid)
        ):
            return False
        key = (est.st_dev, est.st_ino)
        if self.claims.get(key, self._source) is not self._source:
            return False  # linked for another source: this one must be a file of its own
        if self.deferred is None:
            try:
                os.link(earlier, target, follow_symlinks=False)
            except OSError:
                return False
            self.claims[key] = self._source
            return True
        self.claims[key] = self._source
        if st.st_nlink > 1:  # later links of its group (if any here) are deferred to it too
            self._deferred_groups[(st.st_dev, st.st_ino)] = earlier
        self._defer(earlier, target)
        return True

    def _defer(self, earlier: str, target: Path) -> None:
        """Have :func:`link_deferred` link ``target`` to ``earlier`` after the unmount."""
        assert self.deferred is not None
        dest_path = str(target)
        parent = os.path.dirname(dest_path)
        if parent not in self._in_layer:
            # any change of a directory copies it up into the layer: its own times will do
            pst = os.lstat(parent)
            os.utime(parent, ns=(pst.st_atime_ns, pst.st_mtime_ns), follow_symlinks=False)
            self._in_layer.add(parent)
        rel = dest_path[self._dest_prefix :]
        self._drop_pending(rel)
        self.deferred.append((earlier, rel))
        self._pending.add(rel)

    def _drop_pending(self, rel: str) -> None:
        """Forget the deferred link to ``rel``: a later source of this copy (several
        files onto one name) writes there instead."""
        assert self.deferred is not None
        if rel not in self._pending:
            return
        self._pending.discard(rel)
        self.deferred[:] = [d for d in self.deferred if d[1] != rel]

    def _fd_info(self, fd_in: int, fd_out: int, st: os.stat_result) -> None:
        """:meth:`_copy_info` for a regular file through its descriptors."""
        owner = self.owner
        uid, gid = (owner.uid, owner.gid) if owner is not None else (st.st_uid, st.st_gid)
        os.fchown(fd_out, uid, gid)
        bits = stat.S_IMODE(st.st_mode) if self.mode is None else self.mode.apply(st.st_mode)
        os.fchmod(fd_out, bits)
        if self.timestamp is not None:
            os.utime(fd_out, ns=(self.timestamp, self.timestamp))
        else:
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
        try:
            names = os.listxattr(fd_in)
        except OSError:
            return
        for name in names:
            try:
                os.setxattr(fd_out, name, os.getxattr(fd_in, name))
            except OSError:
                continue

    def _copy_info(self, src: Path, target: Path, st: os.stat_result) -> None:
        owner = self.owner
        uid, gid = (owner.uid, owner.gid) if owner is not None else (st.st_uid, st.st_gid)
        os.chown(target, uid, gid, follow_symlinks=False)
        is_link = stat.S_ISLNK(st.st_mode)
        if not is_link:
            bits = stat.S_IMODE(st.st_mode) if self.mode is None else self.mode.apply(st.st_mode)
            os.chmod(target, bits)
        if self.timestamp is not None:
            os.utime(target, ns=(self.timestamp, self.timestamp), follow_symlinks=False)
        else:
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        _copy_xattrs(src, target)


def _copy_data(fd_in: int, fd_out: int, size: int) -> None:
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(fd_in, fd_out, min(size - copied, _COPY_CHUNK))
            if n == 0:
                break
            copied += n
    except OSError as exc:
        if copied or exc.errno not in _NO_COPY_RANGE:
            raise
    if copied == size:
        return  # sources are committed snapshots: a file does not grow under us
    # the rest with plain reads, from where copy_file_range left the offsets (also when
    # the kernel cannot copy ranges here, or the file grew meanwhile)
    while True:
        chunk = os.read(fd_in, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd_out, view) :]


def _copy_xattrs(src: Path, target: Path) -> None:
    """Extended attributes, best effort (BuildKit logs and ignores failures too)."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(
                target, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError:
            continue


def _overlay_marked(path: str) -> bool:
    """Whether overlayfs keeps state on the file at ``path`` (``trusted.overlay.*``: an
    origin recorded at copy-up, a metacopy): such a file belongs to its own stack and is
    copied, never linked into another."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return True
    return any(name.startswith("trusted.overlay.") for name in names)


def link_deferred(layer: Path, deferred: list[tuple[str, str]]) -> None:
    """Link the files :func:`copy` deferred into ``layer`` (the unmounted upper directory
    of its destination): a whiteout the copy left where the file goes is replaced, and
    each directory keeps the times the copy gave it. A file that cannot be linked is
    copied from the earlier result (same content, owner, mode, times and xattrs)."""
    times: dict[str, tuple[int, int]] = {}
    for earlier, rel in deferred:
        target = os.path.join(layer, rel)
        parent = os.path.dirname(target)
        if parent not in times:
            pst = os.lstat(parent)
            times[parent] = (pst.st_atime_ns, pst.st_mtime_ns)
        try:  # the common case first: nothing there (one call, not a lookup and a link)
            _link_or_copy(earlier, target)
        except FileExistsError:
            cur = os.lstat(target)
            if not (stat.S_ISCHR(cur.st_mode) and cur.st_rdev == 0):
                raise DockyardError(
                    f"copy: {rel!r} appeared in the layer while it was copied"
                ) from None
            os.unlink(target)  # the whiteout the copy left where the file goes
            _link_or_copy(earlier, target)
    for parent, (atime, mtime) in times.items():
        os.utime(parent, ns=(atime, mtime), follow_symlinks=False)


def _link_or_copy(earlier: str, target: str) -> None:
    """Link ``target`` to ``earlier``, or copy it whole where a link cannot be made
    (``FileExistsError`` when something is at ``target``)."""
    try:
        os.link(earlier, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        _copy_whole(earlier, target)


def _copy_whole(src: str, target: str) -> None:
    st = os.lstat(src)
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            _copy_data(fd_in, fd_out, st.st_size)
            os.fchown(fd_out, st.st_uid, st.st_gid)
            os.fchmod(fd_out, stat.S_IMODE(st.st_mode))
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
            for name in os.listxattr(fd_in):
                with contextlib.suppress(OSError):
                    os.setxattr(fd_out, name, os.getxattr(fd_in, name))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
