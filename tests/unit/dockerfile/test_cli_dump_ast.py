from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cli.main import main

DATA = Path(__file__).parents[2] / "data" / "buildkit" / "parser"


def test_dump_ast_prints_parser_dump(capsys: pytest.CaptureFixture[str]) -> None:
    case = DATA / "testfiles" / "health"
    assert main(["debug", "dump-ast", str(case / "Dockerfile")]) == 0
    assert capsys.readouterr().out == (case / "result").read_text(encoding="utf-8")


def test_dump_ast_with_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["debug", "dump-ast", "--lines", str(DATA / "testfile-line" / "Dockerfile")]) == 0
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == ["5-5", "11-12", "17-31"]
    assert "Empty continuation line" in captured.err


def test_dump_ast_reports_parse_errors_with_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM busybox\n\nENV PATH\n")
    assert main(["debug", "dump-ast", str(dockerfile)]) == 1
    assert f"{dockerfile}:3: ENV must have two arguments" in capsys.readouterr().err


def test_dump_ast_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["debug", "dump-ast", str(tmp_path / "nope")]) == 1
    assert "no such file" in capsys.readouterr().err
