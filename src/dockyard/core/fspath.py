"""Paths from untrusted input, resolved inside a root directory.

A path that comes from a build context, an archive or an image is interpreted as if
``root`` were ``/``: every symlink met on the way is resolved against ``root`` (an
absolute target starts again at ``root``), and ``..`` never climbs above ``root``. This is
the behaviour of filepath-securejoin, which BuildKit and containerd use.

Two levels:

- :func:`resolve_in_root` returns a host path. It reads the tree (``lstat``/``readlink``)
  once, so it is only safe against trees nobody else changes at the same time (a snapshot
  being built, an archive being extracted).
- :func:`open_in_root`, :func:`open_dir_in_root` and :func:`mkdir_all_in_root` walk with
  directory file descriptors and ``O_NOFOLLOW``, resolving each symlink themselves, so a
  concurrent rename or symlink swap cannot redirect them outside ``root``.

:func:`clean_rel` and :func:`join_within` check paths lexically (no file-system access):
for inputs that must not even *say* ``..`` above their root (a ``COPY ../x`` source, a tar
member name), they raise :class:`PathEscapeError`.

Wildcards as BuildKit's file ops resolve them (``ResolveWildcards``), shared by the file
actions and the cache checksums: :func:`split_wildcards` cuts a path at its first component
holding a wildcard (``*``, ``?``, ``[``, not escaped by ``\\``); the caller resolves the
part before inside its root, and :func:`match_wildcards` matches the rest below it with
Go's ``filepath.Match`` syntax, one component per path segment (``*`` never crosses ``/``).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from functools import lru_cache
from pathlib import Path

from ._errors import DockyardError, NotFoundError, PathEscapeError
from .pathmatch import ANY_PIECE, STAR_PIECE, PatternError, SegmentMatcher, segment_matcher

__all__ = [
    "MAX_SYMLINKS",
    "clean_rel",
    "contains_wildcards",
    "directories_down_to",
    "join_within",
    "match_wildcards",
    "mkdir_all_in_root",
    "open_dir_in_root",
    "open_in_root",
    "open_special_output",
    "resolve_in_root",
    "split_wildcards",
    "wildcard_regex",
]

MAX_SYMLINKS = 255
"""Symlinks followed while resolving one path before giving up (like ``ELOOP``)."""

_O_PATH = getattr(os, "O_PATH", 0)
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(path: str | os.PathLike[str]) -> list[str]:
    return [p for p in os.fspath(path).split("/") if p and p != "."]


def clean_rel(path: str | os.PathLike[str]) -> str:
    """``path`` cleaned to a relative form (``"."`` for the root itself).

    A leading ``/`` is dropped (the path is taken relative to its root); ``..`` that
    would climb above the root raises :class:`PathEscapeError`.
    """
    out: list[str] = []
    for part in _parts(path):
        if part == "..":
            if not out:
                raise PathEscapeError(f"path {os.fspath(path)!r} points outside its root")
            out.pop()
        else:
            out.append(part)
    return "/".join(out) or "."


def join_within(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``root`` joined with :func:`clean_rel` of ``path``; symlinks are not looked at."""
    rel = clean_rel(path)
    return Path(root) if rel == "." else Path(root) / rel


def resolve_in_root(
    root: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    follow_final: bool = True,
) -> Path:
    """The host path that ``path`` names when ``root`` is taken as ``/``.

    Symlinks are resolved inside ``root`` (``/`` in a target means ``root``); ``..`` stops
    at ``root``. Components that do not exist are appended as they are (so the result can
    be created). With ``follow_final=False`` a final symlink is returned itself.
    Raises :class:`DockyardError` after :data:`MAX_SYMLINKS` symlinks (a loop).
    """
    base = os.path.abspath(os.fspath(root))
    pending = _parts(path)
    pending.reverse()  # a stack: next component last
    done: list[str] = []
    links = 0
    missing = False
    while pending:
        part = pending.pop()
        if part == "..":
            if done:
                done.pop()
            # once a component was missing, lexical handling is the only one possible
            continue
        if part == ".":
            continue
        if missing or (not pending and not follow_final):
            done.append(part)
            continue
        full = os.path.join(base, *done, part)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            missing = True
            done.append(part)
            continue
        except NotADirectoryError:
            missing = True
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise DockyardError(
                    f"too many levels of symbolic links resolving {os.fspath(path)!r}"
                )
            target = os.readlink(full)
            if target.startswith("/"):
                done = []
            new = _parts(target)
            new.reverse()
            pending.extend(new)
            continue
        done.append(part)
    return Path(base, *done)


