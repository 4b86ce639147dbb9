"""The sending half of a file sync: walk a directory into sorted stat entries, and read
the content of the entries the receiver wants.

The walk follows fsutil's rules (what ``docker build`` sends): exclude patterns with
``.dockerignore`` semantics, include patterns restricting the tree, follow paths whose
symlink targets are added to the includes; a directory that is excluded or not included
itself is sent only when something inside it is; sockets are skipped; regular files
with more than one link become hard links to the first path seen. Symlinks are sent as
links and never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError
from dockyard.core.fspath import contains_wildcards
from dockyard.core.pathmatch import MatchState, Pattern, PatternError, PatternMatcher

from ._dirfds import SourceFiles
from ._values import FileStat, SyncRequest
from .types import Chunk

__all__ = ["CHUNK_SIZE", "ContentReader", "check_prefix", "follow_links", "under_prefix", "walk"]

CHUNK_SIZE = 1 << 20
"""Largest piece of file content in one message."""

_MAX_FOLLOW = 255


def follow_links(root: Path, paths: tuple[str, ...]) -> list[str]:
    """The paths to include so that the symlinks named by ``paths`` arrive with their
    targets: each path with every symlink on the way resolved (inside ``root``: an
    absolute target starts at ``root``), plus the symlinks themselves. ``[]`` when one
    of them is the root (no restriction)."""
    resolved: set[str] = set()

    def lstat_link(rel: str) -> list[str] | None:
        """Targets (root-relative) if ``rel`` is a symlink, else ``None``."""
        base = rel.rsplit("/", 1)[-1]
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if contains_wildcards(base):
            try:
                names = sorted(os.listdir(os.path.join(root, parent) if parent else root))
            except OSError:
                return None
            try:
                pattern = Pattern.compile(base)
            except PatternError:
                return None
            out: list[str] = []
            for name in names:
                if pattern.matches(name):
                    found = lstat_link(f"{parent}/{name}" if parent else name)
                    if found:
                        out.extend(found)
            return out or None
        full = os.path.join(root, rel)
        try:
            st = os.lstat(full)
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            return None
        target = os.readlink(full)
        if target.startswith("/"):
            return [target]
        return ["/" + (f"{parent}/{target}" if parent else target)]

    def append(path: str, depth: int) -> None:
        if depth > _MAX_FOLLOW:
            return
        parts = [p for p in path.split("/") if p and p != "."]
        done: list[str] = []
        while True:
            if not parts:
                resolved.add("/".join(done) or ".")
                return
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            done.append(part)
            current = "/".join(done)
            targets = lstat_link(current)
            if (not parts or targets is not None) and current in resolved:
                return
            if targets is not None:
                resolved.add(current)
                rest = "/".join(parts)
                for target in targets:
                    append(f"{target}/{rest}" if rest else target, depth + 1)
                return

    for path in paths:
        append(path, 0)
    if "." in resolved:
        return []
    out: list[str] = []
    for item in sorted(resolved):
        if out and item.startswith(out[-1] + "/"):
            continue
        out.append(item)
    return out


def _entry_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _could_include_below(include: PatternMatcher, directory: str) -> bool:
    return any(not p.exclusion and p.could_match_below(directory) for p in include.patterns)


def _stat_entry(rel: str, full: str, st: os.stat_result, owners: bool) -> FileStat | None:
    mode = st.st_mode
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFSOCK:
        return None
    linkname = ""
    size = 0
    major = minor = 0
    if fmt == stat.S_IFLNK:
        linkname = os.readlink(full)
    elif fmt == stat.S_IFREG:
        size = st.st_size
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return FileStat(
        path=rel,
        mode=mode,
        uid=st.st_uid if owners else 0,
        gid=st.st_gid if owners else 0,
        size=size,
        mtime_ns=st.st_mtime_ns,
        linkname=linkname,
        devmajor=major,
        devminor=minor,
    )


def walk(root: Path, request: SyncRequest | None = None, *, owners: bool = True) -> list[FileStat]:
    """The entries of the tree at ``root`` that ``request`` selects, in walk order;
    ``owners=False`` gives every entry owner 0:0 (what docker build and buildx send of a
    local context).

    Raises :class:`~dockyard.core.NotFoundError` when ``root`` is not a directory.
    Blocking: run it in a thread.
    """
    include, exclude = request.matchers() if request is not None else (None, None)
    if request is not None and request.follow_paths:
        followed = follow_links(root, request.follow_paths)
        if followed:
            include = PatternMatcher([*request.include_patterns, *followed])
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise NotFoundError(f"{str(root)!r} is not a directory")
    except FileNotFoundError as exc:
        raise NotFoundError(f"directory {str(root)!r} does not exist") from exc
    except OSError as exc:
        raise DockyardError(f"cannot read directory {str(root)!r}: {exc.strerror}") from exc

    out: list[FileStat] = []
    pending: list[FileStat | None] = []  # ancestors not sent yet (None: already sent)
    unsent = 0  # how many of ``pending`` are not None
    links: dict[tuple[int, int], str] = {}

    def emit(entry: FileStat) -> None:
        nonlocal unsent
        if unsent:
            for i, parent in enumerate(pending):
                if parent is not None:
                    out.append(parent)
                    pending[i] = None
            unsent = 0
        out.append(entry)

    # without "!" patterns, everything below an included directory is included: its
    # entries need no matching (most of a walk's time when COPY sources name directories)
    include_whole = include is not None and not include.has_exclusions

    def visit(
        dir_full: str,
        prefix: str,
        include_state: MatchState | None,
        exclude_state: MatchState | None,
        included: bool = False,
    ) -> None:
        nonlocal unsent
        try:
            with os.scandir(dir_full) as it:
                items = sorted(it, key=_entry_name)
        except FileNotFoundError:
            return  # vanished while walking
        except OSError as exc:
            raise DockyardError(f"cannot read directory {dir_full!r}: {exc.strerror}") from exc
        for item in items:
            rel = prefix + item.name
            try:
                is_dir = item.is_dir(follow_symlinks=False)
            except OSError:
                continue
            deferred = False
            child_include: MatchState | None = None
            child_exclude: MatchState | None = None
            child_included = included
            if include is not None and not included:
                matched, child_include = include.match_with_parent(rel, include_state)
                if not matched:
                    if not (is_dir and _could_include_below(include, rel)):
                        continue
                    deferred = True
                else:
                    child_included = include_whole
            if exclude is not None:
                matched, child_exclude = exclude.match_with_parent(rel, exclude_state)
                if matched:
                    if not (is_dir and exclude.may_include_inside(rel)):
                        continue
                    deferred = True
            full = item.path
            try:
                st = item.stat(follow_symlinks=False)
                entry = _stat_entry(rel, full, st, owners)
            except FileNotFoundError:
                continue  # vanished while walking
            except OSError as exc:
                raise DockyardError(f"cannot read {full!r}: {exc.strerror}") from exc
            if entry is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                if st.st_nlink > 1 and entry.is_regular:
                    key = (st.st_dev, st.st_ino)
                    first = links.get(key)
                    if first is None:
                        links[key] = rel
                    else:
                        entry = FileStat(
                            path=rel,
                            mode=entry.mode,
                            uid=entry.uid,
                            gid=entry.gid,
                            size=entry.size,
                            mtime_ns=entry.mtime_ns,
                            linkname=first,
                        )
                emit(entry)
                continue
            if deferred:
                pending.append(entry)
                unsent += 1
            else:
                emit(entry)
                pending.append(None)
            visit(full, rel + "/", child_include, child_exclude, child_included)
            if pending.pop() is not None:
                unsent -= 1

    visit(os.fspath(root), "", None, None)
    return out


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is one plain name a tree may be sent under (``linux_amd64``);
    a :class:`~dockyard.core.DockyardError` otherwise."""
    if not prefix or "/" in prefix or "\0" in prefix or prefix in (".", ".."):
        raise DockyardError(f"invalid export sub-directory {prefix!r} (one plain name)")
    return prefix


