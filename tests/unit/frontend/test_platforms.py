"""Multi-platform builds in the frontend: platform lists parsed and normalized, a
conversion per target platform, identical work for the build platform left identical."""

from __future__ import annotations

import dataclasses

import pytest

from dockyard import llb
from dockyard.core import BuildWarning, Platform, UsageError
from dockyard.dockerfile import ResolvedImage
from dockyard.frontend import (
    DockerfileFrontend,
    DockerfileOptions,
    PythonOptions,
    format_platforms,
    metadata_step_name,
    parse_platforms,
)

from .fakes import FakeContext

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")

CROSS = b"""\
FROM --platform=$BUILDPLATFORM busybox AS tools
RUN echo tools > /tools
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM
COPY --from=tools /tools /tools
RUN echo $TARGETPLATFORM $TARGETOS $TARGETARCH $TARGETVARIANT $BUILDPLATFORM > /p
FROM scratch
COPY --from=build /p /p
"""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/amd64,linux/arm64", "linux/amd64,linux/arm64"),
        ("linux/arm64/v8, linux/amd64", "linux/arm64,linux/amd64"),
        ("linux/aarch64,linux/arm64/v8,linux/arm64", "linux/arm64"),
        ("linux/x86_64,,linux/arm", "linux/amd64,linux/arm/v7"),
        (["linux/amd64", "linux/arm64,linux/amd64"], "linux/amd64,linux/arm64"),
        ("", ""),
    ],
)
def test_parse_platforms_normalizes_and_deduplicates(given: str | list[str], expected: str) -> None:
    assert format_platforms(parse_platforms(given)) == expected


def test_parse_platforms_names_a_bad_item() -> None:
    with pytest.raises(ValueError, match="invalid platform 'x/y/z/w'"):
        parse_platforms("linux/amd64,x/y/z/w")


def test_options_hold_one_platform_or_a_list() -> None:
    one = DockerfileOptions(platforms=(ARM64,))
    assert one.platform == ARM64
    assert one.platforms == ()
    assert one == DockerfileOptions(platform=ARM64)
    both = DockerfileOptions(platforms=(AMD64, ARM64, AMD64))
    assert both.platform is None
    assert both.platforms == (AMD64, ARM64)
    assert both.target_platforms == (AMD64, ARM64)
    assert DockerfileOptions().target_platforms == ()
    assert dataclasses.replace(one, platform=AMD64).platform == AMD64
    with pytest.raises(UsageError, match="not both"):
        DockerfileOptions(platform=AMD64, platforms=(AMD64, ARM64))


def test_platform_attribute_takes_buildkits_comma_list() -> None:
    options = DockerfileOptions.from_attrs({"platform": "linux/amd64,linux/arm64/v8"})
    assert options.platforms == (AMD64, ARM64)
    assert DockerfileOptions.from_attrs({"platform": "linux/arm64/v8"}).platform == ARM64


def test_the_python_frontend_refuses_a_list() -> None:
    with pytest.raises(UsageError, match="one platform"):
        PythonOptions.from_attrs({"filename": "b.py", "platform": "linux/amd64,linux/arm64"})
    options = PythonOptions.from_attrs({"filename": "b.py", "platform": "linux/arm64/v8"})
    assert options.platform == ARM64


def _ctx(dockerfile: bytes) -> FakeContext:
    return FakeContext(directories={"dockerfile": {"Dockerfile": dockerfile}, "context": {}})


async def test_a_conversion_per_platform_with_shared_build_platform_work() -> None:
    ctx = _ctx(CROSS)
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(platforms=(AMD64, ARM64)))
    assert result.multi_platform
    assert [p.platform for p in result.platforms] == [AMD64, ARM64]
    assert result.definition is result.platforms[0].definition
    lines: dict[Platform, str] = {}
    digests: dict[Platform, set[str]] = {}
    for part in result.platforms:
        assert part.image_config is not None
        assert part.image_config.platform == part.platform
        execs = [n for n in part.definition if n.kind == "exec"]
        digests[part.platform] = {str(n.digest) for n in execs}
        # every RUN is on the build platform (no emulation needed)
        assert {n.op.platform.Architecture for n in execs} == {"amd64"}
        (run,) = [n for n in execs if "/p" in list(n.op.exec.meta.args)[-1]]
        env = dict(e.split("=", 1) for e in run.op.exec.meta.env)
        lines[part.platform] = " ".join(
            env[k]
            for k in ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM")
        )
    assert lines == {
        AMD64: "linux/amd64 linux amd64  linux/amd64",
        ARM64: "linux/arm64 linux arm64  linux/amd64",
    }
    # the tools stage does not depend on the target: the same op (and digest) for both
    shared = digests[AMD64] & digests[ARM64]
    assert len(shared) == 1
    assert len(digests[AMD64] | digests[ARM64]) == 3


async def test_a_target_platform_run_stays_on_its_platform() -> None:
    ctx = _ctx(b"FROM busybox\nRUN true\n")
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(platforms=(AMD64, ARM64)))
    archs = []
    for part in result.platforms:
        (run,) = [n for n in part.definition if n.kind == "exec"]
        archs.append(run.op.platform.Architecture)
    assert archs == ["amd64", "arm64"]


async def test_warnings_of_every_platform_are_reported_once() -> None:
    ctx = _ctx(b"from busybox\nRUN true\n")
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(platforms=(AMD64, ARM64)))
    reported = [e for e in ctx.reporter.events if isinstance(e, BuildWarning)]
    assert reported
    assert len(reported) == len(set(reported)) == len(result.warnings)


