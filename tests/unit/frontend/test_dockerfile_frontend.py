"""The dockerfile.v0 frontend over a fake client session: what it reads, what it hands
the converter, what it reports."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from dockyard import llb
from dockyard.core import (
    BuildWarning,
    FrontendError,
    NotFoundError,
    Platform,
    UsageError,
    VertexStatus,
)
from dockyard.dockerfile import NetworkMode
from dockyard.frontend import DockerfileFrontend, DockerfileOptions, PythonOptions

from .fakes import FakeContext, FakeImages

DOCKERFILE = b"""\
FROM busybox AS build
RUN echo hi > /hi
FROM scratch
COPY --from=build /hi /hi
COPY app/ /app/
"""


def sources(definition: llb.Definition) -> dict[str, dict[str, str]]:
    return {
        node.op.source.identifier: dict(node.op.source.attrs)
        for node in definition
        if node.kind == "source"
    }


def ctx_with(content: bytes = DOCKERFILE, **dirs: dict[str, bytes]) -> FakeContext:
    directories = {"dockerfile": {"Dockerfile": content}, "context": {}}
    directories.update(dirs)
    return FakeContext(directories=directories)


async def test_reads_the_dockerfile_and_converts_with_the_session() -> None:
    ctx = ctx_with()
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert result.definition is not None
    found = sources(result.definition)
    assert "docker-image://docker.io/library/busybox:latest" in found
    local = found["local://context"]
    assert local["local.session"] == "sess-1"
    assert json.loads(local["local.followpaths"]) == ["app"]
    assert result.image_config is not None
    assert ctx.reads[0] == ("dockerfile", ("Dockerfile", "Dockerfile.dockerignore"))
    statuses = [e for e in ctx.reporter.events if isinstance(e, VertexStatus)]
    names = {s.name for s in statuses if s.completed is not None and s.error is None}
    assert names == {
        "[internal] load build definition from Dockerfile",
        "[internal] load .dockerignore",
    }


async def test_base_image_config_reaches_the_image() -> None:
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "FROM_BASE=1"], "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()
    images = FakeImages(config)
    ctx = ctx_with(b"FROM busybox\nENV X=1\n")
    ctx.images = images
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert images.asked == ["docker.io/library/busybox:latest"]
    assert result.image_config is not None
    assert "FROM_BASE=1" in result.image_config.config.env
    assert "X=1" in result.image_config.config.env
    assert result.image_config.config.working_dir == "/w"


async def test_dockerfile_specific_ignore_file_wins_over_the_contexts() -> None:
    ctx = ctx_with(
        b"FROM scratch\nCOPY . /\n",
        dockerfile={
            "Dockerfile": b"FROM scratch\nCOPY . /\n",
            "Dockerfile.dockerignore": b"*.log\n!keep.log\n",
        },
        context={".dockerignore": b"secret\n"},
    )
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert result.definition is not None
    local = sources(result.definition)["local://context"]
    assert json.loads(local["local.excludepatterns"]) == ["*.log", "!keep.log"]

    ctx = ctx_with(b"FROM scratch\nCOPY . /\n", context={".dockerignore": b"# c\nsecret\n"})
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert result.definition is not None
    local = sources(result.definition)["local://context"]
    assert json.loads(local["local.excludepatterns"]) == ["secret"]
    assert ("context", (".dockerignore",)) in ctx.reads


async def test_other_filename_target_args_and_platform() -> None:
    ctx = FakeContext(
        directories={
            "dockerfile": {
                "app.Dockerfile": b"FROM busybox AS a\nARG V=1\nRUN echo $V\nFROM a AS b\n"
            },
            "context": {},
        }
    )
    options = DockerfileOptions(
        filename="app.Dockerfile",
        target="a",
        build_args={"V": "2"},
        platform=Platform.parse("linux/arm64"),
    )
    result = await DockerfileFrontend().solve(ctx, options)
    assert result.definition is not None
    execs = [n for n in result.definition if n.kind == "exec"]
    assert len(execs) == 1
    assert list(execs[0].op.exec.meta.args)[-1] == "echo $V"
    assert "V=2" in list(execs[0].op.exec.meta.env)
    assert execs[0].op.platform.Architecture == "arm64"
    names = {e.name for e in ctx.reporter.events if isinstance(e, VertexStatus)}
    assert "[internal] load build definition from app.Dockerfile" in names


class _BothAtOnce(FakeContext):
    """Answers no read until the Dockerfile and the context's ignore file are both asked
    for (a frontend reading them one after the other times out)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.both = asyncio.Event()
        self.started: set[str] = set()

    async def read_client_files(self, directory: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        self.started.add(directory)
        if self.started >= {"dockerfile", "context"}:
            self.both.set()
        await asyncio.wait_for(self.both.wait(), 5)
        return await super().read_client_files(directory, paths)


async def test_the_contexts_ignore_file_is_read_beside_the_dockerfile() -> None:
    ctx = _BothAtOnce(
        directories={
            "dockerfile": {"Dockerfile": b"FROM scratch\nCOPY . /\n"},
            "context": {".dockerignore": b"secret\n"},
        }
    )
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert result.definition is not None
    local = sources(result.definition)["local://context"]
    assert json.loads(local["local.excludepatterns"]) == ["secret"]


async def test_a_read_of_the_contexts_ignore_file_not_needed_fails_nothing() -> None:
    # the Dockerfile has its own ignore file; the context directory is not offered
    ctx = FakeContext(
        directories={
            "dockerfile": {
                "Dockerfile": b"FROM scratch\nCOPY . /\n",
                "Dockerfile.dockerignore": b"*.log\n",
            }
        }
    )
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert result.definition is not None
    local = sources(result.definition)["local://context"]
    assert json.loads(local["local.excludepatterns"]) == ["*.log"]
    # without one, the context's read fails the build (after the Dockerfile was read)
    ctx = FakeContext(directories={"dockerfile": {"Dockerfile": b"FROM scratch\n"}})
    with pytest.raises(NotFoundError, match="no directory 'context'"):
        await DockerfileFrontend().solve(ctx, DockerfileOptions())
    # a missing Dockerfile is the error reported, whatever the other read does
    ctx = FakeContext(directories={"dockerfile": {}})
    with pytest.raises(NotFoundError, match="failed to read dockerfile"):
        await DockerfileFrontend().solve(ctx, DockerfileOptions())


async def test_missing_dockerfile_and_syntax_errors() -> None:
    ctx = FakeContext(directories={"dockerfile": {}, "context": {}})
    with pytest.raises(NotFoundError, match="failed to read dockerfile: Dockerfile"):
        await DockerfileFrontend().solve(ctx, DockerfileOptions())
    failed = [e for e in ctx.reporter.events if isinstance(e, VertexStatus) and e.error]
    assert failed
    assert failed[0].name.startswith("[internal] load build definition")

    ctx = ctx_with(b"FROM busybox\nRUN --bogus=1 true\n")
    with pytest.raises(FrontendError) as info:
        await DockerfileFrontend().solve(ctx, DockerfileOptions())
    assert str(info.value).startswith("Dockerfile:2")


async def test_build_checks_are_reported_as_warnings() -> None:
    ctx = ctx_with(b"FROM busybox as base\nMAINTAINER me\nCMD echo hi\n")
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions())
    rules = {w.rule for w in result.warnings}
    assert {"FromAsCasing", "MaintainerDeprecated", "JSONArgsRecommended"} <= rules
    reported = [e for e in ctx.reporter.events if isinstance(e, BuildWarning)]
    assert {w.rule for w in reported} == rules


