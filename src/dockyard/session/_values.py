"""Frozen values the session's services exchange (transport-independent)."""

from __future__ import annotations

import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.core import UsageError
from dockyard.core.pathmatch import PatternError, PatternMatcher

__all__ = [
    "FileStat",
    "SessionCredentials",
    "SessionInfo",
    "StatKey",
    "SyncBase",
    "SyncRequest",
    "SyncResult",
    "UserTerminal",
    "WindowSize",
    "stat_key",
]


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class FileStat:
    """One entry of a directory tree as the file sync sends it.

    ``path`` is relative to the synced directory, slash-separated, without ``.`` or ``..``
    components (names that are not UTF-8 are kept with ``surrogateescape``). ``mode`` is
    the full ``st_mode`` (type and permission bits). ``linkname`` is a symlink's target,
    or — for a regular file — the ``path`` of an earlier entry it is a hard link to.
    ``devmajor``/``devminor`` are set for character and block devices.
    """

    path: str
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0

    def __init__(
        self,
        *,
        path: str,
        mode: int,
        uid: int = 0,
        gid: int = 0,
        size: int = 0,
        mtime_ns: int = 0,
        linkname: str = "",
        devmajor: int = 0,
        devminor: int = 0,
    ) -> None:
        # what dataclass writes for a frozen class (object.__setattr__ per field), with
        # the slots' own setters: a walk or a received file list makes one per entry
        _set_path(self, path)
        _set_mode(self, mode)
        _set_uid(self, uid)
        _set_gid(self, gid)
        _set_size(self, size)
        _set_mtime_ns(self, mtime_ns)
        _set_linkname(self, linkname)
        _set_devmajor(self, devmajor)
        _set_devminor(self, devminor)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_hardlink(self) -> bool:
        """A regular file that names an earlier entry as its hard-link target."""
        return stat.S_ISREG(self.mode) and bool(self.linkname)


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    setter: Callable[[object, object], None] = vars(cls)[name].__set__
    return setter


_set_path = _slot_setter(FileStat, "path")
_set_mode = _slot_setter(FileStat, "mode")
_set_uid = _slot_setter(FileStat, "uid")
_set_gid = _slot_setter(FileStat, "gid")
_set_size = _slot_setter(FileStat, "size")
_set_mtime_ns = _slot_setter(FileStat, "mtime_ns")
_set_linkname = _slot_setter(FileStat, "linkname")
_set_devmajor = _slot_setter(FileStat, "devmajor")
_set_devminor = _slot_setter(FileStat, "devminor")

StatKey = tuple[int, int, int, int, int, str, int, int]
"""What a receiver compares of an entry: ``(mode, uid, gid, size, mtime_ns, linkname,
devmajor, devminor)`` — see :func:`stat_key`."""