def under_prefix(root: Path, entries: Sequence[FileStat], prefix: str) -> list[FileStat]:
    """``entries`` (a walk of ``root``) as the entries of a tree holding them under the
    directory ``prefix`` (:func:`check_prefix`): that directory first (with ``root``'s
    mode and times), then every entry with its path (and a hard link's target) below
    it. Entry ``i`` of the walk is entry ``i + 1`` of the result."""
    check_prefix(prefix)
    try:
        st = os.stat(root)
        top = FileStat(
            path=prefix,
            mode=stat.S_IFDIR | stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=st.st_mtime_ns,
        )
    except OSError:
        top = FileStat(path=prefix, mode=stat.S_IFDIR | 0o755)
    out = [top]
    for e in entries:
        hard_link = e.linkname and stat.S_ISREG(e.mode)
        out.append(
            FileStat(
                path=f"{prefix}/{e.path}",
                mode=e.mode,
                uid=e.uid,
                gid=e.gid,
                size=e.size,
                mtime_ns=e.mtime_ns,
                linkname=f"{prefix}/{e.linkname}" if hard_link else e.linkname,
                devmajor=e.devmajor,
                devminor=e.devminor,
            )
        )
    return out


class ContentReader:
    """Reads the content of the wanted entries, file after file, in bounded batches.

    A file is read when its turn comes, up to the size the walk saw (so a file that
    grew since arrives as the entry describes it, and a file read whole needs no read
    that finds its end): if it changed since it was stat'ed the receiver gets the new
    content (the next sync notices the difference); if it vanished, it arrives empty.
    Files are opened through directory fds kept from one file to the next
    (:class:`~dockyard.session._dirfds.SourceFiles`). Blocking: call :meth:`next_batch`
    in a thread.
    """

    def __init__(self, root: Path, entries: Sequence[FileStat], ids: Sequence[int]) -> None:
        self._root = root
        self._entries = entries
        self._ids = ids
        self._next = 0
        self._fd = -1
        self._current = -1
        self._left = 0  # bytes of the current file still to read
        self._files = SourceFiles()

    def next_batch(self, budget: int = CHUNK_SIZE) -> list[Chunk]:
        """Chunks holding at most about ``budget`` bytes; ``[]`` when everything was read."""
        out: list[Chunk] = []
        while budget > 0:
            if self._fd < 0:
                if self._next >= len(self._ids):
                    break
                self._current = self._ids[self._next]
                self._next += 1
                entry = self._entries[self._current]
                self._fd = self._open(entry.path)
                if self._fd < 0:
                    out.append(Chunk(self._current, b"", True))
                    budget -= 64
                    continue
                self._left = entry.size
            want = min(budget, CHUNK_SIZE, self._left)
            data = os.read(self._fd, want) if want > 0 else b""
            budget -= len(data) + 64
            self._left -= len(data)
            if data and self._left > 0:
                out.append(Chunk(self._current, data, False))
                continue
            os.close(self._fd)
            self._fd = -1
            budget -= 64
            if data:
                out.append(Chunk(self._current, data, True))
            elif out and out[-1].id == self._current:
                out[-1] = Chunk(self._current, out[-1].data, True)
            else:
                out.append(Chunk(self._current, b"", True))
        return out

    def _open(self, path: str) -> int:
        try:
            return self._files.open(self._root, path)
        except NotFoundError:
            return -1
        except DockyardError as exc:
            raise DockyardError(f"cannot read {path!r} for the file sync: {exc}") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._files.close()
