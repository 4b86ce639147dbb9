"""A copy's mode override: exact permission bits or a chmod(1) symbolic expression.

LLB carries either ``FileActionCopy.mode`` (an integer, ``-1`` for "keep the source's")
or ``modeStr`` (what ``COPY --chmod=u+x,g-w`` becomes). Symbolic modes follow POSIX
``chmod`` without a umask (as BuildKit applies them): clauses ``[ugoa]*[-+=][rwxXst]*``
or ``[ugoa]*[-+=][ugo]`` separated by commas, applied in order to each file's own mode;
no ``who`` means all; ``X`` adds execute only to directories and to files that already
have an execute bit. An octal string (``"0755"``) is an exact mode.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass

__all__ = ["FileMode"]

_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo](?![rwxXst])|[rwxXst]*))+)\Z")
_ACTION = re.compile(r"([-+=])([ugo](?![rwxXst])|[rwxXst]*)")
_WHO_MASK = {"u": 0o4700, "g": 0o2070, "o": 0o1007}
_SHIFT = {"u": 6, "g": 3, "o": 0}
_PERM_BITS = 0o7777


@dataclass(frozen=True, slots=True)
class _Step:
    who: str  # a subset of "ugo"
    op: str  # "+", "-" or "="
    perms: str  # letters of rwxXst, or one of "u", "g", "o" to copy that class


@dataclass(frozen=True, slots=True, kw_only=True)
class FileMode:
    """A mode override: ``exact`` bits, or the symbolic ``steps`` parsed from ``text``."""

    text: str
    exact: int | None = None
    steps: tuple[_Step, ...] = ()

    @classmethod
    def bits(cls, value: int) -> FileMode:
        """An exact mode (permission, setuid, setgid and sticky bits of ``value``)."""
        return cls(text=f"{value & _PERM_BITS:04o}", exact=value & _PERM_BITS)

    @classmethod
    def parse(cls, text: str) -> FileMode:
        """Parse ``modeStr``; raises ``ValueError`` naming the problem."""
        if text and text.isascii() and text.isdigit():
            if any(c not in "01234567" for c in text) or int(text, 8) > _PERM_BITS:
                raise ValueError(f"invalid mode {text!r}: an octal mode is between 0 and 7777")
            return cls(text=text, exact=int(text, 8))
        steps: list[_Step] = []
        for clause in text.split(","):
            match = _CLAUSE.match(clause)
            if match is None:
                raise ValueError(
                    f"invalid mode {text!r}: expected an octal mode (0755) or symbolic clauses"
                    " such as u+x,go-w or a=rX"
                )
            who = match.group(1)
            who = "ugo" if not who or "a" in who else "".join(sorted(set(who), key="ugo".index))
            steps.extend(_Step(who, op, perms) for op, perms in _ACTION.findall(match.group(2)))
        return cls(text=text, steps=tuple(steps))

    def apply(self, mode: int) -> int:
        """The permission bits (``0o7777`` part) a file of ``mode`` (full ``st_mode``,
        so that ``X`` can tell directories) ends up with."""
        if self.exact is not None:
            return self.exact
        is_dir = stat.S_ISDIR(mode)
        bits = mode & _PERM_BITS
        for step in self.steps:
            bits = _apply(step, bits, is_dir)
        return bits

    def __str__(self) -> str:
        return self.text


def _apply(step: _Step, bits: int, is_dir: bool) -> int:
    mask = 0
    for w in step.who:
        mask |= _WHO_MASK[w]
    change = 0
    if step.perms in _SHIFT:
        source = (bits >> _SHIFT[step.perms]) & 0o7
        for w in step.who:
            change |= source << _SHIFT[w]
    else:
        for perm in step.perms:
            if perm == "r":
                change |= 0o444 & mask
            elif perm == "w":
                change |= 0o222 & mask
            elif perm == "x":
                change |= 0o111 & mask
            elif perm == "X":
                if is_dir or bits & 0o111:
                    change |= 0o111 & mask
            elif perm == "s":
                change |= (0o4000 if "u" in step.who else 0) | (0o2000 if "g" in step.who else 0)
            elif perm == "t" and "o" in step.who:
                change |= 0o1000
    if step.op == "+":
        return bits | change
    if step.op == "-":
        return bits & ~change
    return (bits & ~mask) | change
