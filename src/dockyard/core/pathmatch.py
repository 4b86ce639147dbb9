"""Path patterns as ``.dockerignore`` (and ``COPY --exclude``) use them.

Semantics of moby's ``patternmatcher``:

- patterns are slash-separated paths relative to a root; ``./`` and a leading ``/`` are
  cleaned away, ``..`` and duplicate slashes are resolved like Go's ``path.Clean``;
- ``*`` matches any run of characters except ``/``, ``?`` one character except ``/``,
  ``[...]`` a character class (``[^...]`` negated, ``a-z`` ranges), ``\\`` escapes the
  next character, ``**`` any number of path segments (also none);
- a pattern that matches a directory matches everything below it;
- patterns apply in order and ``!pattern`` re-includes what earlier patterns matched;
  the last pattern that matches a path (or one of its parent directories) decides.

:meth:`PatternMatcher.may_include_inside` tells a directory walker whether an
excluded directory can still contain re-included files, so that it can skip whole
excluded trees safely.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import bitnfa
from .bitnfa import BitNFA

__all__ = [
    "ANY_PIECE",
    "STAR_PIECE",
    "MatchState",
    "Pattern",
    "PatternError",
    "PatternMatcher",
    "SegmentMatcher",
    "clean_path",
    "segment_matcher",
]


class PatternError(ValueError):
    """A malformed pattern (unclosed ``[``, bad range, trailing ``\\``, a lone ``!``).

    Callers translate it into the error of their boundary (``FrontendError`` for a
    Dockerfile or ``.dockerignore``, ``InvalidDefinitionError`` for LLB)."""


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: resolve ``.``, ``..`` and repeated slashes (``""`` → ``"."``)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


class _Kind(enum.Enum):
    EXACT = 1
    PREFIX = 2
    SUFFIX = 3
    REGEX = 4


def _read_class(pattern: str, pos: int, original: str) -> tuple[str, int]:
    """Parse a ``[...]`` class starting after ``[``; returns regex text and the index
    after ``]``. Follows Go's ``filepath.Match`` syntax rules (a reversed range such as
    ``z-a`` is allowed and matches nothing)."""
    n = len(pattern)
    negated = pos < n and pattern[pos] == "^"
    if negated:
        pos += 1
    items: list[str] = []
    ranges = 0
    while True:
        if pos < n and pattern[pos] == "]" and ranges > 0:
            break
        low, pos = _class_char(pattern, pos, original)
        high = low
        if pos < n and pattern[pos] == "-":
            high, pos = _class_char(pattern, pos + 1, original)
        if low == high:
            items.append(re.escape(low))
        elif low < high:
            items.append(f"{re.escape(low)}-{re.escape(high)}")
        ranges += 1
    if not items:
        return ("[\\s\\S]" if negated else "(?!)"), pos + 1
    return "[" + ("^" if negated else "") + "".join(items) + "]", pos + 1


def _class_char(pattern: str, pos: int, original: str) -> tuple[str, int]:
    n = len(pattern)
    if pos >= n or pattern[pos] in "-]":
        raise PatternError(f"invalid pattern {original!r}: unterminated or empty character class")
    ch = pattern[pos]
    pos += 1
    if ch == "\\":
        if pos >= n:
            raise PatternError(f"invalid pattern {original!r}: trailing backslash")
        ch = pattern[pos]
        pos += 1
    return ch, pos


def _segment_regex(text: str, original: str) -> list[str]:
    """Regex pieces for a pattern without ``**`` handling (one path segment or a plain
    run): one piece per character, ``*`` or ``?`` of the pattern."""
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        pos += 1
        if ch == "*":
            out.append(_STAR)
        elif ch == "?":
            out.append(_ANY)
        elif ch == "\\":
            if pos < n:
                out.append(re.escape(text[pos]))
                pos += 1
            else:
                raise PatternError(f"invalid pattern {original!r}: trailing backslash")
        elif ch == "[":
            cls, pos = _read_class(text, pos, original)
            out.append(cls)
        else:
            out.append(re.escape(ch))
    return out


STAR_PIECE = _STAR = "[^/]*"
"""The piece of a ``*`` within a path segment (the automaton recognizes it by value)."""
ANY_PIECE = _ANY = "[^/]"
"""The piece of a ``?`` within a path segment."""
_DIRS = "(?:.*/)?"
_ALL = ".*"
# regexes with this many unbounded pieces are matched by a BitNFA: Python's re
# backtracks, so "**/" twenty times or "*a" eight times against a long path took hours
# (moby's Go regexp is linear); fewer keep re, which is faster for the common patterns
_AUTOMATON_FROM = 3


def _automaton(pieces: list[str]) -> BitNFA:
    """A pattern's regex pieces as a bit-parallel automaton: ``fullmatch`` in
    O(len(path) × pieces / 64), whatever the pattern."""
    out: list[bitnfa.Piece] = []
    for piece in pieces:
        if piece == _STAR:
            out.append(bitnfa.loop(_NOT_SLASH))
        elif piece == _ALL:
            # '**' is '.*' (no newline, as re and Go's regexp)
            out.append(bitnfa.loop(_NOT_NEWLINE))
        elif piece == _DIRS:
            out += (bitnfa.optional(2), bitnfa.loop(_NOT_NEWLINE), bitnfa.step(_SLASH))
        elif piece == _ANY:
            out.append(bitnfa.step(_NOT_SLASH))
        else:
            out.append(bitnfa.step(bitnfa.char_class(piece)))
    return BitNFA(out)


_NOT_SLASH = bitnfa.all_but("/")
_NOT_NEWLINE = bitnfa.all_but("\n")
_SLASH = bitnfa.literal("/")


SegmentMatcher = re.Pattern[str] | BitNFA
"""A compiled pattern: both kinds have ``fullmatch(text)``, true-ish on a match."""


def segment_matcher(pieces: list[str]) -> SegmentMatcher:
    """The matcher of a regex made of ``pieces`` (one per pattern character, ``*`` or
    ``**``; ``*`` and ``?`` as :data:`STAR_PIECE` and :data:`ANY_PIECE`): re, or the
    automaton for three unbounded pieces or more."""
    unbounded = sum(1 for piece in pieces if piece in (_STAR, _DIRS, _ALL))
    if unbounded >= _AUTOMATON_FROM:
        return _automaton(pieces)
    return re.compile("".join(pieces))


@dataclass(frozen=True, slots=True, eq=False)
class Pattern:
    """One cleaned pattern; ``exclusion`` for ``!`` patterns (which re-include)."""

    text: str
    exclusion: bool = False
    _kind: _Kind = field(default=_Kind.EXACT, repr=False)
    _regex: SegmentMatcher | None = field(default=None, repr=False)
    _segments: tuple[SegmentMatcher | None, ...] = field(default=(), repr=False)

    @classmethod
    def compile(cls, text: str, *, exclusion: bool = False) -> Pattern:
        kind = _Kind.EXACT
        regex: list[str] = []
        pos = 0
        n = len(text)
        index = 0
        while pos < n:
            ch = text[pos]
            pos += 1
            if ch == "*":
                if pos < n and text[pos] == "*":
                    pos += 1
                    if pos < n and text[pos] == "/":
                        pos += 1
                    if pos >= n:
                        if kind is _Kind.EXACT:
                            kind = _Kind.PREFIX
                        else:
                            regex.append(_ALL)
                            kind = _Kind.REGEX
                    else:
                        regex.append(_DIRS)
                        kind = _Kind.REGEX
                    if index == 0:
                        kind = _Kind.SUFFIX
                else:
                    regex.append(_STAR)
                    kind = _Kind.REGEX
            elif ch == "?":
                regex.append(_ANY)
                kind = _Kind.REGEX
            elif ch == "\\":
                if pos < n:
                    regex.append(re.escape(text[pos]))
                    pos += 1
                    kind = _Kind.REGEX
                else:
                    raise PatternError(f"invalid pattern {text!r}: trailing backslash")
            elif ch == "[":
                cls_regex, pos = _read_class(text, pos, text)
                regex.append(cls_regex)
                kind = _Kind.REGEX
            else:
                regex.append(re.escape(ch))
            index += 1
        compiled = segment_matcher(regex) if kind is _Kind.REGEX else None
        segments = tuple(
            None if "**" in seg else segment_matcher(_segment_regex(seg, text))
            for seg in text.split("/")
        )
        return cls(text=text, exclusion=exclusion, _kind=kind, _regex=compiled, _segments=segments)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (cleaned, relative, slash-separated) itself matches."""
        kind = self._kind
        if kind is _Kind.EXACT:
            return path == self.text
        if kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self._regex is not None
        return bool(self._regex.fullmatch(path))

    def could_match_below(self, directory: str) -> bool:
        """Whether this pattern might match ``directory`` itself or something inside it
        (conservative: ``True`` when unsure)."""
        parts = directory.split("/") if directory not in ("", ".") else []
        segments = self._segments
        for index, part in enumerate(parts):
            if index >= len(segments):
                return True  # the pattern matched a parent directory
            regex = segments[index]
            if regex is None:
                return True  # "**" can match anything from here on
            if not regex.fullmatch(part):
                return False
        return True

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.text


