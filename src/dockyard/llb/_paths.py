"""Path arithmetic with Go's ``path`` package semantics.

LLB paths are POSIX paths computed the way BuildKit's Go client computes them, so that the
same graph serializes to the same bytes: ``clean`` is ``path.Clean`` (which, unlike
``posixpath.normpath``, collapses a leading ``//``) and ``join`` is ``path.Join``.
"""

from __future__ import annotations

import posixpath

__all__ = ["clean", "join", "normalize"]


def clean(path: str) -> str:
    """``path.Clean``: the shortest equivalent path; ``""`` becomes ``"."``."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def join(*elements: str) -> str:
    """``path.Join``: join the non-empty elements with ``/`` and clean; ``""`` if none."""
    parts = [e for e in elements if e]
    if not parts:
        return ""
    return clean("/".join(parts))


def normalize(parent: str, path: str, *, keep_slash: bool = False) -> str:
    """An absolute path for ``path`` relative to the directory ``parent``.

    With ``keep_slash`` a trailing ``/`` or ``/.`` of ``path`` survives cleaning (a copy
    destination ending in ``/`` means "into this directory").
    """
    original = path
    result = clean(path)
    if not result.startswith("/"):
        result = join("/", parent, result)
    if keep_slash:
        if original.endswith("/") and not result.endswith("/"):
            result += "/"
        elif original.endswith("/."):
            if result != "/":
                result += "/"
            result += "."
    return result
