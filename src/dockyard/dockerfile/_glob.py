"""The shell wildcard patterns of ``${VAR#p}``, ``${VAR%p}`` and ``${VAR/p/r}``, matched
in time linear in the value.

BuildKit turns a pattern into a Go regular expression (``*`` → ``.*`` or ``.*?``, ``?`` →
``.``) and Go's regexp engine is linear. Python's ``re`` backtracks: ``${V#*a*a*a*a*a*b}``
on 80 ``a`` took seconds per character added (minutes at 80), in the daemon's frontend
too. Here the pattern is a small automaton (each position of the pattern one bit of an
integer) run over the value once per question, which gives the same answers as the Go
expression:

- an anchored search with lazy stars finds the shortest match, with greedy stars the
  longest (stars only absorb text, so the backtracking order's first match is the
  shortest, respectively longest, one);
- an unanchored greedy search finds the leftmost start and, from it, the longest match
  (what Go's leftmost-first semantics give for greedy stars);
- ``*`` and ``?`` do not match a newline (Go's ``.`` without the ``s`` flag).

The cost is O(len(value) × len(pattern) / 64) per search.
"""

from __future__ import annotations

__all__ = ["GlobPattern", "GlobSyntaxError"]

_STAR = 0
_ANY = 1
_LITERAL = 2


class GlobSyntaxError(ValueError):
    """The pattern has an invalid escape; ``str()`` is the reason."""


class GlobPattern:
    """A compiled wildcard pattern: ``*``, ``?`` and ``\\`` escapes (no brackets)."""

    __slots__ = ("_accept", "_any", "_literals", "_star", "_start", "_tokens")

    def __init__(self, tokens: list[tuple[int, str]]) -> None:
        collapsed: list[tuple[int, str]] = []
        for token in tokens:
            if token[0] == _STAR and collapsed and collapsed[-1][0] == _STAR:
                continue  # '**' is '*'
            collapsed.append(token)
        self._tokens = tuple(collapsed)
        self._star = 0
        self._any = 0
        self._literals: dict[str, int] = {}
        for index, (kind, ch) in enumerate(collapsed):
            bit = 1 << index
            if kind == _STAR:
                self._star |= bit
            elif kind == _ANY:
                self._any |= bit
            else:
                self._literals[ch] = self._literals.get(ch, 0) | bit
        self._accept = 1 << len(collapsed)
        self._start = self._closure(1)

    @classmethod
    def parse(cls, pattern: str) -> GlobPattern:
        """Compile ``pattern``; an escape of anything but ``*``, ``?``, ``\\`` (and the
        ``}``/``/`` the lexer left escaped) is a :class:`GlobSyntaxError`."""
        tokens: list[tuple[int, str]] = []
        i = 0
        n = len(pattern)
        while i < n:
            ch = pattern[i]
            i += 1
            if ch == "*":
                tokens.append((_STAR, ""))
            elif ch == "?":
                tokens.append((_ANY, ""))
            elif ch == "\\":
                following = pattern[i] if i < n else ""
                if following in ("}", "/"):
                    continue  # the escaped character is matched as itself next
                i += 1
                if following not in ("*", "?", "\\"):
                    shown = following or "\ufffd"
                    raise GlobSyntaxError(
                        f"invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'"
                    )
                tokens.append((_LITERAL, following))
            else:
                tokens.append((_LITERAL, ch))
        return cls(tokens)

    @classmethod
    def parse_reversed(cls, pattern: str) -> GlobPattern:
        """The pattern matching the reversed texts ``pattern`` matches (for suffixes)."""
        return cls(list(reversed(cls.parse(pattern)._tokens)))

    def _closure(self, states: int) -> int:
        # a star may match nothing: its state also stands at the next position ('**'
        # was collapsed, so one step reaches past every star)
        return states | ((states & self._star) << 1)

    def _step(self, states: int, ch: str) -> int:
        if ch == "\n":
            moved = (states & self._literals.get(ch, 0)) << 1
        else:
            moved = ((states & (self._any | self._literals.get(ch, 0))) << 1) | (
                states & self._star
            )
        return self._closure(moved)

    def prefix_end(self, text: str, *, longest: bool) -> int | None:
        """The end of the shortest (or longest) prefix of ``text`` the pattern matches,
        ``None`` if none does."""
        return self._match_end(text, 0, longest=longest)

    def _match_end(self, text: str, start: int, *, longest: bool) -> int | None:
        states = self._start
        found = start if states & self._accept else None
        if found is not None and not longest:
            return found
        for index in range(start, len(text)):
            states = self._step(states, text[index])
            if not states:
                break
            if states & self._accept:
                found = index + 1
                if not longest:
                    break
        return found

    def _match_starts(self, text: str) -> list[bool]:
        # where a match begins: the reversed automaton run from the end of the text,
        # with a new thread at every position (a match may end anywhere)
        backward = GlobPattern(list(reversed(self._tokens)))
        starts = [False] * (len(text) + 1)
        states = backward._start
        starts[len(text)] = bool(states & backward._accept)
        for index in range(len(text) - 1, -1, -1):
            states = backward._step(states, text[index]) | backward._start
            starts[index] = bool(states & backward._accept)
        return starts

    def replace(self, text: str, replacement: str, *, replace_all: bool) -> str:
        """Replace the first (or every) leftmost-longest match, as Go's
        ``FindStringIndex`` / ``ReplaceAllString`` with a literal replacement do (an
        empty match right after a match is not replaced)."""
        starts = self._match_starts(text)
        out: list[str] = []
        last_end = 0
        search = 0
        size = len(text)
        while search <= size:
            try:
                begin = starts.index(True, search)
            except ValueError:
                break
            end = self._match_end(text, begin, longest=True)
            if end is None:  # unreachable: a match begins here
                break
            out.append(text[last_end:begin])
            if end > last_end or begin == 0:
                out.append(replacement)
            last_end = end
            if not replace_all:
                break
            search = max(search + 1, end)
        out.append(text[last_end:])
        return "".join(out)
