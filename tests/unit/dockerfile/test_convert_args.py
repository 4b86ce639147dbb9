"""ARG / ENV expansion timing, platform arguments, proxy arguments, SOURCE_DATE_EPOCH,
``# syntax=`` and ``# check=`` handling of the converter."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.core import FrontendError, Platform, UsageError
from dockyard.dockerfile import ConvertOptions, ConvertResult, convert, parse_dockerfile

from .test_convert_golden import FakeResolver

AMD64 = Platform.parse("linux/amd64")


async def conv(text: str, **options: Any) -> ConvertResult:
    options.setdefault("build_platform", AMD64)
    return await convert(parse_dockerfile(text), ConvertOptions(**options), FakeResolver())


def execs(result: ConvertResult) -> list[Any]:
    return [op.op.exec for op in result.definition() if op.kind == "exec"]


def env(result: ConvertResult, index: int = -1) -> dict[str, str]:
    meta = execs(result)[index].meta
    return dict(item.split("=", 1) for item in meta.env)


def history(result: ConvertResult) -> list[str]:
    return [h.created_by for h in result.image_config.history if h.comment]


async def test_global_args_are_for_from_lines_until_redeclared() -> None:
    result = await conv("ARG V=3.19\nARG IMG=alpine:$V\nFROM $IMG\nRUN echo 1\nARG V\nRUN echo 2\n")
    assert "V" not in env(result, 0)
    assert env(result, 1)["V"] == "3.19"
    assert history(result)[-2] == "ARG V=3.19"


async def test_build_args_replace_defaults_unexpanded() -> None:
    text = "ARG A=global\nFROM busybox\nARG A\nARG B=$A-default\nRUN true\n"
    result = await conv(text, build_args={"A": "cli", "B": "$HOME"})
    assert env(result)["A"] == "cli"
    assert env(result)["B"] == "$HOME"
    result = await conv(text)
    assert env(result)["B"] == "global-default"


async def test_undeclared_build_args_stay_out() -> None:
    result = await conv("FROM busybox\nRUN true\n", build_args={"SECRET": "x"})
    assert "SECRET" not in env(result)
    assert "SECRET" not in str(result.image_config.to_json())


async def test_env_and_arg_order_decides_and_image_keeps_env_only() -> None:
    result = await conv(
        "FROM busybox\nARG M=arg\nENV M=env\nRUN a\nARG M=again\nRUN b\nENV X=1 Y=$X Z=${M}\n"
    )
    assert env(result, 0)["M"] == "env"
    assert env(result, 1)["M"] == "again"
    config_env = dict(e.split("=", 1) for e in result.image_config.config.env)
    assert config_env["M"] == "env"
    assert config_env["Y"] == ""  # ENV sees the environment from before the instruction
    assert config_env["Z"] == "again"
    assert "RUN |1 M=again /bin/sh -c b # buildkit" in history(result)


async def test_arg_default_expands_with_stage_env() -> None:
    result = await conv("FROM golang:1.22\nARG P=$GOPATH/bin\nRUN true\n")
    assert env(result)["P"] == "/go/bin"


async def test_stage_args_carry_into_child_stages() -> None:
    result = await conv("FROM busybox AS a\nARG V=1\nFROM a\nRUN echo $V\n")
    assert env(result)["V"] == "1"
    assert history(result)[-1] == "RUN |1 V=1 /bin/sh -c echo $V # buildkit"


@pytest.mark.parametrize(
    ("build", "target", "expected"),
    [
        (
            "linux/amd64",
            None,
            {
                "BUILDPLATFORM": "linux/amd64",
                "BUILDARCH": "amd64",
                "TARGETPLATFORM": "linux/amd64",
                "TARGETOS": "linux",
                "TARGETARCH": "amd64",
                "TARGETVARIANT": "",
            },
        ),
        (
            "linux/arm64",
            "linux/arm/v6",
            {
                "BUILDPLATFORM": "linux/arm64",
                "BUILDOS": "linux",
                "BUILDARCH": "arm64",
                "BUILDVARIANT": "",
                "TARGETPLATFORM": "linux/arm/v6",
                "TARGETARCH": "arm",
                "TARGETVARIANT": "v6",
            },
        ),
    ],
)
async def test_platform_args(build: str, target: str | None, expected: dict[str, str]) -> None:
    names = " ".join(expected)
    result = await conv(
        f"FROM busybox\nARG {names}\nRUN true\n",
        build_platform=Platform.parse(build),
        target_platform=Platform.parse(target) if target else None,
    )
    values = env(result)
    assert {k: values[k] for k in expected} == expected


async def test_platform_args_in_from_and_image_platform() -> None:
    text = "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN true\nFROM alpine:3.19\nCOPY --from=b / /\n"
    result = await conv(text, target_platform=Platform.parse("linux/arm64"))
    platforms = {
        op.op.source.identifier.split("/")[-1].split("@")[0]: (
            op.op.platform.OS,
            op.op.platform.Architecture,
        )
        for op in result.definition()
        if op.kind == "source"
    }
    assert platforms["busybox:latest"] == ("linux", "amd64")
    assert platforms["alpine:3.19"] == ("linux", "arm64")
    assert (result.image_config.os, result.image_config.architecture) == ("linux", "arm64")
    # without an explicit target platform the image keeps its base image's platform
    result = await conv("FROM alpine:3.19\n", build_platform=Platform.parse("linux/arm64"))
    assert result.image_config.architecture == "arm64"


async def test_platform_args_can_be_overridden() -> None:
    result = await conv("FROM busybox\nARG TARGETARCH\nRUN true\n", build_args={"TARGETARCH": "x"})
    assert env(result)["TARGETARCH"] == "x"


async def test_proxy_args_reach_run_but_not_history_or_env() -> None:
    args = {"HTTP_PROXY": "http://p:1", "no_proxy": "local", "ALL_PROXY": "socks://p"}
    result = await conv("FROM busybox\nRUN a\nARG HTTP_PROXY\nRUN b\n", build_args=args)
    first, second = execs(result)
    for op in (first, second):
        assert op.meta.proxy_env.http_proxy == "http://p:1"
        assert op.meta.proxy_env.no_proxy == "local"
        assert op.meta.proxy_env.all_proxy == "socks://p"
    assert not any(e.startswith("HTTP_PROXY") for e in first.meta.env)
    assert "HTTP_PROXY=http://p:1" in list(second.meta.env)
    assert history(result)[0] == "RUN /bin/sh -c a # buildkit"
    assert history(result)[2] == "RUN |1 HTTP_PROXY=http://p:1 /bin/sh -c b # buildkit"
    result = await conv("FROM busybox\nRUN a\n")
    assert not execs(result)[0].meta.HasField("proxy_env")


async def test_source_date_epoch() -> None:
    result = await conv(
        "FROM busybox\nARG SOURCE_DATE_EPOCH\nRUN true\n", build_args={"SOURCE_DATE_EPOCH": "0042"}
    )
    assert result.epoch == 42
    assert env(result)["SOURCE_DATE_EPOCH"] == "42"
    assert {h.created for h in result.image_config.history if h.comment} == {"1970-01-01T00:00:42Z"}
    result = await conv("ARG SOURCE_DATE_EPOCH=7\nFROM busybox\n")
    assert result.epoch == 7
    with pytest.raises(UsageError, match="invalid SOURCE_DATE_EPOCH"):
        await conv("FROM busybox\n", build_args={"SOURCE_DATE_EPOCH": "yesterday"})


@pytest.mark.parametrize(
    "syntax",
    [
        "docker/dockerfile:1",
        "docker/dockerfile:1.7-labs",
        "docker/dockerfile",
        "docker.io/docker/dockerfile:1.9",
        "docker/dockerfile@sha256:" + "a" * 64,
    ],
)
async def test_syntax_of_the_builtin_frontend_is_accepted(syntax: str) -> None:
    await conv(f"# syntax={syntax}\nFROM busybox\n")


@pytest.mark.parametrize(
    "syntax", ["docker/dockerfile-upstream:master", "example.com/frontend", "tonistiigi/x:1"]
)
async def test_other_syntax_is_an_error_at_its_line(syntax: str) -> None:
    with pytest.raises(FrontendError) as info:
        await conv(f"# check=skip=all\n# syntax={syntax}\nFROM busybox\n")
    assert str(info.value).startswith("Dockerfile:2: unsupported syntax directive")
    with pytest.raises(FrontendError, match="unsupported BUILDKIT_SYNTAX"):
        await conv("FROM busybox\n", build_args={"BUILDKIT_SYNTAX": syntax})


async def test_checks_honour_directive_and_build_arg() -> None:
    text = "# check=error=true\nFROM busybox\nCMD run\n"
    with pytest.raises(FrontendError, match="JSONArgsRecommended") as info:
        await conv(text)
    assert str(info.value).startswith("Dockerfile:3:")
    result = await conv(text, build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=JSONArgsRecommended"})
    assert result.warnings == ()
    result = await conv('# check=error=true\nFROM busybox\nCMD ["run"]\n')
    assert result.warnings == ()
    with pytest.raises(UsageError, match="BUILDKIT_DOCKERFILE_CHECK"):
        await conv("FROM busybox\n", build_args={"BUILDKIT_DOCKERFILE_CHECK": "bogus"})


async def test_undefined_var_uses_the_base_image_env() -> None:
    result = await conv("FROM golang:1.22\nENV A=$GOPATH B=$NOPE\n")
    assert [w.rule for w in result.warnings] == ["UndefinedVar"]
    assert "$NOPE" in result.warnings[0].short
