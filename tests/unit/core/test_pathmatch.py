"""dockyard.core.pathmatch against a table (tests/data/pathmatch/matches.txt)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import MatchState, PatternError, PatternMatcher
from dockyard.core.pathmatch import clean_path

TABLE = Path(__file__).parents[2] / "data" / "pathmatch" / "matches.txt"


def _rows() -> list[tuple[list[str], str, str]]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        patterns, path, expected = (part.strip() for part in line.rsplit(" | ", 2))
        rows.append((patterns.split(" ; "), path, expected))
    return rows


ROWS = _rows()


def _walk_match(matcher: PatternMatcher, path: str) -> bool:
    state: MatchState | None = None
    parts = path.split("/")
    for i in range(len(parts) - 1):
        _, state = matcher.match_with_parent("/".join(parts[: i + 1]), state)
    matched, _ = matcher.match_with_parent(path, state)
    return matched


@pytest.mark.parametrize(("patterns", "path", "expected"), ROWS)
def test_match_table(patterns: list[str], path: str, expected: str) -> None:
    matcher = PatternMatcher(patterns)
    matched = matcher.matches(path)
    assert matched == (expected != "no")
    if len(patterns) == 1:
        assert matcher.matches_exact(path) == (expected == "exact")
    # The tree-walk variant agrees with the one-shot check, with and without parent state.
    assert _walk_match(matcher, path) == matched
    assert matcher.match_with_parent(path)[0] == matched


@pytest.mark.parametrize(
    "pattern",
    ["[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "a\\", "!", " ! "],
)
def test_malformed_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(PatternError):
        PatternMatcher([pattern])


def test_blank_patterns_are_skipped_and_exclusions_reported() -> None:
    matcher = PatternMatcher(["docs", "", "   ", "  !docs/README.md  "])
    assert [str(p) for p in matcher.patterns] == ["docs", "!docs/README.md"]
    assert matcher.has_exclusions
    assert not PatternMatcher(["a", "b"]).has_exclusions
    assert not PatternMatcher([])
    assert not PatternMatcher([]).matches("anything")


def test_root_is_never_matched() -> None:
    matcher = PatternMatcher(["*", "**"])
    assert not matcher.matches(".")
    assert not matcher.matches("")
    assert matcher.matches("./a/")


def test_state_from_another_matcher_is_refused() -> None:
    _, state = PatternMatcher(["a", "b"]).match_with_parent("a")
    with pytest.raises(ValueError, match="different matcher"):
        PatternMatcher(["a"]).match_with_parent("a/b", state)


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        (".", "."),
        ("./a//b/", "a/b"),
        ("a/../..", ".."),
        ("/../a", "/a"),
        ("/", "/"),
        ("a/./b/../c", "a/c"),
    ],
)
def test_clean_path(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


TREE = [
    "Dockerfile",
    "README.md",
    "docs/index.md",
    "docs/api/keep.md",
    "docs/api/drop.txt",
    "node_modules/a/index.js",
    "node_modules/a/keep/x.js",
    "src/app.py",
    "src/gen/out.py",
    "src/gen/deep/keep.py",
    "build/bin/app",
    "build/bin/keep",
    ".git/HEAD",
    ".git/objects/aa/bb",
]

PATTERN_SETS = [
    ["docs", "!docs/api/keep.md"],
    ["node_modules", "!**/keep"],
    ["src/gen", "!src/gen/deep/*.py"],
    ["*", "!src"],
    ["**", "!**/keep*"],
    ["build/**", "!build/bin/keep"],
    [".git", "*.md", "!README.md"],
    ["**/*.md", "!docs/**"],
    ["docs/*", "!docs/a*"],
    ["s*/gen", "!s?c/g[a-z]n/deep"],
]


def _walk(matcher: PatternMatcher) -> set[str]:
    """Files a walker keeps when it skips excluded directories the matcher says hold
    nothing re-included."""
    kept: set[str] = set()
    directories = sorted(
        {"/".join(f.split("/")[:i]) for f in TREE for i in range(1, f.count("/") + 1)}
    )
    skipped = [d for d in directories if matcher.matches(d) and not matcher.may_include_inside(d)]
    for file in TREE:
        if any(file.startswith(d + "/") for d in skipped):
            continue
        if not matcher.matches(file):
            kept.add(file)
    return kept


@pytest.mark.parametrize("patterns", PATTERN_SETS, ids=[" ".join(p) for p in PATTERN_SETS])
def test_skipping_excluded_directories_is_safe(patterns: list[str]) -> None:
    matcher = PatternMatcher(patterns)
    expected = {f for f in TREE if not matcher.matches(f)}
    assert _walk(matcher) == expected


def test_may_include_inside() -> None:
    assert not PatternMatcher(["node_modules"]).may_include_inside("node_modules")
    matcher = PatternMatcher(["node_modules", "!node_modules/keep/**"])
    assert matcher.may_include_inside("node_modules")
    assert matcher.may_include_inside("node_modules/keep")
    assert not matcher.may_include_inside("node_modules/other")
    assert PatternMatcher(["a", "!**/x"]).may_include_inside("a/b/c")
    assert not PatternMatcher(["a", "!b/x"]).may_include_inside("a")


def test_reversed_range_matches_nothing() -> None:
    assert not PatternMatcher(["a[z-a]"]).matches("ab")
    assert PatternMatcher(["a[^z-a]"]).matches("ab")
    assert PatternMatcher(["a[z-ab]"]).matches("ab")


# -- backtracking (found by fuzzing, third review) -------------------------------------

_PIECES = ["[^/]*", "[^/]", "(?:.*/)?", ".*", "a", "b", "/", "\\.", "[ab]", "[^a]", "(?!)"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=7), st.text("ab/.\n", max_size=10))
def test_the_automaton_matches_as_the_regex(pieces: list[str], path: str) -> None:
    from dockyard.core.pathmatch import _automaton

    expected = re.fullmatch("".join(pieces), path) is not None
    assert _automaton(pieces).fullmatch(path) is expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="ab*?/[]^-\\!.", max_size=8), min_size=1, max_size=3),
    st.text("ab/.\n", max_size=10),
)
def test_matchers_agree_whichever_engine(patterns: list[str], path: str) -> None:
    from dockyard.core import pathmatch

    try:
        with_re = PatternMatcher(patterns)
    except PatternError:
        return
    saved = pathmatch._AUTOMATON_FROM
    pathmatch._AUTOMATON_FROM = 0
    try:
        with_automaton = PatternMatcher(patterns)
    finally:
        pathmatch._AUTOMATON_FROM = saved
    assert with_re.matches(path) == with_automaton.matches(path)
    assert with_re.may_include_inside(path) == with_automaton.may_include_inside(path)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("**/" * 30 + "a", "x/" * 200 + "b"),  # hours with re
        ("*a*a*a*a*a*a*a*a*b", "a" * 250),
        ("a/**/b/**/c/**/d/**/e", "a/" + "b/c/d/" * 200 + "x"),
        ("!" + "*a" * 8 + "*b/x", "a" * 250),  # a segment regex (may_include_inside)
    ],
)
def test_patterns_do_not_backtrack(pattern: str, path: str) -> None:
    started = time.perf_counter()
    matcher = PatternMatcher(["*", pattern])
    assert not PatternMatcher([pattern.lstrip("!")]).matches(path)
    matcher.may_include_inside(path)
    assert time.perf_counter() - started < 1.0
