"""The automaton of 106071a (patterns of three '*'/'**' or more) must answer as the re
engine it replaces, and as moby's Go regexp: '**' is '.*', which does not match a
newline, while '*' and '?' are '[^/]', which do. The automaton let '**' match a
newline, so whether a file whose name holds one matched depended on how many stars the
pattern had (a '!' re-inclusion then sent a file .dockerignore excluded)."""

from __future__ import annotations

import pytest

from dockyard.core import pathmatch
from dockyard.core.pathmatch import PatternMatcher


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("**/**/*x", "a\nb/cx"),
        ("a/**/b/**/c/**", "a/\n/b/c/d"),
        ("*[^a]**/**", "/\n/b"),
        ("**/*a*a*a", "d\ne/aaa"),
        ("*/*/*", "a\n/b\n/c\n"),
    ],
)
def test_the_automaton_answers_as_re_on_newlines(
    pattern: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    automaton = pathmatch.Pattern.compile(pattern)
    monkeypatch.setattr(pathmatch, "_AUTOMATON_FROM", 10**9)
    regex = pathmatch.Pattern.compile(pattern)
    assert automaton.matches(path) == regex.matches(path)


def test_a_re_inclusion_of_many_stars_does_not_take_a_newline_name_back() -> None:
    matcher = PatternMatcher(["secret*", "!**/**/**/keep"])
    assert matcher.matches("secret\n/x/keep")
    assert not matcher.matches("secrets/x/y/keep")
