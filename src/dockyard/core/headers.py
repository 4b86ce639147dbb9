"""Numbers in HTTP headers from registries and object stores (untrusted).

``str.isdigit()`` is true for ``'٣'`` and for 5000 ASCII digits, and ``int()`` then
either reads a non-ASCII digit as a number or raises a ``ValueError`` of its own (past
4300 digits): a header could turn a registry answer into a traceback.
"""

from __future__ import annotations

__all__ = ["header_int"]

_MAX = (1 << 63) - 1


def header_int(text: str | None) -> int | None:
    """``text`` as Go's ``strconv.ParseInt(text, 10, 64)`` of a non-negative number
    reads it: ASCII digits only, at most 2**63-1; ``None`` otherwise."""
    if not text or len(text) > 19 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX else None