def _open_root(root: str | os.PathLike[str]) -> int:
    try:
        return os.open(os.fspath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFoundError(f"root directory {os.fspath(root)!r} does not exist") from exc
    except OSError as exc:
        raise DockyardError(
            f"cannot open root directory {os.fspath(root)!r}: {exc.strerror}"
        ) from exc


class _Walker:
    """Walks components with directory fds; ``stack[0]`` is the root's fd."""

    def __init__(self, root_fd: int, display: str) -> None:
        self.stack = [root_fd]
        self.display = display
        self.links = 0

    def close(self, keep: int = -1) -> None:
        for fd in self.stack[1:]:
            if fd != keep:
                os.close(fd)
        self.stack = self.stack[:1]

    @property
    def top(self) -> int:
        return self.stack[-1]

    def follow(self, name: str, pending: list[str]) -> None:
        """``name`` in the current dir is a symlink: queue its target's components."""
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise DockyardError(f"too many levels of symbolic links resolving {self.display!r}")
        target = os.readlink(name, dir_fd=self.top)
        if target.startswith("/"):
            self.close()
        new = _parts(target)
        new.reverse()
        pending.extend(new)

    def walk_dirs(self, pending: list[str], *, create: bool, mode: int) -> None:
        """Descend through every component of ``pending`` (a stack) as directories."""
        while pending:
            part = pending.pop()
            if part == "..":
                if len(self.stack) > 1:
                    os.close(self.stack.pop())
                continue
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=self.top)
            except FileNotFoundError:
                if not create:
                    raise NotFoundError(f"{self.display!r}: {part!r} does not exist") from None
                try:
                    os.mkdir(part, mode, dir_fd=self.top)
                except FileExistsError:
                    pass  # lost a race, or a dangling symlink: look again
                pending.append(part)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise DockyardError(f"cannot open {self.display!r}: {exc.strerror}") from exc
                st = os.lstat(part, dir_fd=self.top)
                if stat.S_ISLNK(st.st_mode):
                    self.follow(part, pending)
                    continue
                raise DockyardError(
                    f"cannot resolve {self.display!r}: {part!r} is not a directory"
                ) from exc
            self.stack.append(fd)


def open_dir_in_root(
    root: str | os.PathLike[str] | int,
    path: str | os.PathLike[str],
    *,
    create: bool = False,
    mode: int = 0o755,
) -> int:
    """An ``O_PATH`` directory fd for ``path`` inside ``root`` (a path or a directory fd).

    With ``create``, missing directories are made (``mkdir -p``, each with ``mode``); a
    symlink on the way is resolved inside ``root`` first, so what gets made is always
    inside ``root``. The caller closes the fd.
    """
    own_root = not isinstance(root, int)
    root_fd = _open_root(root) if not isinstance(root, int) else root
    walker = _Walker(root_fd, os.fspath(path))
    try:
        pending = _parts(path)
        pending.reverse()
        walker.walk_dirs(pending, create=create, mode=mode)
        if len(walker.stack) == 1:
            return os.open(".", _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=root_fd)
        result = walker.top
        walker.close(keep=result)
        return result
    except BaseException:
        walker.close()
        raise
    finally:
        if own_root:
            os.close(root_fd)


def mkdir_all_in_root(
    root: str | os.PathLike[str], path: str | os.PathLike[str], *, mode: int = 0o755
) -> None:
    """``mkdir -p path`` inside ``root`` without ever following a symlink out of it."""
    os.close(open_dir_in_root(root, path, create=True, mode=mode))


def open_in_root(
    root: str | os.PathLike[str] | int,
    path: str | os.PathLike[str],
    flags: int = os.O_RDONLY,
    mode: int = 0o666,
    *,
    follow_final: bool = True,
    create_parents: bool = False,
) -> int:
    """``open(2)`` of ``path`` inside ``root`` (a path or a directory fd); returns the fd.

    Parent directories are resolved as by :func:`open_dir_in_root` (made first when
    ``create_parents``); the final component is opened with ``O_NOFOLLOW``. A final
    symlink is resolved inside ``root`` when ``follow_final`` (with ``O_CREAT`` a dangling
    link makes its target, inside ``root``); otherwise opening it fails, or with ``O_PATH``
    returns the link itself. Raises :class:`NotFoundError` if a component is missing.
    """
    display = os.fspath(path)
    own_root = not isinstance(root, int)
    root_fd = _open_root(root) if not isinstance(root, int) else root
    walker = _Walker(root_fd, display)
    try:
        pending = _parts(path)
        pending.reverse()  # pending[0] is the final component
        while True:
            if not pending:
                return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=walker.top)
            last = pending[0]
            parents = pending[1:]
            walker.walk_dirs(parents, create=create_parents, mode=0o755)
            if last == "..":
                if len(walker.stack) > 1:
                    os.close(walker.stack.pop())
                pending = []
                continue
            try:
                fd = os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=walker.top)
            except FileNotFoundError as exc:
                raise NotFoundError(f"{display!r} does not exist") from exc
            except OSError as exc:
                if exc.errno != errno.ELOOP or not follow_final:
                    raise DockyardError(f"cannot open {display!r}: {exc.strerror}") from exc
                pending = []
                walker.follow(last, pending)
                continue
            if follow_final and flags & _O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                pending = []
                walker.follow(last, pending)
                continue
            return fd
    finally:
        walker.close()
        if own_root:
            os.close(root_fd)


# -- wildcards ------------------------------------------------------------------------------
def contains_wildcards(name: str) -> bool:
    """Whether ``name`` has an unescaped ``*``, ``?`` or ``[``."""
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


