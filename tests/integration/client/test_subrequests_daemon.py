"""Build subrequests (``--call=outline|targets|check``) on a real ``dockyardd``: the
frontend's answer travels back in the Solve response (``result.json`` / ``result.txt``,
kept as written), through ``dockyard --addr`` and the Python client alike; nothing is
built."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.client import BuildOptions, Client
from dockyard.core import Platform, UsageError
from dockyard.dockerfile import LintResults, lint, list_targets, outline_target, parse_dockerfile
from tests.integration.daemon.conftest import DaemonProcess

DOCKERFILE = """\
# VERSION the release
ARG VERSION=1.0
FROM busybox AS base
# FLAVOUR what to build
ARG FLAVOUR=small
RUN --mount=type=secret,id=token exit 3

# app the application
FROM base AS app
RUN --mount=type=ssh,id=git,required=true exit 4
LABEL version=$VERSION
"""


def address(daemon: DaemonProcess) -> str:
    return f"unix://{daemon.socket}"


def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def test_subrequests_through_the_cli(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(tmp_path)
    code = await cli("--addr", address(running), "build", "--call=targets", str(ctx))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == (
        "TARGET        DESCRIPTION\nbase          \napp (default) the application\n"
    )
    code = await cli(
        "--addr", address(running), "build", "--call=outline,format=json",
        "--build-arg", "FLAVOUR=large", str(ctx),
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["name"] == "app"
    assert document["description"] == "the application"
    assert [(a["name"], a["value"]) for a in document["args"]] == [("FLAVOUR", "large")]
    assert [(s["name"], s.get("required", False)) for s in document["secrets"]] == [
        ("token", False)
    ]
    assert [(s["name"], s.get("required", False)) for s in document["ssh"]] == [("git", True)]
    assert "exit 3" not in captured.err  # no step ran

    code = await cli(
        "--addr", address(running), "build", "--call=outline", "--target", "nope", str(ctx)
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "target stage 'nope' could not be found" in captured.err


async def test_the_client_gets_the_frontends_documents(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = context(tmp_path)
    dockerfile = parse_dockerfile(DOCKERFILE)
    async with Client.connect(address(running)) as client:
        targets = await client.build(BuildOptions(context=str(ctx), subrequest="targets"))
        outline = await client.build(
            BuildOptions(context=str(ctx), subrequest="outline", target="base")
        )
        with pytest.raises(UsageError):
            await client.build(BuildOptions(context=str(ctx), subrequest="outline", target="x"))
    assert not targets.built
    assert targets.image_id is None
    # byte for byte what the frontend wrote (the daemon's JSON decoding leaves it alone)
    assert targets.call_output("json") == list_targets(dockerfile).to_json()
    assert targets.call_output("text") == list_targets(dockerfile).to_text()
    # (the platform does not matter to this outline: no platform argument is used)
    expected = outline_target(
        dockerfile, target="base", build_platform=Platform.parse("linux/amd64")
    )
    assert outline.call_output("json") == expected.to_json()
    assert outline.metadata["version"] == "1.0.0"


CHECKED = """\
# check=skip=JSONArgsRecommended
FROM busybox as base
RUN exit 3
MAINTAINER someone
"""


async def test_check_as_json_through_the_cli(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CHECKED)
    code = await cli("--addr", address(running), "build", "--call=check,format=json", str(ctx))
    captured = capsys.readouterr()
    assert code == 1, captured.err  # warnings: exit 1, as buildx
    # byte for byte the frontend's document, and a newline
    dockerfile = parse_dockerfile(CHECKED)
    expected = LintResults.from_warnings(
        lint(dockerfile).warnings, filename="Dockerfile", source=CHECKED.encode()
    )
    assert captured.out == expected.to_json() + "\n"
    assert [w["ruleName"] for w in json.loads(captured.out)["warnings"]] == [
        "FromAsCasing",
        "MaintainerDeprecated",
    ]
    assert "exit 3" not in captured.err  # no step ran
    assert "Check complete" not in captured.err

    # a failed check: the document, then the error; the text form as a failed build
    (ctx / "Dockerfile").write_text("# check=error=true\nFROM busybox\nCMD run\n")
    code = await cli("--addr", address(running), "build", "--call=check,format=json", str(ctx))
    captured = capsys.readouterr()
    assert code == 1
    failure = json.loads(captured.out)["buildError"]
    assert failure == {
        "message": "lint violation found for rules: JSONArgsRecommended",
        "location": {"ranges": [{"start": {"line": 3}, "end": {"line": 3}}]},
    }
    assert captured.err.endswith(
        "ERROR: Dockerfile:3: lint violation found for rules: JSONArgsRecommended\n"
    )
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --bogus=1 true\n")
    code = await cli("--addr", address(running), "build", "--check", str(ctx))
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert ">>> RUN --bogus=1 true" in captured.err  # the Dockerfile travelled along
    assert "ERROR: failed to solve: Dockerfile:2: unknown flag --bogus for RUN" in captured.err

    (ctx / "Dockerfile").write_text('FROM busybox\nCMD ["true"]\n')
    code = await cli("--addr", address(running), "build", "--call=check,format=json", str(ctx))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["warnings"] is None
