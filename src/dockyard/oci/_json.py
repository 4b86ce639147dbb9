"""Deterministic JSON for image-spec documents, byte-compatible with Go's ``json.Marshal``.

A manifest's digest is taken over its exact bytes, so the encoding is part of the format.
Registries, docker and BuildKit all emit what Go's ``encoding/json`` emits: no
whitespace, struct fields in declaration order, map keys sorted, non-ASCII as raw UTF-8,
and ``<``, ``>``, ``&``, U+2028, U+2029 escaped as ``\\u003c`` etc. Producing the same
bytes means an image Dockyard writes for a config docker would write gets the same
digest. Documents received from elsewhere are never re-encoded: their received bytes are
what gets stored and re-published.

Callers build ordered ``dict``s (struct order); maps (labels, annotations) are sorted by
the value types before they get here. ``indent`` reproduces Go's ``json.MarshalIndent``
(BuildKit writes manifests and indexes with a three-space indent, configs compact).
"""

from __future__ import annotations

import json
from typing import Any

from dockyard.core import ContentError, jsontext

__all__ = ["canonical_json", "load_json_object"]

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def canonical_json(value: Any, *, indent: int = 0) -> bytes:
    """Encode ``value`` Go-style: compact, or like ``json.MarshalIndent(v, "", " " *
    indent)`` (see the module docstring)."""
    if indent:
        encoder = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ": "), indent=indent, allow_nan=False
        )
    else:
        encoder = _encoder
    # json only emits these characters inside strings, so escaping after encoding is safe.
    return encoder.encode(value).translate(_GO_ESCAPES).encode("utf-8")


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse ``data`` as a JSON object or raise :class:`ContentError` naming ``what``."""
    try:
        value = jsontext.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContentError(f"invalid {what}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ContentError(f"invalid {what}: expected a JSON object")
    return value
