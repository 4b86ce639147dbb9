"""``dockyard build --provenance`` / ``--attest type=provenance`` end to end: a real
sandboxed build pushed to the test's own registry (the index with its attestation
manifest, read back over HTTP), a ``type=local`` output's ``provenance.json``, and no
secret value anywhere."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from dockyard.testing.registry import REGISTRY_BINARY, RegistryProcess, start_registry
from tests.integration.conftest import requirement_missing

from .conftest import all_bytes_under

SECRET_VALUE = "s3cret-from-the-secret-file"
ARG_VALUE = "tok-4f1d9c-secret-build-arg"
DOCKERFILE = """\
FROM busybox
ARG API_TOKEN
ARG PLAIN=plain-default
RUN --mount=type=secret,id=mytoken test -s /run/secrets/mytoken && echo "$PLAIN" > /plain.txt
"""
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "secret.txt").write_text(SECRET_VALUE)
    return context


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    if not Path(REGISTRY_BINARY).exists():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    process = start_registry(tmp_path / "registry")
    try:
        yield process
    finally:
        process.stop()


def _get(registry: RegistryProcess, path: str, accept: str = "") -> tuple[bytes, str]:
    request = urllib.request.Request(f"{registry.url}{path}")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request) as answer:
        return answer.read(), answer.headers.get("Content-Type", "")


def _build(state: Path, project: Path, *extra: str) -> list[str]:
    return [
        "build", "--state-dir", str(state), "--progress", "plain",
        "--secret", f"id=mytoken,src={project.parent / 'secret.txt'}",
        "--build-arg", f"API_TOKEN={ARG_VALUE}",
        "--build-arg", "PLAIN=visible-value",
        *extra, str(project),
    ]  # fmt: skip


def test_push_with_provenance_min(
    state: Path,
    tmp_path: Path,
    project: Path,
    registry: RegistryProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = registry.ref("attested:v1")
    meta = tmp_path / "meta.json"
    code = main(
        _build(state, project, "--provenance=mode=min", "-t", ref, "--push",
               "--metadata-file", str(meta))
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metadata = json.loads(meta.read_text())
    index_bytes, kind = _get(registry, "/v2/attested/manifests/v1", OCI_INDEX)
    assert kind == OCI_INDEX
    digest = "sha256:" + hashlib.sha256(index_bytes).hexdigest()
    assert metadata["containerimage.digest"] == digest  # the index is the image
    index = json.loads(index_bytes)
    image, attestation = index["manifests"]
    assert image["mediaType"] == OCI_MANIFEST
    assert image["platform"]["os"] == "linux"
    assert attestation["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert attestation["annotations"] == {
        "vnd.docker.reference.digest": image["digest"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    manifest = json.loads(_get(registry, f"/v2/attested/manifests/{attestation['digest']}",
                               OCI_MANIFEST)[0])  # fmt: skip
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.in-toto+json"
    assert layer["annotations"] == {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
    blob, _ = _get(registry, f"/v2/attested/blobs/{layer['digest']}")
    statement = json.loads(blob)
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v0.2"
    platform = f"{image['platform']['os']}%2F{image['platform']['architecture']}"
    assert statement["subject"] == [
        {
            "name": f"pkg:docker/{registry.host}/attested@v1?platform={platform}",
            "digest": {"sha256": image["digest"].removeprefix("sha256:")},
        }
    ]
    predicate = statement["predicate"]
    assert predicate["buildType"] == "https://mobyproject.org/buildkit@v1"
    assert predicate["invocation"]["configSource"] == {"entryPoint": "Dockerfile"}
    parameters = predicate["invocation"]["parameters"]
    assert parameters["frontend"] == "dockerfile.v0"
    assert not any(k.startswith("build-arg:") for k in parameters.get("args", {}))
    assert "secrets" not in parameters  # min mode
    assert {"name": "context"} in parameters["locals"]
    (material,) = predicate["materials"]
    # the frontend pinned the tag it resolved: BuildKit's package URL of a pinned ref
    pinned = material["digest"]["sha256"]
    assert material["uri"] == (
        f"pkg:docker/busybox@latest?digest=sha256%3A{pinned}&platform={platform}"
    )
    metadata_p = predicate["metadata"]
    assert metadata_p["completeness"] == {
        "parameters": False, "environment": True, "materials": False
    }  # fmt: skip
    assert len(metadata_p["buildInvocationID"]) == 25
    assert metadata_p["buildStartedOn"] <= metadata_p["buildFinishedOn"]
    for text in (blob.decode(), captured.out, captured.err, meta.read_text()):
        assert SECRET_VALUE not in text
        assert ARG_VALUE not in text


def test_max_mode_to_local_output_keeps_secrets_out(
    state: Path, tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(_build(state, project, "--attest", "type=provenance,mode=max",
                       "-o", f"type=local,dest={out}"))  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    statement = json.loads((out / "provenance.json").read_text())
    plain = (out / "plain.txt").read_bytes()
    assert {"name": "plain.txt", "digest": {"sha256": hashlib.sha256(plain).hexdigest()}} in (
        statement["subject"]
    )
    assert all(s["name"] != "provenance.json" for s in statement["subject"])
    parameters = statement["predicate"]["invocation"]["parameters"]
    assert parameters["args"]["build-arg:PLAIN"] == "visible-value"  # max mode keeps args
    assert "build-arg:API_TOKEN" not in parameters["args"]  # but not secret-looking ones
    assert parameters["secrets"] == [{"id": "mytoken", "optional": True}]  # ids, no values
    assert "llbDefinition" in statement["predicate"]["buildConfig"]
    assert statement["predicate"]["metadata"]["completeness"]["parameters"] is False
    for _, data in all_bytes_under(out):
        assert SECRET_VALUE.encode() not in data
        assert ARG_VALUE.encode() not in data
    assert ARG_VALUE not in captured.err
    assert SECRET_VALUE not in captured.err


def test_no_provenance_unless_asked(
    state: Path, tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off by default (a deviation from buildx's mode=min), and when turned off."""
    for i, flags in enumerate(
        [(), ("--provenance=false",), ("--attest", "type=provenance,disabled=true")]
    ):
        out = tmp_path / f"out{i}"
        assert main(_build(state, project, *flags, "-o", f"type=local,dest={out}")) == 0, (
            capsys.readouterr().err
        )
        assert (out / "plain.txt").exists()
        assert not (out / "provenance.json").exists()
