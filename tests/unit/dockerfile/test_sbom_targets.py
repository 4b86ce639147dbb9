"""What an SBOM scans besides the result (BuildKit's ``BUILDKIT_SBOM_SCAN_CONTEXT`` and
``BUILDKIT_SBOM_SCAN_STAGE``): global and per-stage ``ARG`` s, ``--build-arg``
overrides, stage lists, stages the target does not need, and the values kept out of
``RUN`` environments."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import llb
from dockyard.core import Platform
from dockyard.dockerfile import ConvertOptions, ConvertResult, convert, parse_dockerfile
from dockyard.dockerfile._convert_sbom import enabled_for_stage

from .test_convert_golden import FakeResolver

AMD64 = Platform.parse("linux/amd64")

STAGES = """\
ARG BUILDKIT_SBOM_SCAN_CONTEXT
ARG BUILDKIT_SBOM_SCAN_STAGE
FROM alpine:3.19 AS deps
ARG BUILDKIT_SBOM_SCAN_STAGE
RUN echo deps > /deps

FROM alpine:3.19
RUN echo unnamed > /u

FROM busybox AS unused
ARG BUILDKIT_SBOM_SCAN_STAGE=true

FROM scratch
COPY --from=deps /deps /deps
COPY --from=1 /u /u
COPY file /file
"""


async def conv(text: str, **build_args: str) -> ConvertResult:
    options = ConvertOptions(build_platform=AMD64, build_args=build_args)
    return await convert(parse_dockerfile(text), options, FakeResolver())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, []),
        ({"BUILDKIT_SBOM_SCAN_STAGE": "true"}, ["deps", "stage-1"]),
        ({"BUILDKIT_SBOM_SCAN_STAGE": "deps"}, ["deps"]),
        ({"BUILDKIT_SBOM_SCAN_STAGE": "stage-1,other"}, ["stage-1"]),
        ({"BUILDKIT_SBOM_SCAN_STAGE": "false"}, []),
        ({"BUILDKIT_SBOM_SCAN_CONTEXT": "1"}, ["context"]),
        (
            {"BUILDKIT_SBOM_SCAN_CONTEXT": "true", "BUILDKIT_SBOM_SCAN_STAGE": "T"},
            ["context", "deps", "stage-1"],
        ),
    ],
)
async def test_scan_targets(args: dict[str, str], expected: list[str]) -> None:
    result = await conv(STAGES, **args)
    assert list(result.sbom_targets) == expected  # the unused stage never: not built


async def test_build_arg_alone_enables_nothing() -> None:
    """As BuildKit's: a --build-arg only replaces the value of a declared ARG."""
    text = "FROM alpine:3.19 AS a\nRUN true\nFROM a\nRUN true\n"
    result = await conv(text, BUILDKIT_SBOM_SCAN_CONTEXT="true", BUILDKIT_SBOM_SCAN_STAGE="true")
    assert dict(result.sbom_targets) == {}


async def test_stage_arg_default_and_inheritance() -> None:
    text = """\
FROM alpine:3.19 AS base
ARG BUILDKIT_SBOM_SCAN_STAGE=true
RUN true
FROM base AS child
RUN true
FROM scratch
ARG BUILDKIT_SBOM_SCAN_STAGE=true
COPY --from=child / /
"""
    result = await conv(text)
    # the target is the result itself, never an extra; child inherits base's ARG
    assert list(result.sbom_targets) == ["base", "child"]
    turned_off = await conv(text, BUILDKIT_SBOM_SCAN_STAGE="false")
    assert list(turned_off.sbom_targets) == []


async def test_context_target_is_the_build_context() -> None:
    text = "ARG BUILDKIT_SBOM_SCAN_CONTEXT=true\nFROM scratch\nCOPY a /a\n"
    result = await conv(text)
    definition = result.sbom_targets["context"].marshal(platform=AMD64)
    (source,) = [op for op in definition if op.kind == "source"]
    assert source.op.source.identifier == "local://context"


async def test_values_stay_out_of_run_env() -> None:
    text = """\
FROM alpine:3.19
ARG BUILDKIT_SBOM_SCAN_STAGE=true
ARG BUILDKIT_SBOM_SCAN_CONTEXT=true
RUN env
"""
    result = await conv(text)
    definition = result.definition()
    (run,) = [op for op in definition if op.kind == "exec"]
    env = list(run.op.exec.meta.env)
    assert not any(e.startswith("BUILDKIT_SBOM") for e in env)
    assert list(result.sbom_targets) == ["context"]  # the target's own ARG counts
    assert isinstance(result.state, llb.State)


@pytest.mark.parametrize(
    ("stage", "value", "expected"),
    [
        ("a", "true", True),
        ("a", "True", True),
        ("a", "0", False),
        ("a", "a,b", True),
        ("c", "a,b", False),
        ("a", "", False),
        ("a", "yes", False),
    ],
)
def test_enabled_for_stage(stage: str, value: str, expected: Any) -> None:
    assert enabled_for_stage(stage, value) is expected
