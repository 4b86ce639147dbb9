"""``json.loads`` for text from elsewhere (registries, clients, daemons, archives).

The standard decoder recurses once per nesting level and raises ``RecursionError`` (not
a ``ValueError``) past the interpreter's limit: 2 KB of ``[`` escaped every ``except
ValueError`` around a parse as a traceback. Here that is a ``ValueError`` like any other
malformed document.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON text; malformed, undecodable or too deeply nested text is a
    ``ValueError`` (``UnicodeDecodeError`` is one)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
