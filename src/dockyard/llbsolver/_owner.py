"""Owners of files that file actions create or copy (LLB's ``ChownOpt``).

A user or group is a numeric id or a name; names are looked up in ``/etc/passwd`` or
``/etc/group`` of the filesystem the ``ChownOpt`` names (read inside that root, so a
symlinked ``/etc/passwd`` never reads a host file). BuildKit's rules: a user id alone
means ``uid:uid``; a user name gives that user's primary group; a group alone keeps
uid 0. Unlike BuildKit, which falls back to 0 silently, a name that is not listed is an
error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError
from dockyard.core.fspath import open_in_root

__all__ = ["ChownSpec", "Owner", "UserRef", "lookup_group", "lookup_user", "resolve_owner"]

_MAX_FILE = 16 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """A resolved numeric owner."""

    uid: int
    gid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRef:
    """A user or group: ``id``, or ``name`` looked up in the filesystem at ``input``
    (an index into the file op's input space)."""

    id: int | None = None
    name: str | None = None
    input: int = -1

    def __str__(self) -> str:
        return str(self.id) if self.id is not None else str(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChownSpec:
    """``ChownOpt``: the user and/or group to give created or copied files."""

    user: UserRef | None = None
    group: UserRef | None = None

    def lookup_inputs(self) -> tuple[int, ...]:
        """The inputs whose ``/etc`` files a name lookup reads."""
        out: list[int] = []
        for ref in (self.user, self.group):
            if ref is not None and ref.name is not None and ref.input not in out:
                out.append(ref.input)
        return tuple(out)

    def __str__(self) -> str:
        user = str(self.user) if self.user is not None else "0"
        return user if self.group is None else f"{user}:{self.group}"


RootFor = Callable[[int], Path | None]
"""The directory of a file-op input by index (``None`` when it is empty)."""


def resolve_owner(spec: ChownSpec | None, root_for: RootFor) -> Owner | None:
    """The numeric owner ``spec`` names, or ``None`` for "keep/default ownership"."""
    if spec is None or (spec.user is None and spec.group is None):
        return None
    uid = gid = 0
    if spec.user is not None:
        if spec.user.id is not None:
            uid = gid = spec.user.id
        else:
            uid, gid = lookup_user(_root(root_for, spec.user), str(spec.user.name))
    if spec.group is not None:
        if spec.group.id is not None:
            gid = spec.group.id
        else:
            gid = lookup_group(_root(root_for, spec.group), str(spec.group.name))
    return Owner(uid=uid, gid=gid)


def _root(root_for: RootFor, ref: UserRef) -> Path | None:
    return root_for(ref.input)


def lookup_user(root: Path | None, name: str) -> tuple[int, int]:
    """``(uid, gid)`` of user ``name`` in ``root``'s ``/etc/passwd``."""
    for fields in _entries(root, "/etc/passwd", "user", name):
        if fields[0] == name and len(fields) >= 4:
            uid, gid = _id(fields[2]), _id(fields[3])
            if uid is not None:
                return uid, gid or 0
    raise NotFoundError(f"user {name!r} not found in /etc/passwd")


def lookup_group(root: Path | None, name: str) -> int:
    """The gid of group ``name`` in ``root``'s ``/etc/group``."""
    for fields in _entries(root, "/etc/group", "group", name):
        if fields[0] == name and len(fields) >= 3:
            gid = _id(fields[2])
            if gid is not None:
                return gid
    raise NotFoundError(f"group {name!r} not found in /etc/group")


def _id(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value < 2**32 else None


def _entries(root: Path | None, path: str, what: str, name: str) -> list[list[str]]:
    if root is None:
        raise NotFoundError(f"{what} {name!r} not found: the filesystem to look it up in is empty")
    try:
        fd = open_in_root(root, path)
    except NotFoundError:
        raise NotFoundError(f"{what} {name!r} not found: there is no {path}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise DockyardError(
            f"cannot read {path} to look up {what} {name!r}: {exc.strerror}"
        ) from exc
    if len(data) > _MAX_FILE:
        raise DockyardError(f"{path} is larger than {_MAX_FILE} bytes")
    out: list[list[str]] = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out
