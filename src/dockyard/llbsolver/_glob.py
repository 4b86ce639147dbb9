"""Wildcard sources of copy and rm actions (BuildKit's ``ResolveWildcards``).

A path is split at its first component holding a wildcard (``*``, ``?``, ``[``, not
escaped by ``\\``): the part before is resolved inside the root (symlinks followed inside
it; the last component only with ``follow_links``), the rest is matched with Go's
``filepath.Match`` syntax against the tree below, one component per path segment
(``*`` never crosses ``/``). Symlinks below the base are not followed, and a matching
directory is not searched further. Matches come back as root-relative paths in lexical
order, as Go's ``filepath.Walk`` visits them.
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from pathlib import Path

from dockyard.core import InvalidDefinitionError

from ._paths import rel_to_root, root_path

__all__ = ["contains_wildcards", "resolve_wildcards", "segment_regex", "split_wildcards"]


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
    """``(base, pattern)``: the components before the first wildcard one, and the rest
    (``""`` when there is no wildcard)."""
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
def segment_regex(pattern: str) -> re.Pattern[str]:
    """Go's ``filepath.Match`` for one path segment, as a compiled regex.

    Raises :class:`InvalidDefinitionError` for a malformed pattern (an unclosed ``[``
    or a trailing ``\\``), as Go's ``ErrBadPattern``.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise InvalidDefinitionError(f"bad pattern {pattern!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end, body = _class(pattern, i)
            out.append(body)
            i = end
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _class(pattern: str, i: int) -> tuple[int, str]:
    n = len(pattern)
    negated = i < n and pattern[i] == "^"
    if negated:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            raise InvalidDefinitionError(f"bad pattern {pattern!r}: unclosed character class")
        if pattern[i] == "]" and not first:
            i += 1
            break
        first = False
        low, i = _class_char(pattern, i)
        high = low
        if i < n and pattern[i] == "-":
            high, i = _class_char(pattern, i + 1)
        if low <= high:
            items.append(f"{re.escape(low)}-{re.escape(high)}" if low != high else re.escape(low))
    if not items:
        return i, "[^/]" if negated else "(?!)"
    return i, "[" + ("^/" if negated else "") + "".join(items) + "]"


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise InvalidDefinitionError(f"bad pattern {pattern!r}: bad character class")
    ch = pattern[i]
    if ch == "\\":
        i += 1
        if i >= n:
            raise InvalidDefinitionError(f"bad pattern {pattern!r}: trailing backslash")
        ch = pattern[i]
    return ch, i + 1


def resolve_wildcards(root: Path, path: str, *, follow_links: bool) -> list[str]:
    """Root-relative paths matching ``path`` (see the module doc). Without a wildcard,
    ``path`` itself (relative, existing or not). A missing base matches nothing."""
    base, pattern = split_wildcards(path)
    if not pattern:
        return [rel_to_root(root, root_path(root, base, follow_links=False))]
    start = root_path(root, base, follow_links=follow_links)
    regexes = [segment_regex(seg) for seg in pattern.split("/")]
    out: list[str] = []
    try:
        st = os.lstat(start)
    except FileNotFoundError:
        return out
    except NotADirectoryError:
        return out
    if not stat.S_ISDIR(st.st_mode):
        return out
    _walk(start, regexes, 0, out)
    return [rel_to_root(root, Path(p)) for p in out]


def _walk(directory: Path, regexes: list[re.Pattern[str]], depth: int, out: list[str]) -> None:
    try:
        names = sorted(os.listdir(directory))
    except (NotADirectoryError, FileNotFoundError):
        return
    regex = regexes[depth]
    last = depth == len(regexes) - 1
    for name in names:
        if regex.fullmatch(name) is None:
            continue
        full = directory / name
        if last:
            out.append(str(full))
            continue
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            _walk(full, regexes, depth + 1, out)
