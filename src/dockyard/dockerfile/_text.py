"""Small text helpers that follow Go's rules, so that our output matches BuildKit's
byte for byte (whitespace classes, ``strconv.Quote``, ``path.Clean``, ``%q``)."""

from __future__ import annotations

__all__ = [
    "GO_SPACE",
    "go_quote",
    "go_quote_list",
    "go_trim_space",
    "is_go_space",
    "parse_go_bool",
    "suggest",
]

# Go's unicode.IsSpace: ASCII \t \n \v \f \r and space, U+0085, U+00A0 and the Unicode
# White_Space characters. (Python's str.isspace() also accepts \x1c-\x1f.)
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_GO_SPACE_SET = frozenset(GO_SPACE)

_NAMED_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def is_go_space(ch: str) -> bool:
    return ch in _GO_SPACE_SET


def go_trim_space(text: str) -> str:
    return text.strip(GO_SPACE)


def go_quote(text: str) -> str:
    """``strconv.Quote``: a double-quoted Go string literal.

    Undecodable input bytes (kept as surrogate escapes) come out as ``\\xHH``.
    """
    out = ['"']
    for ch in text:
        esc = _NAMED_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a raw byte from surrogateescape decoding
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == " " or (code >= 0x20 and ch.isprintable()):
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_quote_list(items: tuple[str, ...] | list[str]) -> str:
    """``fmt.Sprintf("%q", []string{...})``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(item) for item in items) + "]"


def _distance_below(a: str, b: str, limit: int) -> int:
    """The edit distance of ``a`` and ``b`` if it is below ``limit``, else ``limit``.
    Only the cells within ``limit - 1`` of the diagonal can lie on such a path, so the
    cost is O(len × limit), not O(len(a) × len(b)): a mistyped word may be a whole
    100 KB line (a full table took 4.7 s for one unknown instruction of 100 KB)."""
    if len(a) < len(b):
        a, b = b, a
    if len(a) - len(b) >= limit:
        return limit
    if a == b:
        return 0
    band = limit - 1
    previous = {j: j for j in range(min(len(b), band) + 1)}
    for i in range(1, len(a) + 1):
        ca = a[i - 1]
        current: dict[int, int] = {}
        for j in range(max(0, i - band), min(len(b), i + band) + 1):
            if j == 0:
                current[0] = i
                continue
            current[j] = min(
                previous.get(j, limit) + 1,
                current.get(j - 1, limit) + 1,
                previous.get(j - 1, limit) + (ca != b[j - 1]),
                limit,
            )
        if min(current.values()) >= limit:
            return limit
        previous = current
    return previous.get(len(b), limit)


def _match_case(value: str, original: str) -> str:
    if original == original.lower():
        return value.lower()
    if original == original.upper():
        return value.upper()
    return value


def suggest(
    value: str, options: list[str] | tuple[str, ...], *, case_sensitive: bool
) -> str | None:
    """The closest option to a mistyped ``value`` (edit distance below 3), as BuildKit
    suggests them; ``None`` when nothing is close or ``value`` is itself an option."""
    needle = value if case_sensitive else value.lower()
    best: str | None = None
    best_distance = 3
    for option in options:
        candidate = option if case_sensitive else option.lower()
        if candidate == needle:
            return None
        distance = _distance_below(needle, candidate, best_distance)
        if distance < best_distance:
            best = candidate if case_sensitive else _match_case(candidate, value)
            best_distance = distance
    return best


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool | None:
    """``strconv.ParseBool``: ``None`` when ``text`` is not a boolean."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None