def split_wildcards(path: str) -> tuple[str, str]:
    """``(base, pattern)``: the components before the first wildcard one (as an absolute
    path), and the rest (``""`` when there is no wildcard)."""
    base: list[str] = []
    rest: list[str] = []
    for part in path.split("/"):
        if not part:
            continue
        if rest or contains_wildcards(part):
            rest.append(part)
        else:
            base.append(part)
    return "/" + "/".join(base), "/".join(rest)


@lru_cache(maxsize=256)
def wildcard_regex(segment: str) -> SegmentMatcher:
    """Go's ``filepath.Match`` for one path segment, as a compiled regex (or, for three
    ``*`` or more, an automaton with the same ``fullmatch``: Python's re backtracks, and
    ``COPY *a*a*a*a*a*a*b`` against a 250-character name did not finish).

    Raises :class:`PatternError` (``bad pattern ...``) for a malformed pattern (an unclosed
    ``[`` or a trailing ``\\``), as Go's ``ErrBadPattern``; callers translate it into the
    error of their boundary.
    """
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        i += 1
        if ch == "*":
            out.append(STAR_PIECE)
        elif ch == "?":
            out.append(ANY_PIECE)
        elif ch == "\\":
            if i >= n:
                raise PatternError(f"bad pattern {segment!r}: trailing backslash")
            out.append(re.escape(segment[i]))
            i += 1
        elif ch == "[":
            i, body = _wildcard_class(segment, i)
            out.append(body)
        else:
            out.append(re.escape(ch))
    return segment_matcher(out)


def _wildcard_class(pattern: str, i: int) -> tuple[int, str]:
    n = len(pattern)
    negated = i < n and pattern[i] == "^"
    if negated:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            raise PatternError(f"bad pattern {pattern!r}: unclosed character class")
        if pattern[i] == "]" and not first:
            i += 1
            break
        first = False
        low, i = _wildcard_class_char(pattern, i)
        high = low
        if i < n and pattern[i] == "-":
            high, i = _wildcard_class_char(pattern, i + 1)
        if low <= high:
            items.append(f"{re.escape(low)}-{re.escape(high)}" if low != high else re.escape(low))
    if not items:
        return i, "[^/]" if negated else "(?!)"
    return i, "[" + ("^/" if negated else "") + "".join(items) + "]"


def _wildcard_class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise PatternError(f"bad pattern {pattern!r}: bad character class")
    ch = pattern[i]
    if ch == "\\":
        i += 1
        if i >= n:
            raise PatternError(f"bad pattern {pattern!r}: trailing backslash")
        ch = pattern[i]
    return ch, i + 1


def match_wildcards(directory: str | os.PathLike[str], pattern: str) -> list[str]:
    """Host paths below ``directory`` whose path relative to it matches ``pattern`` (the
    second half of :func:`split_wildcards`, one :func:`wildcard_regex` per segment).

    Symlinks below ``directory`` are not followed, and a matching directory is not searched
    further. Matches come in lexical order, as Go's ``filepath.Walk`` visits them.
    ``directory`` itself is not followed either: when it is missing or not a directory
    (a symlink included), nothing matches. Raises :class:`PatternError` for a malformed
    pattern, before looking at the tree.
    """
    regexes = [wildcard_regex(seg) for seg in pattern.split("/")]
    start = os.fspath(directory)
    out: list[str] = []
    try:
        st = os.lstat(start)
    except (FileNotFoundError, NotADirectoryError):
        return out
    if stat.S_ISDIR(st.st_mode):
        _match_below(start, regexes, 0, out)
    return out


def _match_below(directory: str, regexes: list[SegmentMatcher], depth: int, out: list[str]) -> None:
    try:
        names = sorted(os.listdir(directory))
    except (NotADirectoryError, FileNotFoundError):
        return
    regex = regexes[depth]
    last = depth == len(regexes) - 1
    for name in names:
        if not regex.fullmatch(name):
            continue
        full = os.path.join(directory, name)
        if last:
            out.append(full)
        elif stat.S_ISDIR(os.lstat(full).st_mode):
            _match_below(full, regexes, depth + 1, out)


def directories_down_to(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (``root`` or below it) is a directory reached from ``root``
    through directories only — no component a symlink or anything else. An extractor
    that recorded a directory and later replaced one of its parents (with a symlink,
    say) asks this before touching the recorded path again."""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return True
    at = os.fspath(root)
    for part in rel.split(os.sep):
        at = os.path.join(at, part)
        try:
            if not stat.S_ISDIR(os.lstat(at).st_mode):
                return False
        except OSError:
            return False
    return True


def open_special_output(path: str | os.PathLike[str]) -> int | None:
    """An output ``path`` that is a device or a FIFO (``/dev/null``, a named pipe) opened
    for writing where it is — such a file is written in place, never replaced by a
    renamed temporary file — or ``None`` when ``path`` is missing, a regular file or a
    directory. Raises ``OSError`` when it cannot be looked at or opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
