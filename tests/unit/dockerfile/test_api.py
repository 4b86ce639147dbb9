"""The typed-Dockerfile API the converter builds on."""

from __future__ import annotations

import pytest

from dockyard.core import FrontendError, NotFoundError, SourceLocation, SourceRange
from dockyard.dockerfile import (
    CopyInstruction,
    Expander,
    FromInstruction,
    OnbuildInstruction,
    RunInstruction,
    parse_dockerfile,
    parse_onbuild_trigger,
)

DOCKERFILE = """\
# syntax=docker/dockerfile:1
# check=skip=JSONArgsRecommended
ARG BASE=alpine
FROM $BASE AS Build
RUN --mount=type=cache,target=/c make
FROM build AS test
FROM scratch
COPY --from=build /out /out
"""


def test_stages_and_lookup() -> None:
    df = parse_dockerfile(DOCKERFILE)
    assert [s.name for s in df.stages] == ["build", "test", None]
    assert df.stage("BUILD").index == 0
    assert df.stage("1").name == "test"
    assert df.stage("2").base == "scratch"
    with pytest.raises(NotFoundError, match="did you mean build"):
        df.stage("buidl")
    with pytest.raises(NotFoundError, match="invalid stage index 3"):
        df.stage("3")
    assert df.syntax is not None
    assert df.syntax.value == "docker/dockerfile:1"
    assert df.check.skip == {"JSONArgsRecommended"}
    assert isinstance(df.stages[0].from_, FromInstruction)
    assert str(df.stages[0].location) == "Dockerfile:4"


def test_instruction_basics() -> None:
    df = parse_dockerfile(DOCKERFILE)
    run = df.stages[0].commands[0]
    assert isinstance(run, RunInstruction)
    assert run.keyword == "RUN"
    assert run.line == 5
    assert str(run) == "RUN --mount=type=cache,target=/c make"
    assert run.expand(Expander({})) == run
    copy = df.stages[2].commands[0]
    assert isinstance(copy, CopyInstruction)
    assert copy.from_stage == "build"


def test_expander_records_names_in_first_seen_order() -> None:
    expander = Expander({"A": "1"})
    assert expander.word("$Z $A $Y") == " 1 "
    assert expander.words("$A $X") == ("1",)
    assert expander.raw("'$A' \"$W\"") == "'1' \"\""
    assert list(expander.unmatched) == ["Y", "Z", "X", "W"]
    assert list(expander.matched) == ["A"]


def test_expansion_does_not_touch_exec_form_or_shell_text() -> None:
    df = parse_dockerfile('FROM scratch\nRUN echo $HOME\nCMD ["$HOME"]\n')
    run, cmd = df.stages[0].commands
    expander = Expander({"HOME": "/root"})
    assert run.expand(expander) == run
    assert cmd.expand(expander) == cmd
    assert not expander.unmatched


def test_onbuild_trigger_from_image_config() -> None:
    df = parse_dockerfile("FROM scratch\nONBUILD COPY <<EOF /x\nhello\nEOF\n")
    onbuild = df.stages[0].commands[0]
    assert isinstance(onbuild, OnbuildInstruction)
    child = parse_dockerfile("FROM base\n")
    trigger = parse_onbuild_trigger(onbuild.expression, location=child.stages[0].location)
    assert isinstance(trigger, CopyInstruction)
    assert trigger.contents[0].data == "hello\n"
    assert str(trigger.location) == "Dockerfile:1"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("RUN a\nRUN b", "single expression"),
        ("FROM x", "isn't allowed as an ONBUILD trigger"),
        ("COPY --frm=x a b", "unknown flag --frm"),
        ("RUN <<EOF", "unterminated heredoc"),
    ],
)
def test_onbuild_trigger_errors(expression: str, message: str) -> None:
    location = SourceLocation(filename="Dockerfile", ranges=(SourceRange(3, 3),))
    with pytest.raises(FrontendError, match=message) as info:
        parse_onbuild_trigger(expression, location=location)
    assert str(info.value).startswith("Dockerfile:3: ")