async def test_single_platform_results_are_unchanged() -> None:
    ctx = _ctx(CROSS)
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(platform=ARM64))
    assert result.platforms == ()
    assert not result.multi_platform
    assert result.image_config is not None
    assert result.image_config.platform == ARM64


def _names(definition: llb.Definition) -> list[str]:
    return [n.name for n in definition if not n.is_terminal]


async def test_step_names_carry_the_stage_platform() -> None:
    ctx = _ctx(CROSS)
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(platforms=(AMD64, ARM64)))
    names = {part.platform: _names(part.definition) for part in result.platforms}
    from_busybox = "FROM docker.io/library/busybox:latest"
    # a stage FROM --platform=$BUILDPLATFORM shows the build platform, and the target
    # its TARGET* arguments name when it is another one (BuildKit's "->arm64")
    assert names[AMD64] == [
        f"[linux/amd64 tools 1/2] {from_busybox}",
        "[linux/amd64 tools 2/2] RUN echo tools > /tools",
        "[linux/amd64 build 2/3] COPY --from=tools /tools /tools",
        "[linux/amd64 build 3/3] RUN echo linux/amd64 linux amd64  linux/amd64 > /p",
        "[linux/amd64 stage-2 1/1] COPY --from=build /p /p",
    ]
    assert names[ARM64] == [
        f"[linux/amd64 tools 1/2] {from_busybox}",
        "[linux/amd64 tools 2/2] RUN echo tools > /tools",
        "[linux/amd64->arm64 build 2/3] COPY --from=tools /tools /tools",
        "[linux/amd64->arm64 build 3/3] RUN echo linux/arm64 linux arm64  linux/amd64 > /p",
        "[linux/arm64 stage-2 1/1] COPY --from=build /p /p",
    ]


async def test_a_single_stage_names_only_its_platform() -> None:
    ctx = _ctx(b"FROM busybox\nWORKDIR /w\nRUN true\n")
    arm = Platform.parse("linux/arm/v7")
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(platforms=(AMD64, arm)))
    assert _names(result.platforms[1].definition) == [
        "[linux/arm/v7 1/3] FROM docker.io/library/busybox:latest",
        "[linux/arm/v7 2/3] WORKDIR /w",
        "[linux/arm/v7 3/3] RUN true",
    ]


async def test_single_platform_step_names_have_no_platform() -> None:
    for options in (DockerfileOptions(platform=ARM64), DockerfileOptions()):
        result = await DockerfileFrontend().solve(_ctx(CROSS), options)
        assert result.definition is not None
        names = _names(result.definition)
        assert names[0] == "[tools 1/2] FROM docker.io/library/busybox:latest"
        assert names[-1] == "[stage-2 1/1] COPY --from=build /p /p"


@dataclasses.dataclass
class _NamingImages:
    """Records the progress name a lookup would be shown under."""

    asked: list[str] = dataclasses.field(default_factory=list)

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        self.asked.append(metadata_step_name(ref, platform))
        return ResolvedImage(ref=ref)


async def test_base_images_are_looked_up_once_named_with_their_platform() -> None:
    images = _NamingImages()
    ctx = _ctx(CROSS + b"FROM alpine AS extra\n")
    ctx.images = images
    options = DockerfileOptions(platforms=(AMD64, ARM64), target="2")
    await DockerfileFrontend().solve(ctx, options)
    # busybox for the build platform: once for both targets (shared)
    assert images.asked == [
        "[linux/amd64 internal] load metadata for docker.io/library/busybox:latest"
    ]
    images.asked.clear()
    ctx = _ctx(b"FROM alpine\n")
    ctx.images = images
    await DockerfileFrontend().solve(ctx, DockerfileOptions(platforms=(AMD64, ARM64)))
    assert sorted(images.asked) == [
        "[linux/amd64 internal] load metadata for docker.io/library/alpine:latest",
        "[linux/arm64 internal] load metadata for docker.io/library/alpine:latest",
    ]
    images.asked.clear()
    ctx = _ctx(b"FROM alpine\n")
    ctx.images = images
    await DockerfileFrontend().solve(ctx, DockerfileOptions(platform=ARM64))
    assert images.asked == ["[internal] load metadata for docker.io/library/alpine:latest"]


def test_cross_compilation_targets_in_step_names() -> None:
    from dockyard.dockerfile._convert_stages import Progress

    def name(env: dict[str, str]) -> str:
        return Progress(stage="b", total=1, platform=AMD64).name("RUN x", env=env)

    assert name({}) == "[linux/amd64 b 1/1] RUN x"
    assert name({"TARGETARCH": "amd64"}) == "[linux/amd64 b 1/1] RUN x"
    assert name({"TARGETARCH": "arm", "TARGETVARIANT": "v6"}) == "[linux/amd64->arm/v6 b 1/1] RUN x"
    assert name({"TARGETPLATFORM": "windows/amd64"}) == "[linux/amd64->windows/amd64 b 1/1] RUN x"
    assert name({"TARGETPLATFORM": "linux/arm64/v8"}) == "[linux/amd64->arm64 b 1/1] RUN x"
    assert name({"TARGETPLATFORM": "not a/platform/x/y"}) == "[linux/amd64 b 1/1] RUN x"
    assert Progress(total=1).name("RUN x", env={"TARGETARCH": "arm64"}) == "[1/1] RUN x"
