""".dockerignore reading and the choice between the Dockerfile-specific file and the
context's one."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import FrontendError, NotFoundError
from dockyard.dockerfile import (
    dockerignore_candidates,
    load_dockerignore,
    parse_dockerignore,
    read_dockerignore,
)

CONTENT = b"""\xef\xbb\xbf# comment
node_modules
  *.log  \r

!important.log
# another comment
/abs/path
./rel/path
dir//sub/../x
!  ./keep
 # not a comment (leading blank)
"""


def test_read_dockerignore() -> None:
    assert read_dockerignore(CONTENT) == (
        "node_modules",
        "*.log",
        "!important.log",
        "abs/path",
        "rel/path",
        "dir/x",
        "!keep",
        "# not a comment (leading blank)",
    )
    parsed = parse_dockerignore(CONTENT)
    assert parsed.lines == (2, 3, 5, 7, 8, 9, 10, 11)


def test_matcher_from_ignore_file() -> None:
    matcher = parse_dockerignore(CONTENT).matcher()
    assert matcher.matches("node_modules/pkg/index.js")
    assert matcher.matches("debug.log")
    assert not matcher.matches("important.log")
    assert matcher.matches("abs/path")
    assert not matcher.matches("src/main.py")


def test_bad_pattern_reports_its_line() -> None:
    ignore = parse_dockerignore("ok\n# c\nbad[\n", filename="app.Dockerfile.dockerignore")
    with pytest.raises(FrontendError) as info:
        ignore.matcher()
    assert str(info.value).startswith("app.Dockerfile.dockerignore:3: invalid pattern 'bad['")


def test_lone_exclamation_is_an_error() -> None:
    with pytest.raises(FrontendError, match=r"^\.dockerignore:1: illegal exclusion pattern"):
        parse_dockerignore("!\n").matcher()


def test_candidates() -> None:
    assert dockerignore_candidates("Dockerfile") == ("Dockerfile.dockerignore", ".dockerignore")
    assert dockerignore_candidates("build/app.Dockerfile") == (
        "build/app.Dockerfile.dockerignore",
        ".dockerignore",
    )


def test_load_prefers_dockerfile_specific_file(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "build").mkdir(parents=True)
    dockerfile = context / "build" / "app.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert load_dockerignore(context, dockerfile).patterns == ()
    (context / ".dockerignore").write_text("from-context\n")
    assert load_dockerignore(context, dockerfile).patterns == ("from-context",)
    assert load_dockerignore(context).patterns == ("from-context",)
    (context / "build" / "app.Dockerfile.dockerignore").write_text("specific\n")
    loaded = load_dockerignore(context, dockerfile)
    assert loaded.patterns == ("specific",)
    assert loaded.filename == "app.Dockerfile.dockerignore"


def test_load_rejects_a_directory(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").mkdir()
    with pytest.raises(NotFoundError, match="is a directory"):
        load_dockerignore(tmp_path)
