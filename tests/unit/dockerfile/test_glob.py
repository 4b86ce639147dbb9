"""The wildcard patterns of ``${VAR#p}``, ``${VAR%p}`` and ``${VAR/p/r}``: the same
answers as the Go regular expressions BuildKit builds from them, in linear time."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import FrontendError
from dockyard.dockerfile import expand_word
from dockyard.dockerfile._glob import GlobPattern, GlobSyntaxError


def _regex(pattern: str, *, greedy: bool) -> re.Pattern[str]:
    """BuildKit's convertShellPatternToRegex, the reference (Python's backtracking
    engine gives Go's leftmost-first answers; it is only slow)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue
            i += 1
            if following not in ("*", "?", "\\"):
                raise GlobSyntaxError(following)
            out.append(re.escape(following))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _reverse(pattern: str) -> str:
    """The pattern reversed as text, escapes kept with what they escape."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(reversed(out))


def _go_replace(regex: re.Pattern[str], text: str, replacement: str, replace_all: bool) -> str:
    """Go's ``ReplaceAllString`` loop (an empty match right after a match is skipped)."""
    if not replace_all:
        match = regex.search(text)
        if match is None:
            return text
        return text[: match.start()] + replacement + text[match.end() :]
    out: list[str] = []
    last = search = 0
    while search <= len(text):
        match = regex.search(text, search)
        if match is None:
            break
        out.append(text[last : match.start()])
        if match.end() > last or match.start() == 0:
            out.append(replacement)
        last = match.end()
        search = max(search + 1, match.end())
    out.append(text[last:])
    return "".join(out)


patterns = st.text(alphabet="ab*?\\\n", max_size=8)
texts = st.text(alphabet="ab\n*?", max_size=12)


@settings(max_examples=300, deadline=None)
@given(patterns, texts, st.booleans())
def test_prefixes_and_suffixes_match_the_regex_reference(
    pattern: str, text: str, longest: bool
) -> None:
    try:
        regex = _regex(pattern, greedy=longest)
    except GlobSyntaxError:
        with pytest.raises(GlobSyntaxError):
            GlobPattern.parse(pattern)
        return
    match = regex.match(text)
    assert GlobPattern.parse(pattern).prefix_end(text, longest=longest) == (
        match.end() if match else None
    )
    reversed_match = _regex(_reverse(pattern), greedy=longest).match(text[::-1])
    assert GlobPattern.parse_reversed(pattern).prefix_end(text[::-1], longest=longest) == (
        reversed_match.end() if reversed_match else None
    )


@settings(max_examples=300, deadline=None)
@given(patterns, texts, st.booleans())
def test_replacement_matches_go_replace(pattern: str, text: str, replace_all: bool) -> None:
    try:
        regex = _regex(pattern, greedy=True)
    except GlobSyntaxError:
        return
    expected = _go_replace(regex, text, "<>", replace_all)
    assert GlobPattern.parse(pattern).replace(text, "<>", replace_all=replace_all) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${V//*/x}", "x"),  # Go skips the empty match at the end (Python's re.sub: "xx")
        ("${V//b*/x}", "ax"),
    ],
)
def test_replacement_edge_cases(word: str, expected: str) -> None:
    assert expand_word(word, {"V": "abc"}) == expected


@pytest.mark.parametrize(
    "form", ["${V#PAT}", "${V##PAT}", "${V%PAT}", "${V%%PAT}", "${V/PAT/x}", "${V//PAT/x}"]
)
def test_backtracking_patterns_take_linear_time(form: str) -> None:
    # with Python's backtracking re, *a*a*a*a*a*a*b against 80 'a' took 48 s (prefix) and
    # 136 s (replacement); the suffix forms reverse it: b*a*a*a*a*a*a*
    value = "a" * 4000
    for pattern in ("*a" * 6 + "*b", "b" + "*a" * 6 + "*"):
        started = time.perf_counter()
        assert expand_word(form.replace("PAT", pattern), {"V": value}) in (value, "", "x")
        assert time.perf_counter() - started < 1.0


def test_invalid_escape_names_the_pattern() -> None:
    with pytest.raises(FrontendError, match=r"invalid pattern \(ab\\q\) in substitution"):
        expand_word("${V%ab\\q}", {"V": "x"})
