"""The bit-parallel automaton both pattern kinds run on (shell substitutions and path
patterns), checked against Python's ``re`` on small random patterns."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import bitnfa
from dockyard.core.bitnfa import BitNFA

# each piece kind with the regex it stands for
_KINDS: dict[str, tuple[list[bitnfa.Piece], str]] = {
    "a": ([bitnfa.step(bitnfa.literal("a"))], "a"),
    "/": ([bitnfa.step(bitnfa.literal("/"))], "/"),
    "nl": ([bitnfa.step(bitnfa.literal("\n"))], "\n"),
    "?": ([bitnfa.step(bitnfa.all_but("/"))], "[^/]"),
    ".": ([bitnfa.step(bitnfa.all_but("\n"))], "."),
    "*": ([bitnfa.loop(bitnfa.all_but("/"))], "[^/]*"),
    ".*": ([bitnfa.loop(bitnfa.all_but("\n"))], ".*"),
    "[ab]": ([bitnfa.step(bitnfa.char_class("[ab]"))], "[ab]"),
    "[^a]*": ([bitnfa.loop(bitnfa.char_class("[^a]"))], "[^a]*"),
    "a*": ([bitnfa.loop(bitnfa.literal("a"))], "a*"),
    "none": ([bitnfa.step(bitnfa.char_class("(?!)"))], "(?!)"),
    "dirs": (
        [
            bitnfa.optional(2),
            bitnfa.loop(bitnfa.all_but("\n")),
            bitnfa.step(bitnfa.literal("/")),
        ],
        "(?:.*/)?",
    ),
    "opt-a": ([bitnfa.optional(1), bitnfa.step(bitnfa.literal("a"))], "a?"),
}


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(sorted(_KINDS)), max_size=7), st.text("ab/\n", max_size=10))
def test_fullmatch_agrees_with_re(kinds: list[str], text: str) -> None:
    pieces = [piece for kind in kinds for piece in _KINDS[kind][0]]
    regex = "".join(_KINDS[kind][1] for kind in kinds)
    expected = re.fullmatch(regex, text) is not None
    assert BitNFA(pieces).fullmatch(text) is expected


def test_a_literal_also_read_by_a_class() -> None:
    # 'a' is both a literal of one position and in the class of another
    nfa = BitNFA([bitnfa.step(bitnfa.literal("a")), bitnfa.step(bitnfa.char_class("[ab]"))])
    assert nfa.fullmatch("aa")
    assert nfa.fullmatch("ab")
    assert not nfa.fullmatch("ba")


def test_chained_optionals_close_over_each_other() -> None:
    # the closure must go on past one epsilon move: optional → optional → accept
    pieces = [
        bitnfa.optional(1),
        bitnfa.step(bitnfa.literal("a")),
        bitnfa.optional(1),
        bitnfa.step(bitnfa.literal("b")),
    ]
    nfa = BitNFA(pieces)
    assert [nfa.fullmatch(t) for t in ("", "a", "b", "ab", "ba")] == [
        True,
        True,
        True,
        True,
        False,
    ]


def test_an_optional_must_end_inside_the_pattern() -> None:
    with pytest.raises(ValueError, match="past the end"):
        BitNFA([bitnfa.optional(2), bitnfa.step(bitnfa.literal("a"))])
    with pytest.raises(ValueError, match="at least one"):
        bitnfa.optional(0)


def test_distinct_characters_are_cached_up_to_a_bound() -> None:
    nfa = BitNFA([bitnfa.loop(bitnfa.all_but("/"))])
    text = "".join(chr(0x4E00 + i) for i in range(bitnfa._CACHED_CHARS + 500))
    assert nfa.fullmatch(text)
    assert len(nfa._masks) == bitnfa._CACHED_CHARS
    assert not nfa.fullmatch(text + "/")


def test_optionals_of_several_spans() -> None:
    # moves by one, two and three: the closure's general case
    a, b = bitnfa.step(bitnfa.literal("a")), bitnfa.step(bitnfa.literal("b"))
    pieces = [bitnfa.optional(2), a, bitnfa.optional(1), b, bitnfa.optional(1), a]
    nfa = BitNFA(pieces)
    regex = re.compile("(?:ab?|b)a?")
    for text in ("", "a", "ab", "aba", "aa", "b", "ba", "abb", "abaa"):
        assert nfa.fullmatch(text) is (regex.fullmatch(text) is not None), text
