"""``COPY``/``ADD --chmod`` values: octal (``0755``) or chmod(1) symbolic modes
(``u+x``, ``go-w``, ``a=rX``, ``u=rw,g=r,o=``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Chmod", "ChmodError", "parse_chmod"]

_CLAUSE_RE = re.compile(r"([ugoa]*)((?:[-+=](?:[rwxXst]*|[ugo]))+)\Z")
_ACTION_RE = re.compile(r"([-+=])([ugo]|[rwxXst]*)")

_WHO_BITS = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_RWX = {"r": 0o444, "w": 0o222, "x": 0o111}


class ChmodError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Action:
    who: str
    op: str
    perms: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Chmod:
    """A parsed ``--chmod``: ``octal`` for numeric modes, else symbolic ``text``."""

    text: str
    octal: int | None = None
    actions: tuple[_Action, ...] = ()

    @property
    def symbolic(self) -> bool:
        return self.octal is None

    def apply(self, mode: int, *, is_dir: bool = False) -> int:
        """The permission bits (``0o7777`` part) of a file with ``mode`` after chmod."""
        if self.octal is not None:
            return self.octal
        mode &= 0o7777
        for action in self.actions:
            mode = _apply(action, mode, is_dir)
        return mode


def _apply(action: _Action, mode: int, is_dir: bool) -> int:
    who = action.who or "a"
    if "a" in who:
        who = "ugo"
    mask = 0
    for w in who:
        mask |= _WHO_BITS[w]
    bits = 0
    if action.perms in ("u", "g", "o"):
        shift = {"u": 6, "g": 3, "o": 0}[action.perms]
        triple = (mode >> shift) & 0o7
        for w in who:
            bits |= triple << {"u": 6, "g": 3, "o": 0}[w]
    else:
        for perm in action.perms:
            if perm in _RWX:
                bits |= _RWX[perm] & mask
            elif perm == "X":
                if is_dir or mode & 0o111:
                    bits |= 0o111 & mask
            elif perm == "s":
                bits |= (0o4000 if "u" in who else 0) | (0o2000 if "g" in who else 0)
            elif perm == "t" and "o" in who:
                bits |= 0o1000
    if action.op == "+":
        return mode | bits
    if action.op == "-":
        return mode & ~bits
    return (mode & ~mask) | bits


def parse_chmod(text: str) -> Chmod:
    """Parse a ``--chmod`` value; raises :class:`ChmodError` with a usable message."""
    if text and all(c in "01234567" for c in text):
        value = int(text, 8)
        if value > 0o7777:
            raise ChmodError(
                f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
            )
        return Chmod(text=text, octal=value)
    actions: list[_Action] = []
    for clause in text.split(","):
        match = _CLAUSE_RE.match(clause)
        if match is None:
            raise ChmodError(
                f"invalid chmod parameter: '{text}'. it should be an octal mode between 0 and "
                "07777 (like 0755) or a symbolic mode (like u+x,go-w or a=rX)"
            )
        who = match.group(1)
        for op, perms in _ACTION_RE.findall(match.group(2)):
            actions.append(_Action(who=who, op=op, perms=perms))
    return Chmod(text=text, actions=tuple(actions))