@dataclass(frozen=True, slots=True)
class MatchState:
    """Per-pattern results for a directory, passed down to its children
    (:meth:`PatternMatcher.match_with_parent`)."""

    matched: tuple[bool, ...] = ()


class PatternMatcher:
    """An ordered list of patterns, the last matching one deciding (see module doc)."""

    __slots__ = ("_exclusions", "_patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        compiled: list[Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            exclusion = text.startswith("!")
            if exclusion:
                text = text[1:].strip()
                if not text:
                    raise PatternError('illegal exclusion pattern: "!"')
            text = clean_path(text)
            if text.startswith("/") and len(text) > 1:
                text = text.lstrip("/")
            compiled.append(Pattern.compile(text, exclusion=exclusion))
        self._patterns = tuple(compiled)
        self._exclusions = any(p.exclusion for p in compiled)

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return self._patterns

    @property
    def has_exclusions(self) -> bool:
        """Whether any ``!`` pattern exists (else an excluded directory is excluded whole)."""
        return self._exclusions

    def __bool__(self) -> bool:
        return bool(self._patterns)

    @staticmethod
    def _normalize(path: str) -> str:
        path = clean_path(path)
        return path.lstrip("/") or "."

    def matches(self, path: str) -> bool:
        """Whether ``path`` is matched (excluded, for an ignore file): by a pattern on the
        path itself or on one of its parent directories, and not re-included later."""
        path = self._normalize(path)
        if path == ".":
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.matches(path)
            if not hit:
                for i in range(len(parents)):
                    if pattern.matches("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_exact(self, path: str) -> bool:
        """Like :meth:`matches` without looking at parent directories."""
        path = self._normalize(path)
        matched = False
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            if pattern.matches(path):
                matched = not pattern.exclusion
        return matched

    def match_with_parent(
        self, path: str, parent: MatchState | None = None
    ) -> tuple[bool, MatchState]:
        """:meth:`matches` for a tree walk: pass the state returned for the parent
        directory (``None`` for top-level entries) to avoid re-checking ancestors."""
        path = self._normalize(path)
        previous = parent.matched if parent is not None else ()
        if previous and len(previous) != len(self._patterns):
            raise ValueError("match state comes from a different matcher")
        results: list[bool] = []
        matched = False
        for index, pattern in enumerate(self._patterns):
            hit = previous[index] if previous else False
            if not hit:
                if pattern.exclusion != matched:
                    results.append(False)
                    continue
                hit = pattern.matches(path)
                if not hit and not previous:
                    parents = path.split("/")[:-1]
                    for i in range(len(parents)):
                        if pattern.matches("/".join(parents[: i + 1])):
                            hit = True
                            break
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchState(tuple(results))

    def may_include_inside(self, directory: str) -> bool:
        """Whether something inside ``directory`` could be un-matched by a ``!`` pattern,
        so a walker must descend even though the directory itself is matched. ``False``
        means the whole subtree is matched and can be skipped."""
        if not self._exclusions:
            return False
        directory = self._normalize(directory)
        return any(p.exclusion and p.could_match_below(directory) for p in self._patterns)
