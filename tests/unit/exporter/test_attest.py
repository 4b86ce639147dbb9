"""Attestations in exports: the flags, package URLs, the index with its attestation
manifests (image store, OCI layout, multi-platform), provenance.json of local/tar."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import Digest, Platform, UsageError
from dockyard.exporter import (
    Attestation,
    ExportRequest,
    PlatformExport,
    ProvenanceOptions,
    image_purl,
    parse_attest_flag,
    parse_output,
    parse_provenance_flag,
    resolve,
)
from dockyard.registry import Reference

from .conftest import T0, State, frontend_config

SLSA = "https://slsa.dev/provenance/v0.2"
ATTESTATION = Attestation(predicate_type=SLSA, predicate={"buildType": "test"})
AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("true", ProvenanceOptions()),
        ("1", ProvenanceOptions()),
        ("false", None),
        ("mode=max", ProvenanceOptions(mode="max")),
        ("mode=full", ProvenanceOptions(mode="max")),
        ("mode=min,builder-id=https://ci/1", ProvenanceOptions(builder_id="https://ci/1")),
        ("mode=max,disabled=true", None),
        ("reproducible=true", ProvenanceOptions(reproducible=True)),
        ("mode=max,version=v1", ProvenanceOptions(mode="max", version="v1")),
        ("version=v0.2", ProvenanceOptions()),
    ],
)
def test_provenance_flag(flag: str, expected: ProvenanceOptions | None) -> None:
    assert parse_provenance_flag(flag) == expected


def test_attest_flag() -> None:
    assert parse_attest_flag("type=provenance") == ProvenanceOptions()
    assert parse_attest_flag("type=provenance,mode=max") == ProvenanceOptions(mode="max")
    assert parse_attest_flag("type=provenance,version=v1") == ProvenanceOptions(version="v1")
    for bad in (
        "type=sbom",
        "mode=max",
        "type=provenance,mode=all",
        "type=provenance,x=1",
        "type=provenance,version=v2",
        "type=provenance,version=1.0",
    ):
        with pytest.raises(UsageError):
            parse_attest_flag(bad)


def test_attr_round_trip() -> None:
    options = ProvenanceOptions(mode="max", builder_id="https://ci/run,1", reproducible=True)
    assert ProvenanceOptions.from_attr(options.to_attr()) == options
    assert ProvenanceOptions.from_attr("") == ProvenanceOptions()
    v1 = ProvenanceOptions(mode="max", version="v1")
    assert v1.to_attr() == "mode=max,version=v1"
    assert ProvenanceOptions.from_attr(v1.to_attr()) == v1
    assert v1.predicate_type == "https://slsa.dev/provenance/v1"
    assert ProvenanceOptions().predicate_type == SLSA


async def test_late_predicate_is_made_as_the_statement_is_written(
    state: State, tmp_path: Path
) -> None:
    calls: list[int] = []

    async def late() -> dict[str, str]:
        calls.append(1)
        return {"buildType": "late"}

    ref = await state.layer(lambda root: (root / "a.txt").write_text("ay"), description="RUN w")
    dest = tmp_path / "out"
    exporter = resolve(parse_output(f"type=local,dest={dest}"), state.services)
    early = Attestation(predicate_type=SLSA, predicate={"buildType": "early"}, late=late)
    await exporter.export(ExportRequest(ref=ref, epoch=T0, attestations=(early,)))
    assert calls == [1]
    statement = json.loads((dest / "provenance.json").read_text())
    assert statement["predicate"] == {"buildType": "late"}


@pytest.mark.parametrize(
    ("ref", "platform", "purl"),
    [
        ("alpine:3.17", AMD64, "pkg:docker/alpine@3.17?platform=linux%2Famd64"),
        ("busybox", None, "pkg:docker/busybox@latest"),
        ("user/app:v1", ARM64, "pkg:docker/user/app@v1?platform=linux%2Farm64"),
        ("127.0.0.1:5000/team/app:v2", None, "pkg:docker/127.0.0.1:5000/team/app@v2"),
        (
            "alpine@sha256:" + "a" * 64,
            None,
            "pkg:docker/alpine@sha256:" + "a" * 64,
        ),
        (
            "alpine:3@sha256:" + "b" * 64,
            AMD64,
            "pkg:docker/alpine@3?digest=sha256%3A" + "b" * 64 + "&platform=linux%2Famd64",
        ),
    ],
)
def test_image_purl(ref: str, platform: Platform | None, purl: str) -> None:
    assert image_purl(Reference.parse(ref, default_tag=""), platform) == purl


async def _read_json(state: State, digest: str) -> Any:
    return json.loads(await state.content.read(Digest.parse(digest)))


async def _check_index(state: State, index: Any, names: list[str]) -> None:
    """Every image manifest in ``index`` followed by its attestation manifest."""
    manifests = index["manifests"]
    images = [m for m in manifests if m["platform"]["os"] != "unknown"]
    attestations = manifests[len(images) :]
    assert len(attestations) == len(images)
    for image, attestation in zip(images, attestations, strict=True):
        assert attestation["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert attestation["annotations"] == {
            "vnd.docker.reference.digest": image["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        }
        assert attestation["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        manifest = await _read_json(state, attestation["digest"])
        config = await _read_json(state, manifest["config"]["digest"])
        assert config["architecture"] == config["os"] == "unknown"
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.in-toto+json"
        assert layer["annotations"] == {"in-toto.io/predicate-type": SLSA}
        statement = await _read_json(state, layer["digest"])
        assert list(statement) == ["_type", "predicateType", "subject", "predicate"]
        assert statement["predicate"] == {"buildType": "test"}
        platform = f"{image['platform']['os']}%2F{image['platform']['architecture']}"
        hex_ = image["digest"].removeprefix("sha256:")
        expected = [
            {"name": n + f"?platform={platform}", "digest": {"sha256": hex_}} for n in names
        ]
        assert statement["subject"] == (expected or [{"name": "_", "digest": {"sha256": hex_}}])


async def test_image_export_of_one_platform_becomes_an_index(state: State) -> None:
    ref = await state.layer(lambda root: (root / "f").write_text("x"), description="RUN x")
    exporter = resolve(parse_output("type=image,name=example.com/app:v1"), state.services)
    response = await exporter.export(
        ExportRequest(
            ref=ref, epoch=T0, image_config=frontend_config(), attestations=(ATTESTATION,)
        )
    )
    assert response.descriptor is not None
    assert response.descriptor.media_type == "application/vnd.oci.image.index.v1+json"
    stored = await state.images.get("example.com/app:v1")
    assert stored.target.digest == response.image_digest  # the index is the image
    index = await _read_json(state, str(response.image_digest))
    await _check_index(state, index, ["pkg:docker/example.com/app@v1"])
    image = await _read_json(state, index["manifests"][0]["digest"])
    assert response.config_digest == image["config"]["digest"]  # --iidfile stays the config


async def test_oci_archive_of_platforms(state: State, tmp_path: Path) -> None:
    parts = []
    for platform in (AMD64, ARM64):
        ref = await state.layer(lambda root: (root / "p").write_text("p"), description="RUN p")
        config = dataclasses.replace(
            frontend_config(), architecture=platform.architecture, os=platform.os
        )
        parts.append(
            PlatformExport(
                platform=platform, ref=ref, image_config=config, attestations=(ATTESTATION,)
            )
        )
    dest = tmp_path / "out.tar"
    exporter = resolve(parse_output(f"type=oci,dest={dest}"), state.services)
    response = await exporter.export(ExportRequest(ref=None, epoch=T0, platforms=tuple(parts)))
    with tarfile.open(dest) as tar:
        names = set(tar.getnames())
        layout = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    (entry,) = layout["manifests"]
    assert entry["digest"] == str(response.image_digest)
    index = await _read_json(state, entry["digest"])
    assert len(index["manifests"]) == 4
    await _check_index(state, index, [])
    for m in index["manifests"]:  # every manifest is in the archive
        assert "blobs/sha256/" + m["digest"].removeprefix("sha256:") in names


async def test_docker_archive_of_an_attested_image(state: State, tmp_path: Path) -> None:
    ref = await state.layer(lambda root: (root / "f").write_text("x"), description="RUN x")
    dest = tmp_path / "out.tar"
    exporter = resolve(parse_output(f"type=docker,name=app:v1,dest={dest}"), state.services)
    await exporter.export(
        ExportRequest(
            ref=ref, epoch=T0, image_config=frontend_config(), attestations=(ATTESTATION,)
        )
    )
    with tarfile.open(dest) as tar:
        manifest_json = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        layout = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = set(tar.getnames())
    assert manifest_json[0]["RepoTags"] == ["app:v1"]
    index = await _read_json(state, layout["manifests"][0]["digest"])
    await _check_index(state, index, ["pkg:docker/app@v1"])
    for m in index["manifests"]:
        assert "blobs/sha256/" + m["digest"].removeprefix("sha256:") in names


async def test_local_export_writes_provenance_json(state: State, tmp_path: Path) -> None:
    def write(root: Path) -> None:
        (root / "dir").mkdir()
        (root / "dir" / "b.txt").write_text("bee")
        (root / "a.txt").write_text("ay")
        (root / "link").symlink_to("a.txt")

    ref = await state.layer(write, description="RUN w")
    dest = tmp_path / "out"
    exporter = resolve(parse_output(f"type=local,dest={dest}"), state.services)
    await exporter.export(ExportRequest(ref=ref, epoch=T0, attestations=(ATTESTATION,)))
    path = dest / "provenance.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert int(path.stat().st_mtime) == T0
    statement = json.loads(path.read_text())
    assert statement["subject"] == [
        {"name": "a.txt", "digest": {"sha256": hashlib.sha256(b"ay").hexdigest()}},
        {"name": "dir/b.txt", "digest": {"sha256": hashlib.sha256(b"bee").hexdigest()}},
    ]
    assert path.read_text().startswith('{\n  "_type": "https://in-toto.io/Statement/v0.1",')


async def test_tar_export_of_platforms_has_one_statement_each(state: State, tmp_path: Path) -> None:
    parts = []
    for platform in (AMD64, ARM64):

        def write(root: Path, p: Platform = platform) -> None:
            (root / "p").write_text(str(p))

        ref = await state.layer(write, description="RUN p")
        parts.append(PlatformExport(platform=platform, ref=ref, attestations=(ATTESTATION,)))
    dest = tmp_path / "out.tar"
    exporter = resolve(parse_output(f"type=tar,dest={dest}"), state.services)
    await exporter.export(ExportRequest(ref=None, epoch=T0, platforms=tuple(parts)))
    with tarfile.open(dest) as tar:
        for name in ("linux_amd64", "linux_arm64"):
            member = tar.getmember(f"{name}/provenance.json")
            assert member.mode == 0o600
            statement = json.load(io.BytesIO(tar.extractfile(member).read()))  # type: ignore[union-attr]
            data = name.replace("_", "/").encode()
            assert statement["subject"] == [
                {"name": "p", "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
            ]


async def test_local_export_without_platform_split(state: State, tmp_path: Path) -> None:
    parts = []
    for platform in (AMD64, ARM64):
        ref = await state.layer(lambda root: (root / "p").write_text("p"), description="RUN p")
        parts.append(PlatformExport(platform=platform, ref=ref, attestations=(ATTESTATION,)))
    dest = tmp_path / "out"
    spec = f"type=local,dest={dest},platform-split=false"
    await resolve(parse_output(spec), state.services).export(
        ExportRequest(ref=None, epoch=T0, platforms=tuple(parts))
    )
    assert (dest / "provenance.linux_amd64.json").exists()
    assert (dest / "provenance.linux_arm64.json").exists()
