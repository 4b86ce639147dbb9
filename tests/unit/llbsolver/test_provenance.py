"""The SLSA v0.2 and v1 predicates BuildKit makes, for a fixed capture: golden JSON in
``tests/data/provenance`` (the volatile fields — invocation id, times — are inputs
here, fixed), what each mode leaves out, and what a capture reads from a converted
Dockerfile's Definition (steps, the terminal one last; the source map)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import Platform
from dockyard.exporter import ProvenanceOptions
from dockyard.llbsolver import (
    BUILDKIT_BUILD_TYPE_V1,
    CONTEXT_DIGEST_ATTR,
    ProvenanceCapture,
    capture_provenance,
    provenance_predicate,
    secret_looking,
    slsa1_predicate,
)
from dockyard.oci import canonical_json

DATA = Path(__file__).resolve().parents[2] / "data" / "provenance"
METADATA = "https://mobyproject.org/buildkit@v1#metadata"
HERMETIC = "https://mobyproject.org/buildkit@v1#hermetic"
TOKEN = "ghp_0123456789abcdef"
CAPTURE = ProvenanceCapture(
    materials=(
        ("pkg:docker/alpine@3.19?platform=linux%2Famd64", (("sha256", "a" * 64),)),
        ("https://example.com/repo.git#main", (("sha1", "c" * 40),)),
        ("https://example.com/file.tar.gz", (("sha256", "d" * 64),)),
    ),
    locals=("context", "dockerfile"),
    secrets=(("npmrc", True),),
    ssh=(("default", False),),
    network=True,
    steps=(
        {
            "id": "step0",
            "op": {
                "Op": {
                    "exec": {
                        "meta": {
                            "args": ["sh", "-c", "make"],
                            "env": [f"GITHUB_TOKEN={TOKEN}", "PLAIN=1"],
                        }
                    }
                }
            },
        },
    ),
    digest_mapping=(("sha256:" + "e" * 64, "step0"),),
    source={
        "locations": {
            "step0": {"locations": [{"ranges": [{"start": {"line": 3}, "end": {"line": 3}}]}]}
        },
        "infos": [
            {
                "filename": "Dockerfile",
                "language": "Dockerfile",
                # a secret-looking argument's value is blanked in the file's copy too
                "data": f"FROM alpine\nARG GITHUB_TOKEN\nRUN make # {TOKEN}\n".encode(),
            }
        ],
    },
)
LAYERS = {
    "step0:0": [
        [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "1" * 64,
                "size": 1234,
            }
        ]
    ]
}
ATTRS = {
    "filename": "Dockerfile",
    "target": "release",
    "build-arg:VERSION": "1.2.3",
    "build-arg:GITHUB_TOKEN": TOKEN,
    "label:team": "core",
    "platform": "linux/amd64",
    "image-resolve-mode": "pull",
    "attest:provenance": "mode=max",
    "vcs:source": "https://example.com/app.git",
    "vcs:revision": "f" * 40,
    "context:base": "https://user:pw@example.com/base.git",
}


def _predicate(mode: str, capture: ProvenanceCapture = CAPTURE) -> dict[str, Any]:
    return provenance_predicate(
        capture,
        options=ProvenanceOptions(mode=mode, builder_id="https://ci.example.com/run/7"),  # type: ignore[arg-type]
        frontend="dockerfile.v0",
        attrs=ATTRS,
        builder_platform=Platform.parse("linux/amd64"),
        started_ns=1_700_000_000_123_000_000,
        finished_ns=1_700_000_042_000_000_000,
        invocation="rpv7a389uzil5lqmrgwhijwjz",
        layers=LAYERS,
    )


@pytest.mark.parametrize("mode", ["min", "max"])
def test_golden(mode: str) -> None:
    got = canonical_json(_predicate(mode), indent=2).decode() + "\n"
    golden = DATA / f"predicate-{mode}.json"
    assert got == golden.read_text()


@pytest.mark.parametrize("mode", ["min", "max"])
def test_golden_v1(mode: str) -> None:
    got = canonical_json(slsa1_predicate(_predicate(mode)), indent=2).decode() + "\n"
    golden = DATA / f"predicate-v1-{mode}.json"
    assert got == golden.read_text()


def test_no_secret_anywhere() -> None:
    for mode in ("min", "max"):
        for predicate in (_predicate(mode), slsa1_predicate(_predicate(mode))):
            text = json.dumps(predicate)
            assert TOKEN not in text
            assert "pw@" not in text
            for info in predicate_source(predicate).get("infos", []):
                assert TOKEN.encode() not in base64.b64decode(info["data"])


def predicate_source(predicate: dict[str, Any]) -> dict[str, Any]:
    if "runDetails" in predicate:
        found: dict[str, Any] = predicate["runDetails"]["metadata"]["buildkit_metadata"]
    else:
        found = predicate["metadata"]["https://mobyproject.org/buildkit@v1#metadata"]
    return dict(found.get("source", {}))


def test_max_mode_source_and_layers_only() -> None:
    maximal = _predicate("max")["metadata"][METADATA]
    assert set(maximal) == {"vcs", "source", "layers"}
    assert maximal["source"]["locations"] == CAPTURE.source["locations"]  # type: ignore[index]
    assert maximal["layers"] == LAYERS
    minimal = _predicate("min")["metadata"][METADATA]
    assert set(minimal) == {"vcs"}


def test_hermetic_needs_complete_materials_and_no_network() -> None:
    hermetic = dataclasses.replace(CAPTURE, locals=(), network=False)
    assert _predicate("min", hermetic)["metadata"][HERMETIC] is True
    v1 = slsa1_predicate(_predicate("min", hermetic))["runDetails"]["metadata"]
    assert v1["buildkit_hermetic"] is True
    assert v1["buildkit_completeness"]["resolvedDependencies"] is True
    for capture in (
        dataclasses.replace(CAPTURE, locals=(), network=True),  # a RUN with network access
        dataclasses.replace(CAPTURE, locals=("context",), network=False),  # a local dir read
    ):
        assert HERMETIC not in _predicate("min", capture)["metadata"]
        assert (
            "buildkit_hermetic"
            not in slsa1_predicate(_predicate("min", capture))["runDetails"]["metadata"]
        )


def test_v1_shape() -> None:
    v1 = slsa1_predicate(_predicate("max"))
    assert list(v1) == ["buildDefinition", "runDetails"]
    definition = v1["buildDefinition"]
    assert definition["buildType"] == BUILDKIT_BUILD_TYPE_V1
    assert definition["externalParameters"]["configSource"] == {"path": "Dockerfile"}
    assert definition["externalParameters"]["request"]["frontend"] == "dockerfile.v0"
    assert definition["internalParameters"]["builderPlatform"] == "linux/amd64"
    assert definition["internalParameters"]["buildConfig"]["llbDefinition"][0]["id"] == "step0"
    assert next(d["uri"] for d in definition["resolvedDependencies"]).startswith("pkg:docker/")
    run = v1["runDetails"]
    assert run["builder"] == {"id": "https://ci.example.com/run/7"}
    assert run["metadata"]["invocationId"] == "rpv7a389uzil5lqmrgwhijwjz"
    assert run["metadata"]["startedOn"] == "2023-11-14T22:13:20.123Z"
    assert "internalParameters" in slsa1_predicate(_predicate("min"))["buildDefinition"]
    assert (
        "buildConfig"
        not in slsa1_predicate(_predicate("min"))["buildDefinition"]["internalParameters"]
    )


def test_min_mode_leaves_out_args_and_secrets() -> None:
    predicate = _predicate("min")
    parameters = predicate["invocation"]["parameters"]
    assert set(parameters["args"]) == {"target", "context:base"}
    assert "secrets" not in parameters
    assert "ssh" not in parameters
    assert "buildConfig" not in predicate
    assert predicate["metadata"]["completeness"]["parameters"] is False


def test_max_mode_without_secret_looking_args_is_complete() -> None:
    attrs = {k: v for k, v in ATTRS.items() if k != "build-arg:GITHUB_TOKEN"}
    predicate = provenance_predicate(
        CAPTURE,
        options=ProvenanceOptions(mode="max"),
        frontend="dockerfile.v0",
        attrs=attrs,
        builder_platform=Platform.parse("linux/amd64"),
        started_ns=0,
        finished_ns=0,
        invocation="x",
    )
    assert predicate["metadata"]["completeness"]["parameters"] is True


@pytest.mark.parametrize(
    ("name", "secret"),
    [("GITHUB_TOKEN", True), ("password", True), ("API_KEY", True), ("AWS_SECRET", True),
     ("PUBLIC_KEY", False), ("VERSION", False), ("TOKENIZER", False), ("KEYBOARD", False)],
)  # fmt: skip
def test_secret_looking(name: str, secret: bool) -> None:
    assert secret_looking(name) is secret


# -- a remote context the client fetched and serves as a directory ------------------------

REMOTE_CAPTURE = ProvenanceCapture(
    materials=(
        ("pkg:docker/alpine@3.19?platform=linux%2Famd64", (("sha256", "a" * 64),)),
        ("https://example.com/other.tar.gz", (("sha256", "d" * 64),)),
    ),
    locals=(),  # the directories the client served the fetched context from are no locals
)


def _remote_predicate(context: str, digest: str) -> dict[str, Any]:
    return provenance_predicate(
        REMOTE_CAPTURE,
        options=ProvenanceOptions(mode="min"),
        frontend="dockerfile.v0",
        attrs={
            "filename": "Dockerfile",
            "context": context,
            CONTEXT_DIGEST_ATTR: digest,
            "attest:provenance": "mode=min",
        },
        builder_platform=Platform.parse("linux/amd64"),
        started_ns=1_700_000_000_123_000_000,
        finished_ns=1_700_000_042_000_000_000,
        invocation="rpv7a389uzil5lqmrgwhijwjz",
    )


def test_golden_remote_git_context() -> None:
    """``configSource`` names the URL (credentials masked) and the commit; the context
    is a git material, as when BuildKit's frontend fetches the URL itself."""
    predicate = _remote_predicate("https://user:pw@example.com/app.git#v1", "sha1:" + "b" * 40)
    got = canonical_json(predicate, indent=2).decode() + "\n"
    assert got == (DATA / "predicate-remote-context.json").read_text()
    assert "pw@" not in got
    assert CONTEXT_DIGEST_ATTR not in got