def stat_key(entry: FileStat) -> StatKey:
    """The fields of ``entry`` a sync compares (everything but the path)."""
    return (
        entry.mode,
        entry.uid,
        entry.gid,
        entry.size,
        entry.mtime_ns,
        entry.linkname,
        entry.devmajor,
        entry.devminor,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest:
    """Which directory the receiver asks the client for, and which part of it.

    ``name`` is the client's name for the directory (``context``, ``dockerfile``, a named
    build context). ``exclude_patterns`` use ``.dockerignore`` semantics (``!`` re-includes,
    ``**`` spans directories); ``include_patterns``, when given, restrict the transfer to
    matching paths (and the directories leading to them). ``follow_paths`` name symlinks
    (wildcards allowed in the last component) whose targets are sent as well — the way the
    Dockerfile is fetched when it is a symlink.
    """

    name: str
    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    follow_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise UsageError("a file sync request needs a directory name")
        self.matchers()  # reject malformed patterns where the request is made

    def matchers(self) -> tuple[PatternMatcher | None, PatternMatcher | None]:
        """The compiled include and exclude matchers (``None`` when there are no patterns).

        Raises :class:`~dockyard.core.UsageError` naming a malformed pattern."""
        include = _compile("include", self.include_patterns) if self.include_patterns else None
        exclude = _compile("exclude", self.exclude_patterns) if self.exclude_patterns else None
        return include, exclude


def _compile(kind: str, patterns: tuple[str, ...]) -> PatternMatcher:
    try:
        return PatternMatcher(patterns)
    except PatternError as exc:
        raise UsageError(f"invalid {kind} pattern: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    """What one sync changed in the destination.

    ``files_transferred``/``bytes_transferred`` count the file contents that travelled
    (a file whose mode or owner alone changed is updated in place and not counted).
    ``changed`` lists, sorted, every path created or modified in any way (content,
    metadata, type, link target); ``deleted`` the paths removed (a removed directory is
    listed with everything that was inside it). A content checksum cache rehashes
    ``changed`` and forgets ``deleted`` (and the parents of both).
    """

    entries: int
    files_transferred: int
    bytes_transferred: int
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    tree: tuple[FileStat, ...] = field(default=(), repr=False, compare=False)
    """Every entry the sender sent, in walk order (the tree the destination now shows)."""
    digests: Mapping[str, tuple[int, bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )
    """``(size, sha256 of the content)`` of files this sync wrote, by path, where it saw
    the bytes on the way (content that arrived in chunks; small local files): a file
    index of the destination need not read them again."""
    different: tuple[int, ...] | None = field(default=None, repr=False, compare=False)
    """Positions in :attr:`tree` of the entries whose stat key differs from the
    :class:`SyncBase`'s (new ones included), in order, for a sync into a new layer over
    known entries; ``None`` when not known (a sync into a directory)."""

    @property
    def unchanged(self) -> bool:
        """Nothing in the destination was modified."""
        return not self.changed and not self.deleted


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncBase:
    """A sync that starts from a tree known by its entries instead of from a directory
    holding it: the destination of a sync into a new snapshot layer.

    ``entries`` are the stat keys (:func:`stat_key`) of the tree as the sync that made it
    sent them, by path. The receiver compares the sender's entries with them; when
    nothing differs it writes nothing and never calls ``open``. Otherwise ``open()``
    returns the directory to write into and whether it is a *layer*:

    - a layer (``True``): an empty overlayfs upper directory over the base tree. Only
      what changed is written there, with the directories leading to it (their metadata
      from the sender); a deleted entry becomes a whiteout (a 0/0 character device) in
      its directory; an entry whose type changed simply covers the old one;
    - not a layer (``False``): a directory holding a copy of the base tree, brought up to
      date in place like any destination.
    """

    entries: Mapping[str, StatKey]
    open: Callable[[], Awaitable[tuple[Path, bool]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCredentials:
    """Registry credentials the client answered with (the shape of
    ``dockyard.registry.Credentials``; the engine converts). Secrets never appear in
    ``repr``."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """What a session is and what its client offers (sent when it attaches).

    ``shared_key`` identifies the client's machine/checkout so that caches of synced
    directories can be reused across its builds (BuildKit's shared key).
    ``content_stores`` are the ids of the OCI layouts it offers as content stores;
    ``writable_stores`` those of them the engine may write into. ``shell``: its
    terminal may run a debug shell (a :class:`UserTerminal`).
    """

    id: str
    name: str = ""
    shared_key: str = ""
    directories: frozenset[str] = frozenset()
    ssh_ids: frozenset[str] = frozenset()
    exports: frozenset[str] = frozenset()
    secrets: bool = False
    credentials: bool = False
    content_stores: frozenset[str] = frozenset()
    writable_stores: frozenset[str] = frozenset()
    shell: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSize:
    """A terminal's window size in character cells."""

    rows: int
    cols: int


def _ignore(line: str) -> None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTerminal:
    """Client side: the user's end of a debug shell that runs on the engine's host
    (``dockyard build --invoke`` through a daemon) — file descriptors of the client's
    process, used as they are and never closed.

    ``terminal``: the process gets a pseudo-terminal (``None``: when ``stdin`` is a
    terminal); then ``stdin``'s terminal is in raw mode while the shell runs (restored
    however it ends) and its window size travels, changes included (``SIGWINCH``).
    Without one, ``stdin`` is read to its end and sent on; the process's output goes to
    ``stdout`` and ``stderr`` as it wrote it. ``announce`` shows the user a line (what
    is about to run; why it did not) while the terminal is in its normal mode.
    """

    stdin: int = 0
    stdout: int = 1
    stderr: int = 2
    terminal: bool | None = None
    announce: Callable[[str], None] = _ignore

    def uses_terminal(self) -> bool:
        if self.terminal is not None:
            return self.terminal
        import os

        return os.isatty(self.stdin)
