"""``dockyard build --call=targets|outline[,format=json]`` on the embedded engine: the
answer on stdout, exit 0, and nothing built or pulled (the base image does not exist
anywhere and a step would fail)."""

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