async def test_check_mode_lints_without_converting() -> None:
    images = FakeImages(b"{}")
    ctx = ctx_with(b"FROM busybox as base\nCMD echo hi\n")
    ctx.images = images
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(check=True))
    assert result.definition is None
    assert {w.rule for w in result.warnings} == {"FromAsCasing", "JSONArgsRecommended"}
    assert images.asked == []
    assert result.metadata["check.warnings"] == "2"
    # BuildKit's frontend.lint answer: the document, its status and version
    document = json.loads(result.metadata["result.json"])
    assert [w["ruleName"] for w in document["warnings"]] == ["FromAsCasing", "JSONArgsRecommended"]
    assert "buildError" not in document
    assert result.metadata["result.statuscode"] == "1"
    assert result.metadata["version"] == "1.0.0"

    # error=true fails the checks, not the request: the failure is in the document
    ctx = ctx_with(b"# check=error=true\nFROM busybox as base\n")
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(check=True))
    document = json.loads(result.metadata["result.json"])
    assert document["buildError"] == {
        "message": "lint violation found for rules: FromAsCasing",
        "location": {"ranges": [{"start": {"line": 2}, "end": {"line": 2}}]},
    }
    assert [w.rule for w in result.warnings] == ["FromAsCasing"]
    # the warning was shown
    assert any(isinstance(e, BuildWarning) for e in ctx.reporter.events)

    ctx = ctx_with(b"FROM busybox as base\n")
    options = DockerfileOptions(check=True, build_args={"BUILDKIT_DOCKERFILE_CHECK": "skip=all"})
    result = await DockerfileFrontend().solve(ctx, options)
    assert result.warnings == ()


async def test_check_mode_answers_a_dockerfile_that_does_not_parse() -> None:
    content = b"FROM busybox\nRUN --bogus=1 true\n"
    ctx = ctx_with(content)
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(check=True))
    assert result.definition is None
    assert result.warnings == ()
    assert result.metadata["result.statuscode"] == "1"
    document = json.loads(result.metadata["result.json"])
    assert document["warnings"] is None
    assert document["buildError"]["message"].startswith("unknown flag --bogus for RUN")
    assert document["buildError"]["location"] == {
        "ranges": [{"start": {"line": 2}, "end": {"line": 2}}]
    }
    (source,) = document["sources"]
    assert source == {
        "filename": "Dockerfile",
        "data": base64.b64encode(content).decode(),
        "language": "Dockerfile",
    }
    # the load step still failed in the progress, as for a build
    failed = [e for e in ctx.reporter.events if isinstance(e, VertexStatus) and e.error]
    assert [e.name for e in failed] == ["[internal] load build definition from Dockerfile"]


