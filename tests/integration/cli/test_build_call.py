"""``dockyard build --call=targets|outline|check[,format=json]`` on the embedded engine:
the answer on stdout (exit 0; a check with warnings or a failure exits 1, in JSON as in
text), and nothing built or pulled (the base image does not exist anywhere and a step
would fail)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main

DOCKERFILE = """\
# REGISTRY where the base comes from
ARG REGISTRY=registry.invalid
# deps fetch the dependencies
FROM ${REGISTRY}/base:1 AS deps
# MIRROR the package mirror
ARG MIRROR=https://mirror.invalid
RUN --mount=type=secret,id=netrc,required=true exit 1

FROM deps AS app
ARG DEBUG
RUN --mount=type=ssh exit 1
"""


def call(tmp_path: Path, *args: str) -> int:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    state = tmp_path / "state"
    return main(["build", "--state-dir", str(state), "--progress", "plain", *args, str(ctx)])


def test_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert call(tmp_path, "--call=targets") == 0
    captured = capsys.readouterr()
    assert captured.out == (
        "TARGET        DESCRIPTION\ndeps          fetch the dependencies\napp (default) \n"
    )
    assert "load build definition from Dockerfile" in captured.err  # the progress
    assert "exit 1" not in captured.err  # no step ran
    assert "registry.invalid" not in captured.err  # no base image was looked up

    assert call(tmp_path, "--call=targets,format=json") == 0
    document = json.loads(capsys.readouterr().out)
    assert [t.get("name") for t in document["targets"]] == ["deps", "app"]
    assert document["targets"][1]["default"] is True
    assert document["targets"][0]["base"] == "${REGISTRY}/base:1"
    assert base64.b64decode(document["sources"][0]).decode() == DOCKERFILE


def test_outline_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = call(tmp_path, "--call=outline,format=json", "--build-arg", "DEBUG=1")
    out = capsys.readouterr().out
    assert code == 0
    document = json.loads(out)
    assert out.endswith("}\n")
    assert document["name"] == "app"
    assert [(a["name"], a.get("value"), a.get("description")) for a in document["args"]] == [
        ("REGISTRY", "registry.invalid", "where the base comes from"),
        ("MIRROR", "https://mirror.invalid", "the package mirror"),
        ("DEBUG", "1", None),
    ]
    assert document["secrets"] == [
        {
            "name": "netrc",
            "required": True,
            "location": {"ranges": [{"start": {"line": 7}, "end": {"line": 7}}]},
        }
    ]
    assert [s["name"] for s in document["ssh"]] == ["default"]


def test_outline_as_text_of_another_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert call(tmp_path, "--call=outline", "--target", "deps") == 0
    assert capsys.readouterr().out == (
        "TARGET:      deps\n"
        "DESCRIPTION: fetch the dependencies\n"
        "\n"
        "BUILD ARG   VALUE                    DESCRIPTION\n"
        "REGISTRY    registry.invalid         where the base comes from\n"
        "MIRROR      https://mirror.invalid   the package mirror\n"
        "\n"
        "SECRET   REQUIRED\n"
        "netrc    true\n"
        "\n"
    )


def test_an_unknown_target_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert call(tmp_path, "--call=outline", "--target", "ap") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ERROR: target stage 'ap' could not be found (did you mean app?)" in captured.err
    assert "failed to solve" not in captured.err


CHECKED = """\
FROM registry.invalid/base:1 as base
RUN exit 1
CMD run
"""


def check(tmp_path: Path, dockerfile: str, *args: str) -> int:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    state = tmp_path / "state"
    return main(["build", "--state-dir", str(state), "--progress", "plain", *args, str(ctx)])


def test_check_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, CHECKED, "--call=check,format=json") == 1  # warnings: as buildx
    captured = capsys.readouterr()
    assert captured.out.endswith("}\n")
    document = json.loads(captured.out)
    assert [(w["ruleName"], w["detail"]) for w in document["warnings"]] == [
        ("FromAsCasing", "'as' and 'FROM' keywords' casing do not match"),
        (
            "JSONArgsRecommended",
            "JSON arguments recommended for CMD to prevent unintended behavior related to "
            "OS signals",
        ),
    ]
    assert document["warnings"][1]["location"] == {
        "ranges": [{"start": {"line": 3}, "end": {"line": 3}}]
    }
    (source,) = document["sources"]
    assert source["filename"] == "Dockerfile"
    assert source["language"] == "Dockerfile"
    assert base64.b64decode(source["data"]).decode() == CHECKED
    assert "buildError" not in document
    assert "load build definition from Dockerfile" in captured.err  # the progress
    assert "exit 1" not in captured.err  # no step ran
    assert "registry.invalid" not in captured.err  # no base image was looked up
    assert "Check complete" not in captured.err
    assert "FromAsCasing" not in captured.err  # the warnings are in the document

    assert check(tmp_path, 'FROM scratch\nCMD ["run"]\n', "--call=check,format=json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["warnings"] is None


def test_check_as_json_of_a_failed_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = check(tmp_path, "# check=error=true\n" + CHECKED, "--call", "check,format=json")
    captured = capsys.readouterr()
    assert code == 1
    document = json.loads(captured.out)
    assert len(document["warnings"]) == 2
    assert document["buildError"] == {
        "message": "lint violation found for rules: FromAsCasing, JSONArgsRecommended",
        "location": {"ranges": [{"start": {"line": 2}, "end": {"line": 2}}]},
    }
    assert captured.err.endswith(
        "ERROR: Dockerfile:2: lint violation found for rules: FromAsCasing, JSONArgsRecommended\n"
    )

    assert check(tmp_path, "FROM scratch\nBOGUS x\n", "--call=check,format=json") == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["warnings"] is None
    assert document["buildError"]["message"] == "unknown instruction: BOGUS"
    assert "ERROR: Dockerfile:2: unknown instruction: BOGUS" in captured.err


def test_check_as_text_is_unchanged_by_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, CHECKED, "--check") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Check complete, 2 warnings have been found!" in captured.err
    assert check(tmp_path, "# check=error=true\n" + CHECKED, "--call=check") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ERROR: failed to solve: Dockerfile:2: lint violation found for rules" in captured.err
    assert "Check complete" not in captured.err
