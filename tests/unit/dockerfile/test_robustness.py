"""Arbitrary input never escapes as anything but FrontendError (no bare tracebacks)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import FrontendError, PatternError, PatternMatcher
from dockyard.dockerfile import Expander, ShellLex, lint, parse_dockerfile

WORDS = [
    "FROM",
    "from",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "ONBUILD",
    "HEALTHCHECK",
    "CMD",
    "SHELL",
    "LABEL",
    "EXPOSE",
    "WORKDIR",
    "STOPSIGNAL",
    "AS",
    "--mount=type=cache,target=/x",
    "--mount=",
    "--from=a",
    "--chmod=u+x",
    "--network=",
    "--interval=",
    "--",
    "<<EOF",
    "<<-'E'",
    "EOF",
    "E",
    "[",
    "]",
    '["a",',
    '"b"]',
    "${A:-x}",
    "$B",
    "${",
    "}",
    "\\",
    "`",
    "#",
    "# escape=`",
    "=",
    "a=b",
    "'",
    '"',
    "NONE",
    "x",
    "/y",
    "\t",
]


def _check_located(exc: FrontendError) -> None:
    if not str(exc).startswith("Dockerfile:"):
        raise AssertionError(f"error without a Dockerfile location: {exc}")


lines = st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join)
dockerfiles = st.lists(lines, min_size=1, max_size=12).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(dockerfiles)
def test_dockerfile_parsing_fails_only_with_frontend_errors(text: str) -> None:
    try:
        dockerfile = parse_dockerfile(text)
    except FrontendError as exc:
        _check_located(exc)
        return
    lint(dockerfile)
    expander = Expander({"A": "1"}, escape=dockerfile.escape)
    for stage in dockerfile.stages:
        for command in stage.commands:
            try:
                command.expand(expander)
            except FrontendError as exc:
                _check_located(exc)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="${}:-+?#%/*\\'\"ab `", max_size=20))
def test_lexer_fails_only_with_frontend_errors(word: str) -> None:
    for escape in ("\\", "`"):
        try:
            ShellLex(escape).process(word, {"a": "ab*", "b": ""})
        except FrontendError:
            pass


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.text(alphabet="ab*?[]^-\\!/.", max_size=8), max_size=4), st.text("ab/.", max_size=8)
)
def test_patterns_fail_only_with_pattern_errors(patterns: list[str], path: str) -> None:
    try:
        matcher = PatternMatcher(patterns)
    except PatternError:
        return
    matcher.matches(path)
    matcher.may_include_inside(path)
