"""File actions as frozen values, parsed from LLB's ``pb.FileAction`` at the edge.

Each value holds everything the action does except *which* filesystems it works on
(those are the action's inputs, see :mod:`._fileop`). ``timestamp`` is Unix nanoseconds
or ``None`` for "not set". Parsing checks what the backend relies on (mode strings,
wildcard patterns, include/exclude patterns) so that a bad Definition fails when it is
loaded, naming the op, not half-way through a build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from dockyard.core import InvalidDefinitionError, PathEscapeError, PatternError, PatternMatcher

from ._glob import contains_wildcards, segment_regex
from ._mode import FileMode
from ._owner import ChownSpec, UserRef
from ._paths import clean_path

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = [
    "CopyAction",
    "FileActionValue",
    "MkdirAction",
    "MkfileAction",
    "RmAction",
    "SymlinkAction",
    "parse_action",
    "parse_chown",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyAction:
    """Copy ``src`` of one filesystem to ``dest`` of another (BuildKit's ``CopyInfo``)."""

    src: str
    dest: str
    owner: ChownSpec | None = None
    mode: FileMode | None = None
    follow_symlinks: bool = False
    dir_contents_only: bool = False
    unpack: bool = False
    create_dest_path: bool = False
    allow_wildcard: bool = False
    allow_empty_wildcard: bool = False
    timestamp: int | None = None
    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    replace_existing: bool = False
    required_paths: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"copy {self.src} {self.dest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MkdirAction:
    path: str
    mode: int = 0o755
    parents: bool = False
    owner: ChownSpec | None = None
    timestamp: int | None = None

    def describe(self) -> str:
        return f"mkdir {self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MkfileAction:
    path: str
    data: bytes = b""
    mode: int = 0o644
    owner: ChownSpec | None = None
    timestamp: int | None = None

    def describe(self) -> str:
        return f"mkfile {self.path}"

    def __repr__(self) -> str:  # the data may be large
        return (
            f"MkfileAction(path={self.path!r}, data=<{len(self.data)} bytes>, mode={self.mode:o})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RmAction:
    path: str
    allow_not_found: bool = False
    allow_wildcard: bool = False

    def describe(self) -> str:
        return f"rm {self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SymlinkAction:
    """A symbolic link at ``newpath`` whose target is ``oldpath`` (stored as given)."""

    oldpath: str
    newpath: str
    owner: ChownSpec | None = None
    timestamp: int | None = None

    def describe(self) -> str:
        return f"symlink {self.newpath} -> {self.oldpath}"


FileActionValue: TypeAlias = CopyAction | MkdirAction | MkfileAction | RmAction | SymlinkAction


def _timestamp(value: int) -> int | None:
    return None if value == -1 else value


def _user(message: pb.UserOpt) -> UserRef | None:
    kind = message.WhichOneof("user")
    if kind == "byID":
        return UserRef(id=int(message.byID))
    if kind == "byName":
        if not message.byName.name:
            raise InvalidDefinitionError("a user or group given by name has an empty name")
        return UserRef(name=message.byName.name, input=int(message.byName.input))
    return None


def parse_chown(message: pb.ChownOpt, present: bool) -> ChownSpec | None:
    """``ChownOpt`` as a value; ``None`` when absent or empty."""
    if not present:
        return None
    user = _user(message.user) if message.HasField("user") else None
    group = _user(message.group) if message.HasField("group") else None
    if user is None and group is None:
        return None
    return ChownSpec(user=user, group=group)


def _check_path(path: str, what: str) -> None:
    """Reject a path that climbs above its root (``../x``): BuildKit clamps it at the
    root silently, which hides a mistake (``COPY ../x`` reads nothing outside)."""
    try:
        clean_path(path, what=what)
    except PathEscapeError as exc:
        raise PathEscapeError(
            f"{exc.message}: paths are relative to their filesystem's root"
        ) from None


def _check_patterns(patterns: tuple[str, ...], what: str) -> None:
    try:
        PatternMatcher(patterns)
    except PatternError as exc:
        raise InvalidDefinitionError(f"invalid {what} pattern: {exc}") from exc


def _check_wildcards(path: str) -> None:
    for part in path.split("/"):
        if contains_wildcards(part):
            segment_regex(part)


def _mode(copy: pb.FileActionCopy) -> FileMode | None:
    if copy.modeStr:
        try:
            return FileMode.parse(copy.modeStr)
        except ValueError as exc:
            raise InvalidDefinitionError(str(exc)) from exc
    if copy.mode == -1:
        return None
    if copy.mode < 0:
        raise InvalidDefinitionError(f"invalid copy mode {copy.mode}")
    return FileMode.bits(copy.mode)


def parse_action(action: pb.FileAction) -> FileActionValue:
    """The value of one ``pb.FileAction``; raises :class:`InvalidDefinitionError`."""
    kind = action.WhichOneof("action")
    if kind == "copy":
        c = action.copy
        if not c.src:
            raise InvalidDefinitionError("copy has an empty source path")
        if not c.dest:
            raise InvalidDefinitionError("copy has an empty destination path")
        value = CopyAction(
            src=c.src,
            dest=c.dest,
            owner=parse_chown(c.owner, c.HasField("owner")),
            mode=_mode(c),
            follow_symlinks=c.followSymlink,
            dir_contents_only=c.dirCopyContents,
            unpack=c.attemptUnpackDockerCompatibility,
            create_dest_path=c.createDestPath,
            allow_wildcard=c.allowWildcard,
            allow_empty_wildcard=c.allowEmptyWildcard,
            timestamp=_timestamp(c.timestamp),
            include_patterns=tuple(c.include_patterns),
            exclude_patterns=tuple(c.exclude_patterns),
            replace_existing=c.alwaysReplaceExistingDestPaths,
            required_paths=tuple(c.required_paths),
        )
        _check_path(value.src, "copy source")
        _check_path(value.dest, "copy destination")
        for required in value.required_paths:
            _check_path(required, "required path")
        _check_patterns(value.include_patterns, "include")
        _check_patterns(value.exclude_patterns, "exclude")
        _check_patterns(value.required_paths, "required path")
        if value.allow_wildcard:
            _check_wildcards(value.src)
        return value
    if kind == "mkdir":
        m = action.mkdir
        if not m.path:
            raise InvalidDefinitionError("mkdir has an empty path")
        _check_path(m.path, "mkdir path")
        return MkdirAction(
            path=m.path,
            mode=m.mode & 0o777,
            parents=m.makeParents,
            owner=parse_chown(m.owner, m.HasField("owner")),
            timestamp=_timestamp(m.timestamp),
        )
    if kind == "mkfile":
        f = action.mkfile
        if not f.path:
            raise InvalidDefinitionError("mkfile has an empty path")
        _check_path(f.path, "mkfile path")
        return MkfileAction(
            path=f.path,
            data=bytes(f.data),
            mode=f.mode & 0o777,
            owner=parse_chown(f.owner, f.HasField("owner")),
            timestamp=_timestamp(f.timestamp),
        )
    if kind == "rm":
        r = action.rm
        if not r.path:
            raise InvalidDefinitionError("rm has an empty path")
        _check_path(r.path, "rm path")
        if r.allowWildcard:
            _check_wildcards(r.path)
        return RmAction(
            path=r.path, allow_not_found=r.allowNotFound, allow_wildcard=r.allowWildcard
        )
    if kind == "symlink":
        s = action.symlink
        if not s.newpath:
            raise InvalidDefinitionError("symlink has an empty new path")
        if not s.oldpath:
            raise InvalidDefinitionError("symlink has an empty target")
        _check_path(s.newpath, "symlink path")
        return SymlinkAction(
            oldpath=s.oldpath,
            newpath=s.newpath,
            owner=parse_chown(s.owner, s.HasField("owner")),
            timestamp=_timestamp(s.timestamp),
        )
    raise InvalidDefinitionError(f"unknown file action {kind!r}")
