"""Users and groups from a root filesystem's ``/etc/passwd`` and ``/etc/group``.

The rules are docker's (moby's ``GetExecUser``): a user is a name or a numeric id, with
an optional ``:group`` (name or id). A numeric id that the passwd file does not list is
still valid (its group is 0); a name must be listed. Without an explicit group the
supplementary groups are those that list the user's name as a member.

The files are opened inside the root with :func:`dockyard.core.fspath.open_in_root`, so a
symlinked ``/etc/passwd`` can never make Dockyard read a host file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError, UsageError
from dockyard.core.fspath import open_in_root

__all__ = [
    "GroupEntry",
    "PasswdEntry",
    "ResolvedUser",
    "parse_group",
    "parse_passwd",
    "read_in_root",
    "resolve_user",
]

_MAX_ID = 2**31 - 1
_MAX_FILE = 16 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedUser:
    """Numeric identity for the runtime; ``name`` is empty for an unlisted uid."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str = ""


def _to_id(text: str) -> int | None:
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def parse_passwd(data: str) -> list[PasswdEntry]:
    """Entries of a passwd file; comments, blank and malformed lines are skipped."""
    out: list[PasswdEntry] = []
    for line in data.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        fields += [""] * (7 - len(fields))
        uid, gid = _to_id(fields[2]), _to_id(fields[3])
        if not fields[0] or uid is None:
            continue
        out.append(PasswdEntry(name=fields[0], uid=uid, gid=gid or 0, home=fields[5] or "/"))
    return out


def parse_group(data: str) -> list[GroupEntry]:
    """Entries of a group file; comments, blank and malformed lines are skipped."""
    out: list[GroupEntry] = []
    for line in data.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        fields += [""] * (4 - len(fields))
        gid = _to_id(fields[2])
        if not fields[0] or gid is None:
            continue
        members = tuple(m.strip() for m in fields[3].split(",") if m.strip())
        out.append(GroupEntry(name=fields[0], gid=gid, members=members))
    return out


def read_in_root(root: Path, path: str) -> str | None:
    """Text of the regular file ``path`` inside ``root``; ``None`` if it does not exist."""
    try:
        fd = open_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK)
    except NotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000):
            raise DockyardError(f"{path} in the root filesystem is not a regular file")
        if st.st_size > _MAX_FILE:
            raise DockyardError(f"{path} in the root filesystem is too large ({st.st_size} bytes)")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "surrogateescape")
    finally:
        os.close(fd)


def resolve_user(spec: str, passwd: str | None, group: str | None) -> ResolvedUser:
    """Resolve ``spec`` (``""``, ``name``, ``uid``, ``x:group``, ``x:gid``).

    ``passwd``/``group`` are the files' contents (``None`` when a file does not exist).
    Raises :class:`NotFoundError` for a name that is not listed and :class:`UsageError`
    for a malformed spec.
    """
    user_part, has_group, group_part = spec.partition(":")
    if has_group and not group_part:
        raise UsageError(f"invalid user {spec!r}: empty group")
    if not user_part:
        if has_group:
            raise UsageError(f"invalid user {spec!r}: empty user name")
        user_part = "0"
    users = parse_passwd(passwd) if passwd is not None else []
    groups = parse_group(group) if group is not None else []

    uid_num = _to_id(user_part)
    entry = next((u for u in users if u.name == user_part), None)
    if entry is None and uid_num is not None:
        entry = next((u for u in users if u.uid == uid_num), None)
    if entry is None:
        if uid_num is None:
            if user_part.isdigit():
                raise UsageError(f"invalid user {spec!r}: uid out of range")
            where = "passwd file" if passwd is not None else "passwd file (/etc/passwd missing)"
            raise NotFoundError(f"unable to find user {user_part}: no matching entries in {where}")
        uid, gid, home, name = uid_num, 0, "/", ""
    else:
        uid, gid, home, name = entry.uid, entry.gid, entry.home, entry.name

    additional: tuple[int, ...] = ()
    if has_group:
        gid_num = _to_id(group_part)
        match = next((g for g in groups if g.name == group_part), None)
        if match is None and gid_num is not None:
            match = next((g for g in groups if g.gid == gid_num), None)
        if match is not None:
            gid = match.gid
        elif gid_num is not None:
            gid = gid_num
        else:
            if group_part.isdigit():
                raise UsageError(f"invalid user {spec!r}: gid out of range")
            raise NotFoundError(
                f"unable to find group {group_part}: no matching entries in group file"
            )
    elif name:
        seen: list[int] = []
        for g in groups:
            if name in g.members and g.gid not in seen:
                seen.append(g.gid)
        additional = tuple(seen)
    return ResolvedUser(uid=uid, gid=gid, additional_gids=additional, home=home, name=name)
