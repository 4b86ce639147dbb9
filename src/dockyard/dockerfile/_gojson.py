"""JSON as BuildKit's Go code writes its subrequest documents (``json.MarshalIndent``
over structs with ``omitempty`` tags): what ``--call=outline|targets|check,format=json``
prints, byte for byte."""

from __future__ import annotations

import json
from typing import Any

from dockyard.core import SourceLocation

__all__ = ["dumps", "location_json", "put"]


def put(out: dict[str, Any], key: str, value: Any) -> None:
    """Go's ``omitempty``: false, zero, empty strings and lists and ``None`` are left
    out."""
    if value:
        out[key] = value


def location_json(location: SourceLocation | None) -> dict[str, Any] | None:
    """BuildKit's ``pb.Location`` in source 0 (``sourceIndex`` 0 is left out, as Go's
    ``omitempty`` does): 1-based line ranges, and the characters where they are known."""
    if location is None or not location.ranges:
        return None
    ranges: list[dict[str, Any]] = []
    for r in location.ranges:
        start: dict[str, Any] = {"line": r.start}
        put(start, "character", r.start_column)
        end: dict[str, Any] = {"line": r.end}
        put(end, "character", r.end_column)
        ranges.append({"start": start, "end": end})
    return {"ranges": ranges}


_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def dumps(value: Any) -> str:
    """JSON as Go's ``json.MarshalIndent(v, "", "  ")`` writes it (HTML characters
    escaped, other non-ASCII characters kept; no final newline)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)  # only ever inside strings
    return text
