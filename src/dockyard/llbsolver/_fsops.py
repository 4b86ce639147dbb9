"""File actions on plain directory trees: mkdir, mkfile, rm, symlink (copy is in
:mod:`._copy`), and the rules all of them follow.

The semantics are BuildKit's (``solver/llbsolver/file/backend.go`` over fsutil's
``copy``); they are written against plain directories so that they are testable without
mounts. Every function works on trees that only the caller changes meanwhile (a snapshot
being built), blocks, and is meant to run in a worker thread.

Containment: every path is resolved inside its root (:func:`dockyard.core.fspath.
resolve_in_root`: ``..`` stops at the root, absolute symlinks restart at it), a path that
*says* ``..`` above its root is rejected, and below a resolved directory nothing is
followed: an existing destination symlink is replaced, never written through, and a
source symlink is copied as a link (to wherever it points, unresolved) unless
``follow_symlinks`` asks to resolve the source path itself — inside the source root.

Ownership: copied entries keep their owner unless the action has one; what an action
creates (directories, files, links, missing destination parents) belongs to the
process's user (root in a build) unless the action has an owner. Modes of created
entries are exact (no umask). ``timestamp`` sets both atime and mtime.

Hard links between copied files are preserved within one copy action.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError

from ._actions import MkdirAction, MkfileAction, RmAction, SymlinkAction
from ._glob import resolve_wildcards
from ._owner import Owner
from ._paths import clean_path, rel_to_root, root_path

__all__ = [
    "mkdir",
    "mkdir_all",
    "mkfile",
    "os_error",
    "remove_all",
    "rm",
    "set_times",
    "show",
    "symlink",
]


def show(root: Path, path: Path) -> str:
    try:
        rel = rel_to_root(root, path)
    except DockyardError:
        return str(path)
    return "/" if rel == "." else "/" + rel


def os_error(what: str, exc: OSError) -> DockyardError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"{what}: {reason}")
    return DockyardError(f"{what}: {reason}")


def set_times(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def _chown(path: Path, owner: Owner) -> None:
    os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def remove_all(path: Path) -> None:
    """``rm -rf path`` without following a symlink at ``path`` or below it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def mkdir_all(
    root: Path,
    target: Path,
    *,
    mode: int = 0o755,
    owner: Owner | None = None,
    timestamp: int | None = None,
) -> list[Path]:
    """Create the missing directories from ``root`` down to ``target`` (a host path
    inside ``root`` whose existing components are already resolved); returns the ones
    created, outermost first. Each gets ``mode``, ``owner`` and ``timestamp``."""
    rel = rel_to_root(root, target)
    if rel == ".":
        return []
    created: list[Path] = []
    current = root
    for part in rel.split("/"):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current, 0o700)
            except OSError as exc:
                raise os_error(f"mkdir {show(root, current)}", exc) from exc
            if owner is not None:
                _chown(current, owner)
            os.chmod(current, mode)
            created.append(current)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise DockyardError(f"mkdir {show(root, current)}: not a directory")
    if timestamp is not None:
        for path in reversed(created):
            set_times(path, timestamp)
    return created


# -- mkdir, mkfile, rm, symlink -------------------------------------------------------


def mkdir(root: Path, action: MkdirAction, owner: Owner | None) -> None:
    """``mkdir`` (``-p`` with ``parents``); an existing path is left alone."""
    path = clean_path(action.path, what="mkdir path")
    target = root_path(root, path, follow_links=True)
    if action.parents:
        mkdir_all(root, target, mode=action.mode, owner=owner, timestamp=action.timestamp)
        return
    try:
        os.mkdir(target, 0o700)
    except FileExistsError:
        return
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NotFoundError(
                f"mkdir {path}: the parent directory does not exist (make parents to create it)"
            ) from exc
        raise os_error(f"mkdir {path}", exc) from exc
    if owner is not None:
        _chown(target, owner)
    os.chmod(target, action.mode)
    if action.timestamp is not None:
        set_times(target, action.timestamp)


def mkfile(root: Path, action: MkfileAction, owner: Owner | None) -> None:
    """Write a file: staged next to the target and renamed over it, so that whatever
    was there (a file, a link, a device node) is replaced, never written through."""
    path = clean_path(action.path, what="mkfile path")
    target = root_path(root, path, follow_links=True)
    if target == root:
        raise DockyardError(f"mkfile {path}: is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-mkfile-", dir=target.parent)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NotFoundError(f"mkfile {path}: the parent directory does not exist") from exc
        raise os_error(f"mkfile {path}", exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(action.data)
            if owner is not None:
                os.fchown(f.fileno(), owner.uid, owner.gid)
            os.fchmod(f.fileno(), action.mode)
        if action.timestamp is not None:
            set_times(Path(tmp), action.timestamp)
        os.rename(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(f"mkfile {path}", exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def rm(root: Path, action: RmAction) -> None:
    """Remove a path (recursively); a final symlink is removed, not followed."""
    path = clean_path(action.path, what="rm path")
    if action.allow_wildcard:
        for match in resolve_wildcards(root, path, follow_links=False):
            _rm_path(root, "/" + match, allow_not_found=action.allow_not_found)
        return
    _rm_path(root, path, allow_not_found=action.allow_not_found)


def _rm_path(root: Path, path: str, *, allow_not_found: bool) -> None:
    display = path.rstrip("/") or "/"
    if display in ("/", "/."):
        raise DockyardError("rm: refusing to remove the root directory")
    target = root_path(root, path.rstrip("/"), follow_links=False)
    if target == root:
        raise DockyardError("rm: refusing to remove the root directory")
    if not allow_not_found and not os.path.lexists(target):
        raise NotFoundError(f"rm {display}: no such file or directory")
    try:
        remove_all(target)
    except OSError as exc:
        raise os_error(f"rm {display}", exc) from exc


def symlink(root: Path, action: SymlinkAction, owner: Owner | None) -> None:
    """Create a symbolic link at ``newpath`` to ``oldpath`` (the target is stored as
    given and never resolved)."""
    path = clean_path(action.newpath, what="symlink path").rstrip("/") or "/"
    target = root_path(root, path, follow_links=False)
    if target == root:
        raise DockyardError(f"symlink {action.newpath}: file exists")
    try:
        os.symlink(action.oldpath, target)
    except FileExistsError as exc:
        raise DockyardError(f"symlink {path}: file exists") from exc
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NotFoundError(f"symlink {path}: the parent directory does not exist") from exc
        raise os_error(f"symlink {path}", exc) from exc
    if owner is not None:
        _chown(target, owner)
    if action.timestamp is not None:
        set_times(target, action.timestamp)
