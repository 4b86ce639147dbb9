"""The SLSA v0.2 predicate BuildKit makes, for a fixed capture: golden JSON in
``tests/data/provenance`` (the volatile fields — invocation id, times — are inputs
here, fixed), and what each mode leaves out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import Platform
from dockyard.exporter import ProvenanceOptions
from dockyard.llbsolver import (
    CONTEXT_DIGEST_ATTR,
    ProvenanceCapture,
    provenance_predicate,
    secret_looking,
)
from dockyard.oci import canonical_json

DATA = Path(__file__).resolve().parents[2] / "data" / "provenance"
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
)
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


def _predicate(mode: str) -> dict[str, Any]:
    return provenance_predicate(
        CAPTURE,
        options=ProvenanceOptions(mode=mode, builder_id="https://ci.example.com/run/7"),  # type: ignore[arg-type]
        frontend="dockerfile.v0",
        attrs=ATTRS,
        builder_platform=Platform.parse("linux/amd64"),
        started_ns=1_700_000_000_123_000_000,
        finished_ns=1_700_000_042_000_000_000,
        invocation="rpv7a389uzil5lqmrgwhijwjz",
    )


@pytest.mark.parametrize("mode", ["min", "max"])
def test_golden(mode: str) -> None:
    got = canonical_json(_predicate(mode), indent=2).decode() + "\n"
    golden = DATA / f"predicate-{mode}.json"
    assert got == golden.read_text()


def test_no_secret_anywhere() -> None:
    for mode in ("min", "max"):
        text = json.dumps(_predicate(mode))
        assert TOKEN not in text
        assert "pw@" not in text


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
    locals=("context", "dockerfile"),
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
