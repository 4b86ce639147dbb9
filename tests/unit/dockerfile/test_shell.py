"""Shell-word expansion: the forms BuildKit's tables do not cover
(tests/data/dockerfile/shell.txt), and lexer options."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import FrontendError
from dockyard.dockerfile import ShellLex, expand_word, expand_words
from dockyard.dockerfile._shell import _Run

TABLE = Path(__file__).parents[2] / "data" / "dockerfile" / "shell.txt"
ENV = {"FILE": "archive.tar.gz", "PATHX": "/usr/local/bin:/usr/bin", "EMPTY": "", "STAR": "a*b"}


def _rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        escape, source, expected = (part.strip() for part in line.split("|", 2))
        rows.append((escape, source, expected))
    return rows


@pytest.mark.parametrize(("escape", "source", "expected"), _rows())
def test_expansion_table(escape: str, source: str, expected: str) -> None:
    lex = ShellLex(escape)
    if expected == "error":
        with pytest.raises(FrontendError, match="failed to process"):
            lex.process(source, ENV)
    else:
        assert lex.process(source, ENV).value == expected


def test_matched_and_unmatched_names() -> None:
    result = ShellLex().process("$FILE ${MISSING:-x} ${EMPTY} $1", ENV)
    assert result.matched == {"FILE", "EMPTY"}
    assert result.unmatched == {"MISSING", "1"}


def test_skip_unset_env_keeps_references() -> None:
    lex = ShellLex(skip_unset_env=True)
    assert lex.process("$FILE $NOPE ${NOPE} ${NOPE:-d} ${NOPE/a/b}", ENV).value == (
        "archive.tar.gz $NOPE ${NOPE} ${NOPE:-d} ${NOPE/a/b}"
    )


def test_raw_quotes_and_escapes() -> None:
    lex = ShellLex(raw_quotes=True, raw_escapes=True)
    assert lex.process('\'a b\' "c\\"d" e\\ f', {}).words == ("'a b'", '"c\\"d"', "e\\ f")


def test_skip_process_quotes_for_heredoc_bodies() -> None:
    lex = ShellLex(skip_process_quotes=True)
    assert lex.process("echo '$FILE' \"$FILE\"\n", ENV).value == (
        "echo 'archive.tar.gz' \"archive.tar.gz\"\n"
    )


def test_helpers() -> None:
    assert expand_word("${FILE%%.*}", ENV) == "archive"
    assert expand_words("a $PATHX 'b c'", {"PATHX": "x  y"}) == ("a", "x", "y", "b c")
    with pytest.raises(ValueError, match="escape"):
        ShellLex("/")


_ALPHABET = "ab/.-_=:*\t \xa0\u3000$'\"\\`{}"


@given(word=st.text(alphabet=_ALPHABET, max_size=12), escape=st.sampled_from("\\`"))
@settings(max_examples=400, deadline=None)
def test_words_with_nothing_to_expand_take_the_short_way_to_the_same_result(
    word: str, escape: str
) -> None:
    """``process`` returns a word without ``$``, quotes or escapes as it is (split at
    blanks) without the character loop: the same result as the loop's."""
    for lex in (ShellLex(escape), ShellLex(escape, skip_process_quotes=True)):
        env = {"a": "x y"}
        try:
            got = lex.process(word, env)
        except FrontendError:
            continue
        run = _Run(lex, word, env)
        value, words = run.process_stop_on("", lex.raw_escapes)
        assert (got.value, got.words) == (value, tuple(words))
        assert (got.matched, got.unmatched) == (frozenset(run.matched), frozenset(run.unmatched))


@pytest.mark.parametrize(
    "word",
    [
        "${a:-" * 10_000 + "x" + "}" * 10_000,
        '"${a:-' * 10_000 + "x",
        "${a:+${b#${c%" * 3_000,
    ],
)
def test_deep_nesting_is_an_error_not_a_recursion_error(word: str) -> None:
    with pytest.raises(FrontendError, match="nested more than 100 deep"):
        ShellLex().process(word, {"a": "1", "b": ""})


def test_nesting_up_to_the_limit_expands() -> None:
    word = "${a:-" * 100 + "x" + "}" * 100
    assert ShellLex().process(word, {}).value == "x"


def test_expansion_output_is_bounded() -> None:
    big = "x" * 600_000
    assert len(ShellLex().process("$A", {"A": big}).value) == 600_000
    with pytest.raises(FrontendError, match="substitutions produce more than 1048576 characters"):
        ShellLex().process("$A$A", {"A": big})
    with pytest.raises(FrontendError, match="more than 1048576"):
        ShellLex().process("$B" * 600_000, {"B": "yy"})


async def test_doubling_a_variable_fails_with_its_line() -> None:
    from .test_convert_stages import conv

    # each line doubles A: forty of them asked for 10 TiB
    text = "FROM busybox\nENV A=xxxxxxxxxx\n" + "ENV A=$A$A\n" * 40 + "RUN echo $A\n"
    with pytest.raises(FrontendError, match=r"^Dockerfile:19: failed to process \"\$A\$A\""):
        await conv(text)
