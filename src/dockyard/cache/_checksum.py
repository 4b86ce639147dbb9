"""Content checksums of file trees, for cache keys (BuildKit's ``contenthash``).

What a digest covers (format ``dockyard-checksum/1``):

- every entry: its file type, permission bits (with setuid/setgid/sticky), uid, gid and,
  unless ``xattrs=False``, its extended attributes (``trusted.overlay.*`` never);
- a regular file: the sha256 of its content; a symlink: its target, as a link (never
  followed inside a tree); a device: its major and minor numbers;
- a directory: its own header and, in name order, the name and digest of each selected
  child — so a directory's digest covers everything below it.

Never the mtime, atime, ctime, inode number, link count or a directory's size, so
re-creating or touching files with the same content and metadata keeps the digest.

Selection: ``path`` is resolved inside the root (``..`` stops at the root, symlinks in
it are resolved inside the root; the last component is followed only with
``follow_links``, otherwise a symlink is hashed as a link). ``include_patterns`` and
``exclude_patterns`` (``.dockerignore`` semantics, :mod:`dockyard.core.pathmatch`) are
matched against paths relative to the selected directory: a selected entry counts with
everything below it, an unselected directory only as the parent of selected entries.
With ``wildcard``, ``path`` may hold Go ``filepath.Match`` wildcards (``*``, ``?``,
``[...]``) in any component: the matches — found as the file op resolves them — are
hashed with their paths (relative to the part of ``path`` before the first wildcard); no
match gives :data:`NO_MATCH`.

The stat cache (for mutable refs that are updated in place, like a local source's
context) maps each file's path to the size, mtime, inode, ctime and mode it had when its
content was hashed; a file whose stat is unchanged is not read again. The mtime only
detects a change, it is never part of a digest. A file changed within
:data:`RACY_NS` of being hashed is not remembered (its timestamp could not show a
second change in the same clock tick).

Blocking: call from a worker thread. File contents are read in 1 MiB chunks into one
buffer; hashlib releases the GIL while hashing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.core import Digest, DockyardError, NotFoundError, PatternError, PatternMatcher
from dockyard.core.fspath import match_wildcards, resolve_in_root, split_wildcards
from dockyard.core.pathmatch import MatchState

from ._db import FileHash

__all__ = [
    "NO_MATCH",
    "RACY_NS",
    "ChecksumResult",
    "Selector",
    "StatCache",
    "compute_checksum",
    "content_hash",
]

FORMAT = b"dockyard-checksum/1"
CHUNK = 1 << 20
RACY_NS = 50_000_000
"""A file whose ctime is this close to the start of its walk is not stat-cached."""

NO_MATCH = Digest("sha256:" + hashlib.sha256(FORMAT + b"\0no-match").hexdigest())
"""The digest of a wildcard selection that matches nothing."""

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NOATIME = getattr(os, "O_NOATIME", 0)
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | _O_NOATIME
_SKIP_XATTRS = ("trusted.overlay.",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """What to checksum in a tree; ``key()`` names it in the per-record cache."""

    path: str
    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    follow_links: bool = False
    wildcard: bool = False
    xattrs: bool = True

    def key(self) -> str:
        return json.dumps(
            [
                1,
                self.path,
                list(self.include_patterns),
                list(self.exclude_patterns),
                self.follow_links,
                self.wildcard,
                self.xattrs,
            ],
            separators=(",", ":"),
        )


@dataclass(slots=True)
class StatCache:
    """path (relative to the ref's root) → :class:`FileHash`, for one mutable record.

    ``lock`` is held for a whole walk; ``changed`` and ``removed`` collect what the
    walks changed since the last :meth:`take_changes`. ``racy_ns``: see :data:`RACY_NS`.
    """

    entries: dict[str, FileHash]
    racy_ns: int = RACY_NS
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: dict[str, FileHash] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    def take_changes(self) -> tuple[dict[str, FileHash], set[str]]:
        changed, removed = self.changed, self.removed
        self.changed, self.removed = {}, set()
        return changed, removed


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksumResult:
    digest: Digest
    files_hashed: int
    bytes_hashed: int


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def compute_checksum(
    root: str, sel: Selector, stat_cache: StatCache | None = None
) -> ChecksumResult:
    """The digest of ``sel`` in the tree at ``root`` (see the module docstring)."""
    walker = _Walker(root, sel, stat_cache)
    if stat_cache is not None:
        with stat_cache.lock:
            digest = walker.run()
    else:
        digest = walker.run()
    return ChecksumResult(digest=digest, files_hashed=walker.files, bytes_hashed=walker.bytes)


class _Walker:
    def __init__(
        self,
        root: str,
        sel: Selector,
        stat_cache: StatCache | None,
        *,
        nodes: dict[str, bytes] | None = None,
        heads: dict[str, bytes] | None = None,
        known: Mapping[str, tuple[int, bytes]] | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        # (size, content sha256) of files whoever wrote them saw whole: not read again
        # when the file still has that size
        self.known = known
        self.sel = sel
        self.cache = stat_cache
        # with an unfiltered walk: every entry's node and every directory's header, by
        # path relative to the root ("" is the root); see dockyard.cache._index
        self.nodes = nodes
        self.heads = heads
        self.files = 0
        self.bytes = 0
        self.start_ns = time.time_ns()
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.seen: set[str] | None = None
        try:
            self.inc = PatternMatcher(sel.include_patterns) if sel.include_patterns else None
            self.exc = PatternMatcher(sel.exclude_patterns) if sel.exclude_patterns else None
        except PatternError as exc:
            raise DockyardError(f"invalid checksum pattern: {exc}") from exc
        self.filtered = self.inc is not None or self.exc is not None

    # -- entry points ----------------------------------------------------------------------
    def run(self) -> Digest:
        path = posixpath.normpath("/" + self.sel.path.lstrip("/"))
        if self.sel.wildcard:
            base, pattern = split_wildcards(path)
            if pattern:
                return self._wildcard(base, pattern)
        if self.cache is not None and path == "/" and not self.filtered:
            self.seen = set()
        digest = self._selected(path, self.sel.follow_links)
        if self.seen is not None and self.cache is not None:
            gone = set(self.cache.entries) - self.seen
            for p in gone:
                del self.cache.entries[p]
                self.cache.changed.pop(p, None)
            self.cache.removed |= gone
        return Digest("sha256:" + digest.hex())

    def _host(self, path: str, follow: bool) -> str:
        if path == "/":
            return self.root
        return str(resolve_in_root(self.root, path, follow_final=follow))

    def _selected(self, path: str, follow: bool) -> bytes:
        host = self._host(path, follow)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{path!r} not found") from None
        rel = os.path.relpath(host, self.root)
        return self._entry(host, "" if rel == "." else rel, st)

    def _wildcard(self, base: str, pattern: str) -> Digest:
        start = self._host(base, self.sel.follow_links)
        try:
            matches = match_wildcards(start, pattern)
        except PatternError as exc:
            raise DockyardError(str(exc)) from exc
        if not matches:
            return NO_MATCH
        h = hashlib.sha256(FORMAT + b"\0W")
        for host in matches:
            rel_base = os.path.relpath(host, start)
            rel_root = os.path.relpath(host, self.root)
            path = "/" + rel_root
            digest = self._selected(path, self.sel.follow_links)
            h.update(_lp(os.fsencode(rel_base)) + digest)
        return Digest("sha256:" + h.hexdigest())

    # -- the walk --------------------------------------------------------------------------
    def _entry(self, host: str, rel: str, st: os.stat_result) -> bytes:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            return self._file(host, rel, st)
        if stat.S_ISDIR(mode):
            digest = self._dir(host, rel, st, "", None, None, selected=True)
            assert digest is not None
            return digest
        if stat.S_ISLNK(mode):
            target = os.readlink(os.fsencode(host))
            return hashlib.sha256(b"L" + self._header(host, st, target)).digest()
        extra = b""
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            extra = b"%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        return hashlib.sha256(b"O" + self._header(host, st, extra)).digest()

    def _dir(
        self,
        host: str,
        rel: str,
        st: os.stat_result,
        sel_rel: str,
        inc_state: MatchState | None,
        exc_state: MatchState | None,
        *,
        selected: bool,
    ) -> bytes | None:
        """The digest of directory ``host``, or ``None`` if neither it nor anything below
        it is selected. ``sel_rel`` is its path relative to the selection (for patterns)."""
        try:
            with os.scandir(host) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            raise DockyardError(f"cannot read directory {rel or '/'!r}: {exc.strerror}") from exc
        head = self._header(host, st, b"")
        if self.heads is not None:
            self.heads[rel] = head
        h = hashlib.sha256(b"D" + head)
        count = 0
        for e in entries:
            child_host = os.path.join(host, e.name)
            child_rel = f"{rel}/{e.name}" if rel else e.name
            cst = e.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(cst.st_mode)
            if not self.filtered:
                if is_dir:
                    d = self._dir(child_host, child_rel, cst, "", None, None, selected=True)
                else:
                    d = self._entry(child_host, child_rel, cst)
            else:
                child_sel = f"{sel_rel}/{e.name}" if sel_rel else e.name
                d = self._filtered(child_host, child_rel, cst, child_sel, inc_state, exc_state)
            if d is None:
                continue
            if self.nodes is not None:
                self.nodes[child_rel] = d
            h.update(_lp(os.fsencode(e.name)) + d)
            count += 1
        if not selected and count == 0:
            return None
        digest = h.digest()
        if self.nodes is not None:
            self.nodes[rel] = digest
        return digest

    def _filtered(
        self,
        host: str,
        rel: str,
        st: os.stat_result,
        sel_rel: str,
        inc_state: MatchState | None,
        exc_state: MatchState | None,
    ) -> bytes | None:
        included = True
        inc_next: MatchState | None = None
        if self.inc is not None:
            included, inc_next = self.inc.match_with_parent(sel_rel, inc_state)
        excluded = False
        exc_next: MatchState | None = None
        if self.exc is not None:
            excluded, exc_next = self.exc.match_with_parent(sel_rel, exc_state)
        selected = included and not excluded
        if not stat.S_ISDIR(st.st_mode):
            return self._entry(host, rel, st) if selected else None
        descend = True
        if (
            not included
            and self.inc is not None
            and not any(not p.exclusion and p.could_match_below(sel_rel) for p in self.inc.patterns)
        ):
            descend = False
        if excluded and self.exc is not None and not self.exc.may_include_inside(sel_rel):
            descend = False
        if not descend:
            return None
        return self._dir(host, rel, st, sel_rel, inc_next, exc_next, selected=selected)

    def _header(self, host: str, st: os.stat_result, extra: bytes) -> bytes:
        head = b"%o\0%d\0%d\0" % (
            stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
        )
        head += _lp(extra)
        if self.sel.xattrs:
            for name, value in _xattrs(host):
                head += _lp(name) + _lp(value)
        return head

    def _file(self, host: str, rel: str, st: os.stat_result) -> bytes:
        cache = self.cache
        if cache is None:
            given = self.known.get(rel) if self.known else None
            if given is not None and given[0] == st.st_size:
                content = given[1]
            else:
                content = self._hash_file(host, rel, st.st_size)
            return hashlib.sha256(b"F" + self._header(host, st, b"") + content).digest()
        if self.seen is not None:
            self.seen.add(rel)
        known = cache.entries.get(rel)
        if (
            known is not None
            and known.size == st.st_size
            and known.mtime_ns == st.st_mtime_ns
            and known.ino == st.st_ino
            and known.ctime_ns == st.st_ctime_ns
            and known.mode == st.st_mode
        ):
            if self.sel.xattrs and known.node:
                return known.node
            return hashlib.sha256(b"F" + self._header(host, st, b"") + known.sha256).digest()
        content = self._hash_file(host, rel, st.st_size)
        node = hashlib.sha256(b"F" + self._header(host, st, b"") + content).digest()
        if st.st_ctime_ns + cache.racy_ns < self.start_ns:
            entry = FileHash(
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                st.st_ctime_ns,
                st.st_mode,
                content,
                node if self.sel.xattrs else b"",
            )
            cache.entries[rel] = entry
            cache.changed[rel] = entry
            cache.removed.discard(rel)
        elif rel in cache.entries:
            del cache.entries[rel]
            cache.changed.pop(rel, None)
            cache.removed.add(rel)
        return node

    def _hash_file(self, host: str, rel: str, size: int) -> bytes:
        digest, n = _read_hash(host, rel, size, self.view)
        self.files += 1
        self.bytes += n
        return digest


def content_hash(path: str) -> bytes:
    """sha256 of one file's content (not followed if it is a symlink)."""
    return _read_hash(path, path, os.lstat(path).st_size, memoryview(bytearray(CHUNK)))[0]


def _read_hash(host: str, rel: str, size: int, view: memoryview) -> tuple[bytes, int]:
    """sha256 of a file's content and the bytes read: one read for a small file, else
    1 MiB reads into ``view`` (the GIL is released while reading and hashing)."""
    try:
        fd = os.open(host, _O_FILE)
    except OSError as exc:
        if exc.errno == errno.EPERM and _O_FILE & _O_NOATIME:
            fd = os.open(host, _O_FILE & ~_O_NOATIME)  # not the owner: no O_NOATIME
        else:
            raise DockyardError(f"cannot read {rel!r}: {exc.strerror}") from exc
    total = 0
    try:
        if size < CHUNK:
            data = os.read(fd, CHUNK)
            if len(data) < CHUNK:  # the whole file (unless it grew meanwhile)
                return hashlib.sha256(data).digest(), len(data)
            h = hashlib.sha256(data)
            total = len(data)
        else:
            h = hashlib.sha256()
        while True:
            n = os.readv(fd, (view,))
            if not n:
                break
            h.update(view[:n])
            total += n
    finally:
        os.close(fd)
    return h.digest(), total


def _xattrs(host: str) -> list[tuple[bytes, bytes]]:
    try:
        names = os.listxattr(host, follow_symlinks=False)
    except OSError:
        return []
    out: list[tuple[bytes, bytes]] = []
    for name in sorted(names):
        if name.startswith(_SKIP_XATTRS):
            continue
        try:
            value = os.getxattr(host, name, follow_symlinks=False)
        except OSError:
            continue
        out.append((os.fsencode(name), value))
    return out
