"""Wildcard sources of copy and rm actions (BuildKit's ``ResolveWildcards``), over
:mod:`dockyard.core.fspath`'s wildcard helpers (which the cache checksums share).

A path is split at its first component holding a wildcard (``*``, ``?``, ``[``, not
escaped by ``\\``): the part before is resolved inside the root (symlinks followed inside
it; the last component only with ``follow_links``), the rest is matched with Go's
``filepath.Match`` syntax against the tree below, one component per path segment
(``*`` never crosses ``/``). Symlinks below the base are not followed, and a matching
directory is not searched further. Matches come back as root-relative paths in lexical
order, as Go's ``filepath.Walk`` visits them.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.core import InvalidDefinitionError, PatternError
from dockyard.core.fspath import (
    contains_wildcards,
    match_wildcards,
    split_wildcards,
    wildcard_regex,
)
from dockyard.core.pathmatch import SegmentMatcher

from ._paths import rel_to_root, root_path

__all__ = ["contains_wildcards", "resolve_wildcards", "segment_regex", "split_wildcards"]


def segment_regex(pattern: str) -> SegmentMatcher:
    """Go's ``filepath.Match`` for one path segment, as a compiled regex
    (:func:`dockyard.core.fspath.wildcard_regex`).

    Raises :class:`InvalidDefinitionError` for a malformed pattern (an unclosed ``[``
    or a trailing ``\\``), as Go's ``ErrBadPattern``.
    """
    try:
        return wildcard_regex(pattern)
    except PatternError as exc:
        raise InvalidDefinitionError(str(exc)) from exc


def resolve_wildcards(root: Path, path: str, *, follow_links: bool) -> list[str]:
    """Root-relative paths matching ``path`` (see the module doc). Without a wildcard,
    ``path`` itself (relative, existing or not). A missing base matches nothing."""
    base, pattern = split_wildcards(path)
    if not pattern:
        return [rel_to_root(root, root_path(root, base, follow_links=False))]
    start = root_path(root, base, follow_links=follow_links)
    try:
        matches = match_wildcards(start, pattern)
    except PatternError as exc:
        raise InvalidDefinitionError(str(exc)) from exc
    return [rel_to_root(root, Path(p)) for p in matches]
