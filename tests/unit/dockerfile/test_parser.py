"""Parser golden cases (tests/data/dockerfile/parser/<case>/{Dockerfile,result,details})
and parser behaviour not visible in the dump."""

from __future__ import annotations

import json

import pytest

from dockyard.core import FrontendError
from dockyard.dockerfile import Ast, find_directive, parse_ast, parse_heredoc

from ._golden import DATA

PARSER = DATA / "parser"
CASES = sorted(p.name for p in PARSER.iterdir() if p.is_dir())


def _details(ast: Ast) -> str:
    out = ["lines " + " ".join(f"{n.start_line}-{n.end_line}" for n in ast.nodes)]
    for index, node in enumerate(ast.nodes):
        for doc in node.heredocs:
            out.append(
                f"heredoc {index} name={json.dumps(doc.name)} fd={doc.fd} "
                f"expand={str(doc.expand).lower()} chomp={str(doc.chomp).lower()} "
                f"content={json.dumps(doc.content)}"
            )
    out.extend(f"warning {w.line} {json.dumps(w.message)}" for w in ast.warnings)
    out.append(f"escape {ast.escape}")
    out.extend(f"directive {d.line} {d.name}={d.value}" for d in ast.directives)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_parser_case(case: str) -> None:
    directory = PARSER / case
    ast = parse_ast((directory / "Dockerfile").read_bytes())
    assert ast.dump() == (directory / "result").read_text(encoding="utf-8")
    assert _details(ast) == (directory / "details").read_text(encoding="utf-8")


def test_heredoc_text_is_chomped_for_dash_form() -> None:
    ast = parse_ast("FROM a\nRUN <<-EOT\n\t\tx\n\ty\n\tEOT\n")
    (doc,) = ast.nodes[1].heredocs
    assert doc.content == "\t\tx\n\ty\n"
    assert doc.text == "x\ny\n"


def test_heredoc_at_end_of_file_without_newline() -> None:
    ast = parse_ast("FROM a\nCOPY <<EOF /x\nlast line\nEOF")
    assert ast.nodes[1].heredocs[0].content == "last line\n"


@pytest.mark.parametrize(
    ("word", "name", "expand", "chomp", "fd"),
    [
        ("<<EOF", "EOF", True, False, 0),
        ("<<-EOF", "EOF", True, True, 0),
        ("<<'EOF'", "EOF", False, False, 0),
        ('<<"EOF"', "EOF", False, False, 0),
        ("<<E'O'F", "EOF", False, False, 0),
        ("3<<EOF", "EOF", True, False, 3),
    ],
)
def test_parse_heredoc(word: str, name: str, expand: bool, chomp: bool, fd: int) -> None:
    doc = parse_heredoc(word)
    assert doc is not None
    assert (doc.name, doc.expand, doc.chomp, doc.fd) == (name, expand, chomp, fd)


@pytest.mark.parametrize("word", ["<<", "<<<EOF", "EOF", "x<<EOF", "<<a b"])
def test_not_a_heredoc(word: str) -> None:
    assert parse_heredoc(word) is None


def test_invalid_utf8_is_kept_and_quoted() -> None:
    ast = parse_ast(b"FROM a\nRUN echo \xff\n")
    assert ast.dump().splitlines()[1] == '(run "echo \\xff")'


def test_find_directive_forms() -> None:
    assert find_directive("#!/usr/bin/env x\n# syntax=a/b\nFROM x", "syntax") is not None
    syntax = find_directive("// syntax=a/b:1\nFROM x", "syntax", any_format=True)
    assert syntax is not None
    assert syntax.value == "a/b:1"
    assert find_directive("// syntax=a/b:1\nFROM x", "syntax") is None
    json_form = find_directive('{"syntax": "a/b"}', "syntax", any_format=True)
    assert json_form is not None
    assert json_form.value == "a/b"
    assert find_directive("FROM x\n# syntax=a/b\n", "syntax") is None


def test_directive_error_location() -> None:
    with pytest.raises(FrontendError, match=r"^Dockerfile:2: only one escape parser directive"):
        parse_ast("# escape=`\n# escape=\\\nFROM x\n")
