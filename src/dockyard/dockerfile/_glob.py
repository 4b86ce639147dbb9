"""The shell wildcard patterns of ``${VAR#p}``, ``${VAR%p}`` and ``${VAR/p/r}``, matched
in time linear in the value.

BuildKit turns a pattern into a Go regular expression (``*`` → ``.*`` or ``.*?``, ``?`` →
``.``) and Go's regexp engine is linear. Python's ``re`` backtracks: ``${V#*a*a*a*a*a*b}``
on 80 ``a`` took seconds per character added (minutes at 80), in the daemon's frontend
too. Here the pattern is a :mod:`dockyard.core.bitnfa` automaton run over the value once
per question, which gives the same answers as the Go expression:

- an anchored search with lazy stars finds the shortest match, with greedy stars the
  longest (stars only absorb text, so the backtracking order's first match is the
  shortest, respectively longest, one);
- an unanchored greedy search finds the leftmost start and, from it, the longest match
  (what Go's leftmost-first semantics give for greedy stars);
- ``*`` and ``?`` do not match a newline (Go's ``.`` without the ``s`` flag).

The cost is O(len(value) × len(pattern) / 64) per search.
"""

from __future__ import annotations

from dockyard.core import bitnfa

__all__ = ["GlobPattern", "GlobSyntaxError"]

_STAR = 0
_ANY = 1
_LITERAL = 2

# '*' and '?' read anything but a newline (Go's '.' without the 's' flag)
_NOT_NEWLINE = bitnfa.all_but("\n")


class GlobSyntaxError(ValueError):
    """The pattern has an invalid escape; ``str()`` is the reason."""


class GlobPattern:
    """A compiled wildcard pattern: ``*``, ``?`` and ``\\`` escapes (no brackets)."""

    __slots__ = ("_nfa", "_tokens")

    def __init__(self, tokens: list[tuple[int, str]]) -> None:
        collapsed: list[tuple[int, str]] = []
        for token in tokens:
            if token[0] == _STAR and collapsed and collapsed[-1][0] == _STAR:
                continue  # '**' is '*'
            collapsed.append(token)
        self._tokens = tuple(collapsed)
        pieces: list[bitnfa.Piece] = []
        for kind, ch in collapsed:
            if kind == _STAR:
                pieces.append(bitnfa.loop(_NOT_NEWLINE))
            elif kind == _ANY:
                pieces.append(bitnfa.step(_NOT_NEWLINE))
            else:
                pieces.append(bitnfa.step(bitnfa.literal(ch)))
        self._nfa = bitnfa.BitNFA(pieces)

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

    def prefix_end(self, text: str, *, longest: bool) -> int | None:
        """The end of the shortest (or longest) prefix of ``text`` the pattern matches,
        ``None`` if none does."""
        return self._match_end(text, 0, longest=longest)

    def _match_end(self, text: str, start: int, *, longest: bool) -> int | None:
        nfa = self._nfa
        states = nfa.start
        found = start if states & nfa.accept else None
        if found is not None and not longest:
            return found
        for index in range(start, len(text)):
            states = nfa.step(states, text[index])
            if not states:
                break
            if states & nfa.accept:
                found = index + 1
                if not longest:
                    break
        return found

    def _match_starts(self, text: str) -> list[bool]:
        # where a match begins: the reversed automaton run from the end of the text,
        # with a new thread at every position (a match may end anywhere)
        backward = GlobPattern(list(reversed(self._tokens)))._nfa
        starts = [False] * (len(text) + 1)
        states = backward.start
        starts[len(text)] = bool(states & backward.accept)
        for index in range(len(text) - 1, -1, -1):
            states = backward.step(states, text[index]) | backward.start
            starts[index] = bool(states & backward.accept)
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
