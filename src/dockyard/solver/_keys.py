"""Cache-key arithmetic. Keys are ``sha256:<hex>`` of an unambiguous JSON encoding.

- definition key: ``H("def", op digest, [[input key, selector, output index], ...])``
- content key:    ``H("content", op digest, [["content", digest] | ["key", input key,
  selector, output index], ...])`` — content digests for inputs with ``compute_digest``,
  the definition part otherwise.
- run key:        ``H("run", key, nonce)`` — the canonical key of a result an
  ``ignore_cache`` vertex made afresh: unique to that run, so that nothing made from
  the vertex's old result under its usual key is reused for what it made now.
- link key:       ``H("link", op digest, input number, input key, selector, output
  index)`` — one per input, saved with every record of a vertex beside its keys. A key
  made from an input key exists only if that input's link key does, so a missing link
  key proves, before the other inputs' keys are known, that the vertex cannot hit
  (BuildKit answers the same question with its cache links).

The leading tag separates the two kinds, and JSON keeps any string (selectors are
arbitrary paths) from being confused with a separator. ``_VERSION`` is part of every key:
changing how keys are built must change every key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

__all__ = ["content_key", "def_key", "link_key", "run_key"]

_VERSION = "dockyard.solver/1"
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _hash(payload: list[object]) -> str:
    return "sha256:" + hashlib.sha256(_encode(payload).encode()).hexdigest()


def def_key(op_digest: str, inputs: Sequence[tuple[str, str | None, int]]) -> str:
    """The definition-based key: ``inputs`` holds (input's canonical key, selector,
    output index) per input, in input order."""
    return _hash([_VERSION, "def", op_digest, inputs])


def content_key(
    op_digest: str, parts: Sequence[tuple[str, str] | tuple[str, str, str | None, int]]
) -> str:
    """The content-based key: per input either ``("content", digest)`` or
    ``("key", input key, selector, output index)``."""
    return _hash([_VERSION, "content", op_digest, parts])


def run_key(key: str, nonce: str) -> str:
    """The canonical key of one run of an ``ignore_cache`` vertex whose usual key is
    ``key`` (``nonce``: unique to the run)."""
    return _hash([_VERSION, "run", key, nonce])


def link_key(
    op_digest: str, input_number: int, input_key: str, selector: str | None, index: int
) -> str:
    """The link key of one input: saved with every record of a vertex whose definition
    or content key is made from ``input_key`` at ``input_number``."""
    return _hash([_VERSION, "link", op_digest, input_number, input_key, selector, index])
