"""The ``frontend.targets`` and ``frontend.outline`` subrequests
(:mod:`dockyard.dockerfile._subrequests`): which stages, arguments, secrets and SSH ids
they report, and their text and JSON forms (buildx's tables, BuildKit's documents)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from dockyard.core import FrontendError, Platform, UsageError
from dockyard.dockerfile import list_targets, outline_target, parse_dockerfile

AMD64 = Platform.parse("linux/amd64")

DOCKERFILE = """\
# syntax=docker/dockerfile:1
# GO_VERSION the Go toolchain <1.22>
ARG GO_VERSION=1.22
ARG ALPINE=3.19
ARG BASE=alpine:${ALPINE}
ARG UNUSED=nobody

# base the common base
FROM golang:${GO_VERSION} AS base
# PKG the package
ARG PKG=example.com/app
RUN --mount=type=secret,id=token,required=true go env

FROM base AS build
# TAGS build tags
ARG TAGS
RUN --mount=type=ssh --mount=type=secret,target=/run/secrets/npmrc make

# docs not needed by release
FROM alpine AS docs
ARG DOCS_FORMAT=html
RUN --mount=type=secret,id=docs-token make docs

FROM $BASE AS release
COPY --from=build /app /app

FROM --platform=$BUILDPLATFORM scratch
"""


def _outline(text: str = DOCKERFILE, **kwargs: Any) -> Any:
    return outline_target(parse_dockerfile(text), build_platform=AMD64, **kwargs)


def _lines(location: dict[str, Any]) -> list[tuple[int, int]]:
    return [(r["start"]["line"], r["end"]["line"]) for r in location["ranges"]]


# -- targets -------------------------------------------------------------------------------


def test_targets_list_every_stage_in_order() -> None:
    targets = list_targets(parse_dockerfile(DOCKERFILE)).targets
    assert [t.name for t in targets] == ["base", "build", "docs", "release", ""]
    assert [t.default for t in targets] == [False, False, False, False, True]
    assert [t.description for t in targets] == [
        "the common base",
        "",
        "not needed by release",
        "",
        "",
    ]
    # base and platform as written, variables not expanded
    assert [t.base for t in targets] == [
        "golang:${GO_VERSION}",
        "base",
        "alpine",
        "$BASE",
        "scratch",
    ]
    assert [t.platform for t in targets] == ["", "", "", "", "$BUILDPLATFORM"]
    assert [str(t.location) for t in targets] == [f"Dockerfile:{n}" for n in (9, 14, 20, 24, 27)]


def test_targets_text_is_buildx_table() -> None:
    assert list_targets(parse_dockerfile(DOCKERFILE)).to_text() == (
        "TARGET    DESCRIPTION\n"
        "base      the common base\n"
        "build     \n"
        "docs      not needed by release\n"
        "release   \n"
        "(default) \n"
    )
    named_last = parse_dockerfile("FROM scratch\n# app the app\nFROM scratch AS app\n")
    assert list_targets(named_last).to_text() == (
        "TARGET        DESCRIPTION\n" + " " * 14 + "\napp (default) the app\n"
    )


def test_targets_json_is_buildkit_targets_list() -> None:
    document = json.loads(list_targets(parse_dockerfile(DOCKERFILE)).to_json())
    assert set(document) == {"targets", "sources"}
    assert base64.b64decode(document["sources"][0]) == DOCKERFILE.encode()
    first, *_, last = document["targets"]
    assert first == {
        "name": "base",
        "description": "the common base",
        "base": "golang:${GO_VERSION}",
        "location": {"ranges": [{"start": {"line": 9}, "end": {"line": 9}}]},
    }
    # omitempty: no name, no description; default only where true
    assert last == {
        "default": True,
        "base": "scratch",
        "platform": "$BUILDPLATFORM",
        "location": {"ranges": [{"start": {"line": 27}, "end": {"line": 27}}]},
    }
    assert all("default" not in t for t in document["targets"][:-1])


def test_json_is_indented_and_escaped_as_go_writes_it() -> None:
    text = _outline(target="base").to_json()
    assert text.startswith('{\n  "name": "base",\n  "description": "the common base",\n')
    assert not text.endswith("\n")
    assert '"the Go toolchain \\u003c1.22\\u003e"' in text  # Go escapes <, > and &


# -- outline -------------------------------------------------------------------------------


def test_outline_of_the_default_target() -> None:
    outline = _outline()
    assert (outline.name, outline.description) == ("", "")
    assert outline.args == ()  # FROM --platform=$BUILDPLATFORM: no global ARG of the file
    assert outline.secrets == outline.ssh == ()


def test_outline_lists_what_the_target_and_its_stages_use() -> None:
    outline = _outline(target="release")
    assert outline.name == "release"
    # GO_VERSION: base's FROM; ALPINE: BASE's default uses it; BASE: release's FROM;
    # PKG and TAGS: ARGs of base and build. Not UNUSED, not docs' DOCS_FORMAT.
    assert [(a.name, a.value) for a in outline.args] == [
        ("GO_VERSION", "1.22"),
        ("ALPINE", "3.19"),
        ("BASE", "alpine:3.19"),
        ("PKG", "example.com/app"),
        ("TAGS", ""),
    ]
    assert [a.description for a in outline.args] == [
        "the Go toolchain <1.22>",
        "",
        "",
        "the package",
        "build tags",
    ]
    assert [str(a.location) for a in outline.args] == [f"Dockerfile:{n}" for n in (3, 4, 5, 11, 16)]
    assert [(s.name, s.required, str(s.location)) for s in outline.secrets] == [
        ("token", True, "Dockerfile:12"),
        ("npmrc", False, "Dockerfile:17"),  # no id: the target's file name
    ]
    assert [(s.name, s.required) for s in outline.ssh] == [("default", False)]


def test_outline_values_follow_build_args() -> None:
    outline = _outline(
        target="release",
        build_args={"ALPINE": "3.20", "TAGS": "netgo", "GO_VERSION": "1.23", "UNUSED": "x"},
    )
    values = {a.name: a.value for a in outline.args}
    assert values == {
        "GO_VERSION": "1.23",
        "ALPINE": "3.20",
        "BASE": "alpine:3.20",  # the default expands with the overridden ALPINE
        "PKG": "example.com/app",
        "TAGS": "netgo",
    }
    # a --build-arg of BASE replaces it: ALPINE is no longer used
    replaced = _outline(target="release", build_args={"BASE": "debian"})
    assert [a.name for a in replaced.args] == ["GO_VERSION", "BASE", "PKG", "TAGS"]
    assert replaced.args[1].value == "debian"


def test_outline_of_a_stage_alone() -> None:
    outline = _outline(target="docs")
    assert (outline.name, outline.description) == ("docs", "not needed by release")
    assert [(a.name, a.value) for a in outline.args] == [("DOCS_FORMAT", "html")]
    assert [s.name for s in outline.secrets] == ["docs-token"]
    assert outline.ssh == ()
    by_index = _outline(target="2")
    assert by_index.name == "docs"


def test_an_arg_redeclared_in_a_stage_stands_for_the_global_one() -> None:
    text = (
        "# VERSION the version\n"
        "ARG VERSION=1.0\n"
        "FROM scratch AS app\n"
        "ARG VERSION\n"
        "ARG TARGETARCH\n"
        "# MODE how to build\n"
        "ARG MODE=release-$VERSION\n"
    )
    outline = _outline(text)
    # VERSION: the global ARG (line 2); TARGETARCH: a platform argument, not listed
    assert [(a.name, a.value, a.description, str(a.location)) for a in outline.args] == [
        ("VERSION", "1.0", "the version", "Dockerfile:2"),
        ("MODE", "release-1.0", "how to build", "Dockerfile:7"),
    ]
    overridden = _outline(text, build_args={"VERSION": "2.0"})
    # a --build-arg for it: the stage's ARG defines it (and MODE expands with it)
    assert [(a.name, a.value, str(a.location)) for a in overridden.args] == [
        ("VERSION", "2.0", "Dockerfile:4"),
        ("MODE", "release-2.0", "Dockerfile:7"),
    ]


def test_outline_follows_run_mount_from_and_copy_from_index() -> None:
    text = (
        "FROM scratch AS tools\n"
        "ARG TOOLS_VERSION=1\n"
        "FROM scratch AS assets\n"
        "ARG ASSETS=all\n"
        "RUN --mount=type=ssh,id=github,required=true true\n"
        "FROM busybox\n"
        "RUN --mount=from=tools,target=/t true\n"
        "COPY --from=1 / /\n"
        "COPY --from=busybox:latest / /\n"
    )
    outline = _outline(text)
    assert [a.name for a in outline.args] == ["TOOLS_VERSION", "ASSETS"]
    assert [(s.name, s.required) for s in outline.ssh] == [("github", True)]


def test_mount_values_may_use_args() -> None:
    text = "FROM busybox\nARG SECRET_ID=npm\nRUN --mount=type=secret,id=$SECRET_ID true\n"
    assert [s.name for s in _outline(text).secrets] == ["npm"]
    assert [s.name for s in _outline(text, build_args={"SECRET_ID": "pip"}).secrets] == ["pip"]


def test_outline_text_is_buildx_tables() -> None:
    assert _outline(target="release", build_args={"TAGS": "netgo"}).to_text() == (
        "TARGET: release\n"
        "\n"
        "BUILD ARG    VALUE             DESCRIPTION\n"
        "GO_VERSION   1.22              the Go toolchain <1.22>\n"
        "ALPINE       3.19              \n"
        "BASE         alpine:3.19       \n"
        "PKG          example.com/app   the package\n"
        "TAGS         netgo             build tags\n"
        "\n"
        "SECRET   REQUIRED\n"
        "token    true\n"
        "npmrc    \n"
        "\n"
        "SSH       REQUIRED\n"
        "default   \n"
        "\n"
    )
    assert (
        _outline(target="base")
        .to_text()
        .startswith("TARGET:      base\nDESCRIPTION: the common base\n\nBUILD ARG")
    )
    assert _outline("FROM scratch\n").to_text() == ""  # nothing to tell


def test_outline_json_is_buildkit_outline() -> None:
    document = json.loads(_outline(target="build").to_json())
    assert list(document) == ["name", "args", "secrets", "ssh", "sources"]
    assert document["args"][0] == {
        "name": "GO_VERSION",
        "description": "the Go toolchain <1.22>",
        "value": "1.22",
        "location": {"ranges": [{"start": {"line": 3}, "end": {"line": 3}}]},
    }
    tags = document["args"][-1]
    assert tags["name"] == "TAGS"
    assert "value" not in tags  # omitempty
    assert document["secrets"][0] == {
        "name": "token",
        "required": True,
        "location": {"ranges": [{"start": {"line": 12}, "end": {"line": 12}}]},
    }
    assert _lines(document["ssh"][0]["location"]) == [(17, 17)]
    assert "required" not in document["ssh"][0]
    assert base64.b64decode(document["sources"][0]) == DOCKERFILE.encode()
    bare = json.loads(_outline("FROM scratch\n").to_json())
    assert list(bare) == ["sources"]


def test_an_unknown_target_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match=r"target stage 'biuld' could not be found \(did you mean build\?\)"
    ):
        _outline(target="biuld")


def test_a_from_that_cannot_expand_is_located() -> None:
    with pytest.raises(FrontendError) as info:
        _outline("ARG X\nFROM ${X:?X is needed}\n")
    assert str(info.value.locations[0]) == "Dockerfile:2"