def test_remote_http_context() -> None:
    predicate = _remote_predicate("https://example.com/ctx.tar.gz", "sha256:" + "e" * 64)
    assert predicate["invocation"]["configSource"] == {
        "uri": "https://example.com/ctx.tar.gz",
        "digest": {"sha256": "e" * 64},
        "entryPoint": "Dockerfile",
    }
    assert [m["uri"] for m in predicate["materials"]] == [
        "pkg:docker/alpine@3.19?platform=linux%2Famd64",
        "https://example.com/ctx.tar.gz",
        "https://example.com/other.tar.gz",
    ]
    assert "args" not in predicate["invocation"]["parameters"]


@pytest.mark.parametrize(
    "digest", ["", "sha1:" + "b" * 39, "md5:" + "b" * 32, "sha256:" + "G" * 64, "sha1" + "b" * 40]
)
def test_a_bad_context_digest_is_not_recorded(digest: str) -> None:
    predicate = _remote_predicate("https://example.com/app.git", digest)
    assert predicate["invocation"]["configSource"] == {
        "uri": "https://example.com/app.git",
        "entryPoint": "Dockerfile",
    }
    assert len(predicate["materials"]) == 2


# -- what a capture reads from a converted Dockerfile's Definition ------------------------

DOCKERFILE = """\
FROM busybox
COPY app.txt /app.txt
RUN --network=none --mount=type=secret,id=npmrc cat /app.txt
"""


