"""Wildcard patterns run as bit-parallel automata, in time linear in the text.

Python's ``re`` backtracks: a pattern with several unbounded pieces (``*a*a*a…``,
``**/**/**/…``) against a long text that almost matches takes exponential time, where
Go's regexp (what BuildKit and moby use) is linear. The patterns Dockyard takes from
outside (shell substitutions, ``.dockerignore``, ``COPY --exclude``, ``COPY`` wildcards)
are simple enough to run as a Thompson automaton whose states are the bits of one
integer: position ``i`` of the pattern is bit ``i``, the accepting state is the bit past
the last piece, and one step over a character is a few shifts and masks.

A pattern is a sequence of :class:`Piece`:

- :func:`step` reads one character of its :data:`Chars`;
- :func:`loop` reads any number of them (also none);
- :func:`optional` reads nothing and may skip the next ``span`` pieces together
  (``(?:.*/)?`` is ``optional(2), loop(...), step('/')``).

The cost is O(len(text) × len(pattern) / word size) whatever the pattern. Callers build
their own questions (full match, shortest/longest prefix, match starts) from
:attr:`BitNFA.start`, :meth:`BitNFA.step` and :attr:`BitNFA.accept`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "BitNFA",
    "Chars",
    "Piece",
    "all_but",
    "char_class",
    "literal",
    "loop",
    "optional",
    "step",
]


_CHAR = 0
_EXCEPT = 1
_CLASS = 2

Chars = tuple[int, str | frozenset[str] | re.Pattern[str]]
"""The characters a piece reads (made by :func:`literal`, :func:`all_but`,
:func:`char_class`); hashable, so equal sets share their masks."""


def literal(ch: str) -> Chars:
    """Exactly the character ``ch``."""
    return (_CHAR, ch)


def all_but(*chars: str) -> Chars:
    """Every character except ``chars``."""
    return (_EXCEPT, frozenset(chars))


def char_class(regex: str) -> Chars:
    """The characters the one-character regular expression ``regex`` (a class such as
    ``[a-z]``, or an escaped character) matches."""
    return (_CLASS, re.compile(regex))


def _accepts(chars: Chars, ch: str) -> bool:
    kind, value = chars
    if kind == _CHAR:
        return ch == value
    if kind == _EXCEPT:
        assert isinstance(value, frozenset)
        return ch not in value
    assert isinstance(value, re.Pattern)
    return value.fullmatch(ch) is not None


# characters whose masks are kept (a hostile text may hold a million distinct ones)
_CACHED_CHARS = 4096

_STEP = 0
_LOOP = 1
_OPTIONAL = 2

Piece = tuple[int, Chars | None, int]
"""One position of a pattern (made by :func:`step`, :func:`loop`, :func:`optional`)."""


def step(chars: Chars) -> Piece:
    """Read one character of ``chars``."""
    return (_STEP, chars, 0)


def loop(chars: Chars) -> Piece:
    """Read any number of characters of ``chars``, also none."""
    return (_LOOP, chars, 0)


def optional(span: int) -> Piece:
    """Read nothing; the next ``span`` pieces may be skipped together."""
    if span < 1:
        raise ValueError("an optional piece spans at least one piece")
    return (_OPTIONAL, None, span)


class BitNFA:
    """The automaton of a sequence of pieces. States are ints (a bit per position)."""

    __slots__ = ("_classes", "_eps", "_eps1", "_masks", "_simple", "accept", "start")

    def __init__(self, pieces: Sequence[Piece]) -> None:
        # per character: positions that step over it, positions that loop on it
        literals: dict[str, list[int]] = {}
        classes: dict[Chars, list[int]] = {}
        eps: dict[int, int] = {}
        count = len(pieces)
        for index, (kind, chars, span) in enumerate(pieces):
            bit = 1 << index
            if kind == _OPTIONAL:
                if index + span >= count:
                    raise ValueError("an optional piece spans past the end of the pattern")
                eps[1] = eps.get(1, 0) | bit
                eps[span + 1] = eps.get(span + 1, 0) | bit
                continue
            assert chars is not None
            if kind == _LOOP:
                eps[1] = eps.get(1, 0) | bit  # a loop may read nothing
            if chars[0] == _CHAR:
                assert isinstance(chars[1], str)
                masks = literals.setdefault(chars[1], [0, 0])
            else:
                masks = classes.setdefault(chars, [0, 0])
            masks[kind] |= bit
        self._eps = tuple(eps.items())
        self._eps1 = eps.get(1, 0)
        # one shift of one pass is the whole closure when moves by one are the only
        # epsilon moves and none reaches a position with one of its own (shell patterns,
        # whose '**' is '*')
        self._simple = set(eps) <= {1} and not ((self._eps1 << 1) & self._eps1)
        self._classes = tuple((chars, masks[0], masks[1]) for chars, masks in classes.items())
        self._masks: dict[str, tuple[int, int]] = {}
        for ch, (advance, stay) in literals.items():
            if self._classes:  # a literal character may also be read by a class
                more_advance, more_stay = self._compute(ch)
                advance |= more_advance
                stay |= more_stay
            self._masks[ch] = (advance, stay)
        self.accept = 1 << count
        self.start = self.closure(1)

    def _compute(self, ch: str) -> tuple[int, int]:
        advance = stay = 0
        for chars, step_mask, loop_mask in self._classes:
            if _accepts(chars, ch):
                advance |= step_mask
                stay |= loop_mask
        return advance, stay

    def _masks_of(self, ch: str) -> tuple[int, int]:
        masks = self._masks.get(ch)
        if masks is None:
            masks = self._compute(ch)
            if len(self._masks) < _CACHED_CHARS:
                self._masks[ch] = masks
        return masks

    def closure(self, states: int) -> int:
        """``states`` with every state reachable from them without reading."""
        if self._simple:
            return states | ((states & self._eps1) << 1)
        eps = self._eps
        if len(eps) == 2:  # path patterns with '**/': moves by one and by three
            (shift_a, mask_a), (shift_b, mask_b) = eps
            while True:
                grown = states | ((states & mask_a) << shift_a) | ((states & mask_b) << shift_b)
                if grown == states:
                    return states
                states = grown
        while True:
            grown = states
            for shift, mask in eps:
                grown |= (states & mask) << shift
            if grown == states:
                return states
            states = grown

    def step(self, states: int, ch: str) -> int:
        """The states after reading ``ch`` from ``states`` (0: no match can go on)."""
        advance, stay = self._masks_of(ch)
        moved = ((states & advance) << 1) | (states & stay)
        if self._simple:
            return moved | ((moved & self._eps1) << 1)
        return self.closure(moved)

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of ``text`` matches."""
        states = self.start
        cached = self._masks.get
        closure = self.closure
        for ch in text:
            masks = cached(ch) or self._masks_of(ch)
            states = closure(((states & masks[0]) << 1) | (states & masks[1]))
            if not states:
                return False
        return bool(states & self.accept)
