"""BuildKit's own parser and shell-lexer test data (tests/data/buildkit, Apache-2.0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import FrontendError
from dockyard.dockerfile import ShellLex, parse_ast

DATA = Path(__file__).parents[2] / "data" / "buildkit"
PARSER = DATA / "parser"
SHELL = DATA / "shell"

POSITIVE = sorted(p.name for p in (PARSER / "testfiles").iterdir())
NEGATIVE = sorted(p.name for p in (PARSER / "testfiles-negative").iterdir())


def test_data_is_present() -> None:
    assert len(POSITIVE) == 33
    assert len(NEGATIVE) == 4
    assert (DATA / "LICENSE").is_file()


@pytest.mark.parametrize("case", POSITIVE)
def test_parser_dump_matches_result(case: str) -> None:
    directory = PARSER / "testfiles" / case
    ast = parse_ast((directory / "Dockerfile").read_bytes())
    assert ast.dump() == (directory / "result").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", NEGATIVE)
def test_parser_rejects_negative_case(case: str) -> None:
    with pytest.raises(FrontendError) as info:
        parse_ast((PARSER / "testfiles-negative" / case / "Dockerfile").read_bytes())
    assert str(info.value).startswith("Dockerfile:")


def test_line_ranges() -> None:
    ast = parse_ast((PARSER / "testfile-line" / "Dockerfile").read_bytes())
    assert (ast.start_line, ast.end_line) == (5, 31)
    assert [(n.start_line, n.end_line) for n in ast.nodes] == [(5, 5), (11, 12), (17, 31)]


def _env_var_rows() -> list[tuple[str, str]]:
    rows = []
    for line in (SHELL / "envVarTest").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        platform, source, expected = line.split("|", 2)
        if platform.strip() in ("A", "U"):
            rows.append((source.strip(), expected.strip()))
    return rows


ENV_VAR_ROWS = _env_var_rows()
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def test_env_var_table_is_complete() -> None:
    assert len(ENV_VAR_ROWS) == 228


@pytest.mark.parametrize(("source", "expected"), ENV_VAR_ROWS)
def test_env_var_expansion(source: str, expected: str) -> None:
    lex = ShellLex("\\")
    if expected == "error":
        with pytest.raises(FrontendError, match="failed to process"):
            lex.process(source, ENV)
    else:
        assert lex.process(source, ENV).value == expected


def _words_rows() -> list[tuple[str, dict[str, str], list[str]]]:
    rows = []
    env: dict[str, str] = {}
    for line in (SHELL / "wordsTest").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[4:].partition("=")
            env[key] = value
            continue
        source, expected = line.split("|", 1)
        # As BuildKit's test: input trimmed, expected only left-trimmed.
        rows.append((source.strip(), dict(env), expected.lstrip(" ").split(",")))
    return rows


WORDS_ROWS = _words_rows()


def test_words_table_is_complete() -> None:
    assert len(WORDS_ROWS) == 24


@pytest.mark.parametrize(("source", "env", "expected"), WORDS_ROWS)
def test_word_splitting(source: str, env: dict[str, str], expected: list[str]) -> None:
    lex = ShellLex("\\")
    if expected == ["error"]:
        with pytest.raises(FrontendError):
            lex.process(source, env)
    else:
        assert list(lex.process(source, env).words) == expected