async def _capture(text: str, **kwargs: Any) -> ProvenanceCapture:
    from dockyard.dockerfile import ConvertOptions, convert, parse_dockerfile
    from tests.unit.dockerfile.test_convert_golden import FakeResolver

    result = await convert(
        parse_dockerfile(text),
        ConvertOptions(build_platform=Platform.parse("linux/amd64")),
        FakeResolver(),
    )
    return capture_provenance(
        result.definition(), [], platform=Platform.parse("linux/amd64"), steps=True, **kwargs
    )


async def test_capture_steps_end_with_the_terminal_op() -> None:
    captured = await _capture(DOCKERFILE)
    *ops, terminal = captured.steps
    assert terminal["op"] == {}  # BuildKit lists the terminal op last, without an op
    assert terminal["inputs"] == [f"{ops[-1]['id']}:0"]
    assert [s["id"] for s in captured.steps] == [f"step{i}" for i in range(len(captured.steps))]
    assert len(dict(captured.digest_mapping)) == len(captured.steps)
    local = next(s for s in ops if "source" in s["op"]["Op"] and "local://" in str(s["op"]))
    attrs = local["op"]["Op"]["source"].get("attrs", {})
    assert "local.session" not in attrs
    assert "local.unique" not in attrs
    assert captured.secrets == (("npmrc", True),)  # optional unless required=true
    assert captured.network is False  # the only RUN had --network=none


def test_steps_leave_session_attributes_out() -> None:
    from dockyard import llb

    state = llb.local("context", session_id="sess-123", shared_key_hint="ctx")
    captured = capture_provenance(
        state.marshal(), [], platform=Platform.parse("linux/amd64"), steps=True
    )
    attrs = captured.steps[0]["op"]["Op"]["source"]["attrs"]
    assert "local.session" not in attrs
    assert "sess-123" not in json.dumps(captured.steps)
    assert attrs["local.sharedkeyhint"] == "ctx"
    assert captured.source is None  # no source map given


async def test_capture_source_map_of_the_dockerfile() -> None:
    captured = await _capture(DOCKERFILE)
    assert captured.source is not None
    (info,) = captured.source["infos"]
    assert info == {"filename": "Dockerfile", "language": "Dockerfile", "data": DOCKERFILE.encode()}
    steps = {s["id"]: s for s in captured.steps}
    lines = {}
    for step, where in captured.source["locations"].items():
        (location,) = where["locations"]
        (span,) = location["ranges"]
        lines[step] = (span["start"]["line"], span["end"]["line"])
        assert step in steps
    run = next(s["id"] for s in captured.steps if "exec" in s["op"].get("Op", {}))
    assert lines[run] == (3, 3)
    assert (1, 1) in lines.values()  # the FROM line's image source
    predicate = _predicate("max", dataclasses.replace(CAPTURE, source=captured.source))
    (written,) = predicate["metadata"][METADATA]["source"]["infos"]
    assert base64.b64decode(written["data"]) == DOCKERFILE.encode()


async def test_capture_leaves_served_locals_out() -> None:
    captured = await _capture(
        DOCKERFILE, read_locals=("context", "dockerfile"), served_locals=("context", "dockerfile")
    )
    assert captured.locals == ()
    captured = await _capture(DOCKERFILE, read_locals=("context", "dockerfile"))
    assert captured.locals == ("context", "dockerfile")
