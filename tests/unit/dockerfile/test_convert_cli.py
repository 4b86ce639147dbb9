"""``dockyard debug dump-llb --dockerfile``: the converted target as JSON lines; build
checks on stderr; mistakes are ``Dockerfile:LINE`` errors, never tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.cli.main import main

DOCKERFILE = """\
FROM alpine:3.19 AS build
ARG VERSION=1
RUN echo $VERSION > /version
COPY src/ /src/

FROM scratch
COPY --from=build /version /
CMD echo done
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["debug", "dump-llb", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / ".dockerignore").write_text("*.log\n!keep.log\n")
    return tmp_path


def ops(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_dump_dockerfile(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--dockerfile", str(project / "Dockerfile"))
    assert code == 0
    assert "JSONArgsRecommended" in err
    assert err.startswith("WARNING: ")
    records = ops(out)
    names = [r["OpMetadata"].get("description", {}).get("llb.customname") for r in records]  # type: ignore[attr-defined]
    assert names == [
        "[build 1/3] FROM docker.io/library/alpine:3.19",
        "[build 2/3] RUN echo 1 > /version",
        "[internal] load build context",
        "[build 3/3] COPY src/ /src/",
        "[stage-1 1/1] COPY --from=build /version /",
        None,
    ]


def test_target_build_args_platform_and_dockerignore(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "--dockerfile",
        str(project / "Dockerfile"),
        "--target",
        "build",
        "--build-arg",
        "VERSION=2",
        "--platform",
        "linux/arm64",
    )
    assert code == 0
    text = json.dumps(ops(out))
    assert "VERSION=2" in text
    assert '"Architecture": "arm64"' in text
    assert "local.excludepatterns" in text
    assert "*.log" in text
    assert "!keep.log" in text
    assert '"local.followpaths": "[\\"src\\"]"' in text


def test_context_option_chooses_the_dockerignore(
    project: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path_factory.mktemp("ctx")
    code, out, _ = run(
        capsys,
        "--dockerfile",
        str(project / "Dockerfile"),
        "--target",
        "0",
        "--context",
        str(other),
    )
    assert code == 0
    assert "excludepatterns" not in out


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--dockerfile", "{dir}/missing"], None, "no such file"),
        (
            ["--dockerfile", "{file}"],
            "FROM alpine\nRUN --mount=type=nope true\n",
            "Dockerfile:2: RUN",
        ),
        (
            ["--dockerfile", "{file}", "--target", "nope"],
            "FROM alpine AS base\n",
            "'nope' could not be found",
        ),
        (["--dockerfile", "{file}", "--build-arg", "NOEQUALS"], "FROM alpine\n", "KEY=VALUE"),
        (["--dockerfile", "{file}", "--platform", "linux/"], "FROM alpine\n", "--platform"),
        (["--dockerfile", "{file}", "{file}"], "FROM alpine\n", "not both"),
        (["{file}", "--target", "x"], "", "apply to --dockerfile only"),
        (
            ["--dockerfile", "{file}"],
            "# syntax=example.com/frontend\nFROM alpine\n",
            "Dockerfile:1: unsupported syntax directive",
        ),
    ],
)
def test_mistakes_are_clear_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    content: str | None,
    message: str,
) -> None:
    file = tmp_path / "Dockerfile"
    if content is not None:
        file.write_text(content)
    code, out, err = run(capsys, *(a.format(file=file, dir=tmp_path) for a in args))
    assert code in (1, 2)
    assert out == ""
    assert message in err
    assert "Traceback" not in err
