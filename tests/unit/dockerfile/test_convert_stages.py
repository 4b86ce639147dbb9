"""Stage selection and the stage graph: targets, what gets converted and resolved,
independent stages, ONBUILD, named contexts, and errors that name their line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dockyard import llb
from dockyard.core import DockyardError, FrontendError, NotFoundError, Platform, UsageError
from dockyard.dockerfile import (
    ConvertOptions,
    ConvertResult,
    NamedContext,
    ResolvedImage,
    UnresolvedImages,
    convert,
    load_named_context,
    parse_dockerfile,
)

from .test_convert_golden import FakeResolver

AMD64 = Platform.parse("linux/amd64")

MULTI = """\
FROM alpine:3.19 AS a
RUN echo a > /a

FROM busybox AS b
RUN echo b > /b

FROM golang:1.22 AS unused
RUN echo never

FROM a AS final
COPY --from=b /b /b
RUN cat /a /b
"""


async def conv(
    text: str, resolver: Any = None, **options: Any
) -> tuple[ConvertResult, FakeResolver]:
    options.setdefault("build_platform", AMD64)
    fake = resolver or FakeResolver()
    result = await convert(parse_dockerfile(text), ConvertOptions(**options), fake)
    return result, fake


def names(result: ConvertResult) -> list[str]:
    return [op.name for op in result.definition() if op.kind]


def ancestors(result: ConvertResult, name: str) -> set[str]:
    definition = result.definition()
    by_name = {op.name: op for op in definition if op.kind}
    seen: set[str] = set()
    todo = [by_name[name]]
    while todo:
        op = todo.pop()
        for edge in op.inputs:
            parent = definition[edge.digest]
            if parent.name not in seen:
                seen.add(parent.name)
                todo.append(parent)
    return seen


async def test_only_the_targets_dependencies_are_converted_and_resolved() -> None:
    result, fake = await conv(MULTI)
    assert [call[0] for call in fake.calls] == [
        "docker.io/library/alpine:3.19",
        "docker.io/library/busybox:latest",
    ]
    assert not any("never" in name for name in names(result))
    assert sorted(result.stages) == [0, 1, 3]
    assert result.stages[3].name == "final"


async def test_independent_stages_stay_independent() -> None:
    result, _ = await conv(MULTI)
    a = "[a 2/2] RUN echo a > /a"
    b = "[b 2/2] RUN echo b > /b"
    assert b not in ancestors(result, a)
    assert a not in ancestors(result, b)
    assert {a, b} <= ancestors(result, "[final 2/2] RUN cat /a /b")


@pytest.mark.parametrize(
    ("target", "last"), [("B", "[b 2/2] RUN echo b > /b"), ("0", "[a 2/2] RUN echo a > /a")]
)
async def test_targets_by_name_or_index(target: str, last: str) -> None:
    result, _ = await conv(MULTI, target=target)
    assert names(result)[-1] == last


async def test_unknown_target_suggests_a_name() -> None:
    with pytest.raises(UsageError, match="did you mean final"):
        await conv(MULTI, target="fnial")


async def test_from_names_only_earlier_stages() -> None:
    # "later" is defined after the FROM that names it, so that FROM means an image
    text = "FROM busybox AS first\nFROM later AS x\nFROM alpine:3.19 AS later\nFROM x\n"
    with pytest.raises(NotFoundError) as info:
        await conv(text)
    assert str(info.value).startswith("Dockerfile:2: later:")


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        ("FROM busybox AS build\nFROM busybox\nCOPY --from=buidl /x /x\n", 3, "build"),
        ("FROM busybox AS build\nFROM biuld\n", 2, "build"),
        ("FROM busybx\n", 1, "busybox"),
    ],
)
async def test_a_mistyped_stage_or_image_name_suggests_one(text: str, line: int, hint: str) -> None:
    with pytest.raises(NotFoundError) as info:
        await conv(text)
    assert str(info.value).startswith(f"Dockerfile:{line}: ")
    assert str(info.value).endswith(f"image not found (did you mean {hint}?)")


async def test_an_unknown_image_suggests_nothing_far_from_it() -> None:
    with pytest.raises(NotFoundError) as info:
        await conv("FROM busybox AS build\nFROM example.com/team/tool:2\n")
    assert "did you mean" not in str(info.value)


async def test_targetstage_argument() -> None:
    result, _ = await conv("FROM busybox AS one\nARG TARGETSTAGE\nRUN echo\n", target="one")
    exec_op = next(op.op.exec for op in result.definition() if op.kind == "exec")
    assert "TARGETSTAGE=one" in list(exec_op.meta.env)


async def test_base_images_resolve_concurrently_and_once() -> None:
    started: list[str] = []
    both = asyncio.Event()

    class Barrier(FakeResolver):
        async def resolve(
            self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
        ) -> ResolvedImage:
            started.append(ref)
            if len(started) == 2:
                both.set()
            await both.wait()  # a sequential converter would never get here
            return await super().resolve(ref, platform=platform, resolve_mode=resolve_mode)

    text = (
        "FROM alpine:3.19 AS a\nFROM busybox AS b\nFROM alpine:3.19 AS c\n"
        "FROM scratch\nCOPY --from=a / /a\nCOPY --from=b / /b\nCOPY --from=c / /c\n"
    )
    await asyncio.wait_for(conv(text, Barrier()), timeout=30)
    assert sorted(started) == ["docker.io/library/alpine:3.19", "docker.io/library/busybox:latest"]


async def test_unresolved_images_convert_without_configs() -> None:
    result = await convert(
        parse_dockerfile("FROM example.com/app:1\nRUN true\n"),
        ConvertOptions(build_platform=AMD64),
        UnresolvedImages(),
    )
    assert names(result)[0] == "[1/2] FROM example.com/app:1"
    assert result.image_config.config.env == (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )


async def test_resolve_mode_and_no_cache_reach_the_graph() -> None:
    result, fake = await conv(
        "FROM alpine:3.19\nRUN a\n", resolve_mode=llb.ResolveMode.PULL, no_cache=True
    )
    assert fake.calls[0][2] == "pull"
    source = next(op for op in result.definition() if op.kind == "source")
    assert source.op.source.attrs["image.resolvemode"] == "pull"
    run = next(op for op in result.definition() if op.kind == "exec")
    assert run.metadata.ignore_cache


async def test_onbuild_of_a_base_stage_runs_in_its_children_only() -> None:
    text = "FROM busybox AS base\nONBUILD RUN echo trigger\nFROM base\nRUN echo child\n"
    result, _ = await conv(text)
    assert names(result)[1:] == [
        "[stage-1 1/2] ONBUILD RUN echo trigger",
        "[stage-1 2/2] RUN echo child",
    ]
    assert result.image_config.config.on_build == ()
    result, _ = await conv(text, target="base")
    assert result.image_config.config.on_build == ("RUN echo trigger",)


async def test_onbuild_triggers_of_a_base_image_run_and_are_not_passed_on() -> None:
    # BuildKit clears the stage's OnBuild once its triggers are set up (resolveStages)
    result, _ = await conv("FROM onbuild-base:1\nRUN echo child\n")
    assert [name for name in names(result) if "ONBUILD" in name] == [
        "[2/5] ONBUILD COPY --chown=1000:1000 . /app/",
        "[3/5] ONBUILD RUN make -C /app",
        "[4/5] ONBUILD RUN --mount=type=bind,from=golang:1.22,source=/usr/local/go,target=/go ls /go",
    ]
    assert result.image_config.config.on_build == ()


async def test_named_contexts_by_image_name_variants() -> None:
    fake = FakeResolver()
    context = await load_named_context(
        "docker.io/library/busybox:latest",
        "docker-image://alpine:3.19",
        resolver=fake,
        platform=AMD64,
    )
    for text in ("FROM busybox\n", "FROM busybox:latest\n", "FROM docker.io/library/busybox\n"):
        result, _ = await conv(text, named_contexts={"docker.io/library/busybox:latest": context})
        assert names(result) == ["[context docker.io/library/busybox:latest] alpine:3.19"]


async def test_named_context_without_config_and_reserved_names() -> None:
    context = NamedContext(state=llb.image("busybox"))
    result, fake = await conv(
        "FROM scratch AS scratch\nFROM mything\nCOPY --from=scratch / /\n",
        named_contexts={"mything": context, "context": context, "scratch": context},
    )
    # "scratch" and "context" cannot be replaced; mything has no config: an empty one
    assert fake.calls == []
    assert result.image_config.config.working_dir == "/"


async def test_stage_built_on_a_replaced_stage_without_config() -> None:
    context = NamedContext(state=llb.image("busybox"))
    result, _ = await conv(
        "FROM golang:1.22 AS deps\nFROM deps\nRUN true\n", named_contexts={"deps": context}
    )
    assert names(result) == [
        "docker-image://docker.io/library/busybox:latest",
        "[stage-1 1/1] RUN true",
    ]
    assert result.image_config.config.env == (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )


ERRORS = [
    (
        "FROM busybox\nCOPY --from=nope:x:y / /\n",
        FrontendError,
        "Dockerfile:2: failed to parse stage name",
    ),
    (
        "FROM busybox AS a\nFROM a\nCOPY --from=5 / /\n",
        FrontendError,
        "Dockerfile:3: invalid stage index 5",
    ),
    (
        "FROM busybox AS first\nRUN --mount=from=later,target=/x true\nFROM busybox AS later\nFROM first\n",
        FrontendError,
        "Dockerfile:2: cannot mount from stage 'later'",
    ),
    (
        "FROM busybox\nRUN --mount=type=cache,target=/ true\n",
        FrontendError,
        'Dockerfile:2: invalid mount target "/"',
    ),
    (
        "FROM busybox\nRUN --mount=type=ssh,source=x true\n",
        FrontendError,
        "Dockerfile:2: ssh does not support source",
    ),
    ("FROM busybox\nCOPY --chown=4294967296 a /\n", FrontendError, "Dockerfile:2: COPY --chown"),
    (
        "FROM busybox\nADD --checksum=sha256:" + "a" * 64 + " a b /\n",
        FrontendError,
        "Dockerfile:2: checksum can't be specified for multiple sources",
    ),
    (
        "FROM busybox\nADD --checksum=" + "a" * 40 + " https://example.com/x /\n",
        FrontendError,
        "Dockerfile:2: ADD --checksum",
    ),
    (
        "FROM busybox\nCOPY git@github.com:a/b.git /\n",
        FrontendError,
        "Dockerfile:2: source can't be a git ref for COPY",
    ),
    (
        "FROM busybox\nADD --keep-git-dir https://github.com/a/b.git?keep-git-dir=false /\n",
        FrontendError,
        "Dockerfile:2: inconsistent keep-git-dir",
    ),
    (
        "FROM busybox\nARG P=x\nADD https://example.com/$P.tgz?${Q:?missing} /\n",
        FrontendError,
        "Dockerfile:3:",
    ),
    (
        "FROM busybox AS a\nFROM busybox AS b\nCOPY --from=c / /\nFROM busybox AS c\nCOPY --from=b / /\n",
        FrontendError,
        "Dockerfile:2: circular dependency detected on stage: b",
    ),
    ("ARG X=${Y:?needs Y}\nFROM busybox\n", FrontendError, "Dockerfile:1:"),
    ("FROM ${NOPE:?set NOPE}\n", FrontendError, "Dockerfile:1:"),
    (
        "FROM --platform=linux/amd64/v2/x busybox\n",
        FrontendError,
        "Dockerfile:1: failed to parse platform",
    ),
    ("FROM busybox\nWORKDIR ${EMPTY}\n", FrontendError, "Dockerfile:2: WORKDIR cannot be empty"),
]


@pytest.mark.parametrize(("text", "error", "message"), ERRORS)
async def test_errors_name_the_line(text: str, error: type[DockyardError], message: str) -> None:
    with pytest.raises(error) as info:
        await conv(text)
    assert str(info.value).startswith(message)


async def test_conversion_reads_no_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything from outside comes through the options and the resolver."""
    text = MULTI + "ADD https://example.com/x /x\nCOPY <<EOF /y\nhi\nEOF\n"
    await conv(text)  # warm up lazy imports
    resolver = FakeResolver()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"conversion opened a file: {args}")

    monkeypatch.setattr("builtins.open", refuse)
    monkeypatch.setattr("io.open", refuse)
    monkeypatch.setattr("os.open", refuse)
    result, _ = await conv(text, resolver)
    assert result.stages[3].name == "final"