async def test_check_mode_still_fails_for_what_is_not_the_dockerfiles_mistake() -> None:
    missing = FakeContext(directories={"dockerfile": {}, "context": {}})
    with pytest.raises(NotFoundError, match="failed to read dockerfile"):
        await DockerfileFrontend().solve(missing, DockerfileOptions(check=True))
    bad_ignore = ctx_with(b"FROM busybox\n", context={".dockerignore": b"[\n"})
    with pytest.raises(FrontendError, match=r"^\.dockerignore:1"):
        await DockerfileFrontend().solve(bad_ignore, DockerfileOptions(check=True))


@pytest.mark.parametrize("check", [False, True])
async def test_a_copy_of_an_ignored_file_is_reported_with_the_ignore_file_that_applies(
    check: bool,
) -> None:
    content = b"FROM scratch\nCOPY app.log secret.txt /\n"
    ctx = ctx_with(content, context={".dockerignore": b"*.log\n"})
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(check=check))
    assert [w.short for w in result.warnings] == [
        'CopyIgnoredFile: Attempting to Copy file "app.log" that is excluded by .dockerignore'
        " (line 2)"
    ]
    # the Dockerfile's own ignore file replaces the context's
    ctx = ctx_with(
        content,
        dockerfile={"Dockerfile": content, "Dockerfile.dockerignore": b"secret.*\n"},
        context={".dockerignore": b"*.log\n"},
    )
    result = await DockerfileFrontend().solve(ctx, DockerfileOptions(check=check))
    assert [w.short for w in result.warnings] == [
        'CopyIgnoredFile: Attempting to Copy file "secret.txt" that is excluded by '
        ".dockerignore (line 2)"
    ]


async def test_named_contexts() -> None:
    ctx = ctx_with(
        b"FROM base\nCOPY --from=extra /x /x\n",
        extra_dir={".dockerignore": b"*.tmp\n"},
    )
    options = DockerfileOptions(
        named_contexts={"base": "docker-image://alpine:3.20", "extra": "local:extra_dir"}
    )
    result = await DockerfileFrontend().solve(ctx, options)
    assert result.definition is not None
    found = sources(result.definition)
    assert "docker-image://docker.io/library/alpine:3.20" in found
    extra = found["local://extra_dir"]
    assert json.loads(extra["local.excludepatterns"]) == ["*.tmp"]
    assert extra["local.session"] == "sess-1"

    with pytest.raises(UsageError, match="is not docker-image://REF"):
        await DockerfileFrontend().solve(ctx, DockerfileOptions(named_contexts={"x": "some/dir"}))


async def test_wrong_options_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="takes DockerfileOptions, not PythonOptions"):
        await DockerfileFrontend().solve(ctx_with(), PythonOptions(path="x.py"))  # type: ignore[arg-type]


def test_options_from_buildkit_attrs() -> None:
    options = DockerfileFrontend().parse_options(
        {
            "filename": "build/Dockerfile.prod",
            "target": "final",
            "build-arg:A": "1",
            "label:org.x": "y",
            "context:base": "docker-image://alpine",
            "platform": "linux/arm/v7",
            "no-cache": "a, b",
            "image-resolve-mode": "pull",
            "force-network-mode": "none",
            "add-hosts": "db=10.0.0.2,cache:10.0.0.3",
            "requestid": "frontend.lint",
            "something-unknown": "ignored",
        }
    )
    assert options == DockerfileOptions(
        filename="build/Dockerfile.prod",
        target="final",
        build_args={"A": "1"},
        labels={"org.x": "y"},
        named_contexts={"base": "docker-image://alpine"},
        platform=Platform.parse("linux/arm/v7"),
        no_cache_stages=frozenset({"a", "b"}),
        pull=True,
        network=NetworkMode.NONE,
        extra_hosts=(llb.HostIP(host="db", ip="10.0.0.2"), llb.HostIP(host="cache", ip="10.0.0.3")),
        check=True,
    )
    assert DockerfileOptions.from_attrs({"no-cache": ""}).no_cache
    assert not DockerfileOptions.from_attrs({}).no_cache


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"platform": "linux/amd64,x/y/z/w"}, "invalid platform 'x/y/z/w'"),
        ({"platform": "x/y/z/w"}, "platform"),
        ({"image-resolve-mode": "sometimes"}, "image-resolve-mode"),
        ({"force-network-mode": "bridge"}, "force-network-mode"),
        ({"add-hosts": "nohost"}, "add-hosts"),
        ({"filename": "dir/"}, "invalid Dockerfile name"),
    ],
)
def test_bad_attrs(attrs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        DockerfileOptions.from_attrs(attrs)


async def test_source_date_epoch_reaches_the_result() -> None:
    options = DockerfileOptions(build_args={"SOURCE_DATE_EPOCH": "1700000000"})
    result = await DockerfileFrontend().solve(ctx_with(b"FROM scratch\n"), options)
    assert result.epoch == 1700000000
    result = await DockerfileFrontend().solve(ctx_with(b"FROM scratch\n"), DockerfileOptions())
    assert result.epoch is None
