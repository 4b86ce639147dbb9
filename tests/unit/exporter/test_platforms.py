"""Multi-platform exports: an index of per-platform manifests (image store, OCI
layout), a sub-directory per platform (local, tar), the docker exporter refusing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.cache import ImmutableRef
from dockyard.core import CollectingReporter, Digest, Platform, UsageError, VertexProgress
from dockyard.exporter import (
    ExportRequest,
    ExportResponse,
    PlatformExport,
    _image,
    parse_output,
    platform_dir,
    resolve,
)
from dockyard.oci import ImageConfig, ImageIndex, ImageManifest, MediaType, parse_manifest

from .conftest import T0, State, frontend_config

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")
ARMV7 = Platform.parse("linux/arm/v7")


def _config(platform: Platform) -> ImageConfig:
    return dataclasses.replace(
        frontend_config(),
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
    )


async def _refs(state: State) -> dict[Platform, ImmutableRef]:
    out = {}
    for platform in (AMD64, ARM64):
        name = platform_dir(platform)

        def write(root: Path, name: str = name) -> None:
            (root / "p").write_text(f"{name}\n")

        out[platform] = await state.layer(write, description=f"RUN echo {name}")
    return out


async def _export(state: State, spec: str, refs: dict[Platform, ImmutableRef]) -> ExportResponse:
    exporter = resolve(parse_output(spec), state.services)
    parts = tuple(
        PlatformExport(platform=p, ref=ref, image_config=_config(p)) for p, ref in refs.items()
    )
    return await exporter.export(ExportRequest(ref=None, epoch=T0, platforms=parts))


async def _read(state: State, digest: Digest | str) -> Any:
    return parse_manifest(await state.content.read(Digest.parse(str(digest))))


def test_platform_dirs() -> None:
    assert platform_dir(AMD64) == "linux_amd64"
    assert platform_dir(ARMV7) == "linux_arm_v7"
    assert platform_dir(Platform.parse("linux/arm64/v8")) == "linux_arm64"


async def test_image_store_holds_an_index_of_per_platform_manifests(state: State) -> None:
    refs = await _refs(state)
    resp = await _export(state, "type=image,name=multi:1", refs)
    assert resp.config_digest is None
    assert resp.image_digest is not None
    assert resp.image_id == resp.image_digest  # the index digest is the image ID
    meta = resp.metadata()
    assert meta["containerimage.digest"] == str(resp.image_digest)
    assert meta["containerimage.descriptor"]["mediaType"] == MediaType.OCI_INDEX
    assert "containerimage.config.digest" not in meta

    index = await _read(state, resp.image_digest)
    assert isinstance(index, ImageIndex)
    assert index.media_type == MediaType.OCI_INDEX
    assert [m.platform for m in index.manifests] == [AMD64, ARM64]
    for entry in index.manifests:
        assert entry.media_type == MediaType.OCI_MANIFEST
        assert "config.digest" not in entry.annotations
        manifest = await _read(state, entry.digest)
        assert isinstance(manifest, ImageManifest)
        config = ImageConfig.parse(await state.content.read(manifest.config.digest))
        assert config.platform == entry.platform
    stored = await state.images.get("docker.io/library/multi:1")
    assert stored.target.digest == resp.image_digest
    assert stored.target.media_type == MediaType.OCI_INDEX
    assert stored.id == resp.image_digest
    for platform in (AMD64, ARM64):
        local = await state.images.resolve("docker.io/library/multi:1", platform=platform)
        assert local.config.architecture == platform.architecture


async def test_the_platforms_images_are_made_side_by_side(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each platform's layers are made at the same time as the others' (as BuildKit's
    exporter does), not one platform after another; the index keeps the build's
    platform order and one "exporting layers" step covers them."""
    started: list[str] = []
    both = asyncio.Event()
    real = _image.export_layers  # type: ignore[attr-defined]

    async def export_layers(ref: ImmutableRef | None, *args: Any, **kwargs: Any) -> Any:
        assert ref is not None
        started.append(ref.id)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)  # the other platform's started too
        return await real(ref, *args, **kwargs)

    monkeypatch.setattr(_image, "export_layers", export_layers)
    reporter = CollectingReporter()
    refs = await _refs(state)
    exporter = resolve(parse_output("type=image,name=multi:side"), state.services)
    parts = tuple(
        PlatformExport(platform=p, ref=ref, image_config=_config(p)) for p, ref in refs.items()
    )
    resp = await exporter.export(
        ExportRequest(ref=None, epoch=T0, platforms=parts, reporter=reporter)
    )
    assert sorted(started) == sorted(r.id for r in refs.values())
    assert resp.image_digest is not None
    index = await _read(state, resp.image_digest)
    assert [m.platform for m in index.manifests] == [AMD64, ARM64]
    steps = [
        e for e in reporter.events if isinstance(e, VertexProgress) and e.id.startswith("layers")
    ]
    assert {(e.id, e.name) for e in steps} == {("layers", "exporting layers")}
    assert [e.completed is not None for e in steps] == [False, True]


async def test_oci_mediatypes_false_makes_a_docker_manifest_list(state: State) -> None:
    resp = await _export(state, "type=image,name=multi:2,oci-mediatypes=false", await _refs(state))
    assert resp.image_digest is not None
    index = await _read(state, resp.image_digest)
    assert isinstance(index, ImageIndex)
    assert index.media_type == MediaType.DOCKER_MANIFEST_LIST
    assert {m.media_type for m in index.manifests} == {MediaType.DOCKER_MANIFEST}


async def test_the_same_results_give_the_same_index(state: State) -> None:
    refs = await _refs(state)
    a = await _export(state, "type=image,name=a", refs)
    b = await _export(state, "type=image,name=b", refs)
    assert a.image_digest == b.image_digest


async def test_oci_archive_index_json_points_at_the_index(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    resp = await _export(state, f"type=oci,dest={dest},name=multi:3", await _refs(state))
    assert resp.image_digest is not None
    with tarfile.open(dest) as tf:
        names = set(tf.getnames())
        top = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        (entry,) = top["manifests"]
        assert entry["mediaType"] == MediaType.OCI_INDEX
        assert entry["digest"] == str(resp.image_digest)
        assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/multi:3"
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == "3"
        inner = json.loads(
            tf.extractfile(f"blobs/sha256/{Digest.parse(entry['digest']).hex}").read()  # type: ignore[union-attr]
        )
    platforms = [m["platform"]["architecture"] for m in inner["manifests"]]
    assert platforms == ["amd64", "arm64"]
    for m in inner["manifests"]:
        assert f"blobs/sha256/{Digest.parse(m['digest']).hex}" in names


async def test_oci_layout_directory(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "layout"
    resp = await _export(state, f"type=oci,dest={dest},tar=false", await _refs(state))
    top = json.loads((dest / "index.json").read_text())
    assert [m["digest"] for m in top["manifests"]] == [str(resp.image_digest)]


async def test_docker_archive_refuses(state: State, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="multi-platform"):
        await _export(state, f"type=docker,dest={tmp_path / 'd.tar'}", await _refs(state))
    assert not (tmp_path / "d.tar").exists()


async def test_local_splits_by_platform(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    await _export(state, f"type=local,dest={dest}", await _refs(state))
    assert sorted(p.name for p in dest.iterdir()) == ["linux_amd64", "linux_arm64"]
    assert (dest / "linux_amd64" / "p").read_text() == "linux_amd64\n"
    assert (dest / "linux_arm64" / "p").read_text() == "linux_arm64\n"


async def test_local_without_split_merges(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    await _export(state, f"type=local,dest={dest},platform-split=false", await _refs(state))
    assert [p.name for p in dest.iterdir()] == ["p"]
    assert (dest / "p").read_text() == "linux_arm64\n"  # the last platform wins


async def test_tar_has_a_directory_per_platform(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    await _export(state, f"type=tar,dest={dest}", await _refs(state))
    with tarfile.open(dest) as tf:
        assert tf.getnames() == ["linux_amd64", "linux_amd64/p", "linux_arm64", "linux_arm64/p"]
        assert tf.getmember("linux_amd64").isdir()
        assert tf.extractfile("linux_arm64/p").read() == b"linux_arm64\n"  # type: ignore[union-attr]


def test_platform_split_option_round_trips() -> None:
    options = parse_output("type=local,dest=out,platform-split=false")
    assert options.to_attrs()["platform-split"] == "false"
    assert "platform-split" not in parse_output("type=local,dest=out").to_attrs()


async def test_index_and_platform_annotations(state: State) -> None:
    resp = await _export(
        state,
        "type=image,name=multi:4,oci-mediatypes=false,"
        "annotation-index.org.opencontainers.image.title=idx,"
        "annotation-index-descriptor.d=1,"
        "annotation.all=1,"
        "annotation[linux/arm64].only-arm=1,"
        "annotation-manifest[linux/amd64].only-amd=1,"
        "annotation-manifest-descriptor[linux/arm64].desc-arm=1",
        await _refs(state),
    )
    assert resp.image_digest is not None
    assert resp.descriptor is not None
    assert resp.descriptor.annotations["d"] == "1"
    stored = await state.images.get("docker.io/library/multi:4")
    assert stored.target.annotations == {"d": "1"}
    index = await _read(state, resp.image_digest)
    assert isinstance(index, ImageIndex)
    # index annotations switch to OCI types, as BuildKit's exporter does
    assert index.media_type == MediaType.OCI_INDEX
    assert dict(index.annotations) == {"org.opencontainers.image.title": "idx"}
    entries = {m.platform: m for m in index.manifests}
    assert dict(entries[ARM64].annotations) == {"desc-arm": "1"}
    assert dict(entries[AMD64].annotations) == {}
    manifests = {p: await _read(state, e.digest) for p, e in entries.items()}
    assert dict(manifests[AMD64].annotations) == {"all": "1", "only-amd": "1"}
    assert dict(manifests[ARM64].annotations) == {"all": "1", "only-arm": "1"}


async def test_oci_archive_carries_index_annotations(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "layout"
    resp = await _export(
        state,
        f"type=oci,dest={dest},tar=false,annotation-index.i=1,annotation-index-descriptor.d=2",
        await _refs(state),
    )
    top = json.loads((dest / "index.json").read_text())
    (entry,) = top["manifests"]
    assert entry["digest"] == str(resp.image_digest)
    assert entry["annotations"]["d"] == "2"
    inner = json.loads((dest / "blobs" / "sha256" / Digest.parse(entry["digest"]).hex).read_text())
    assert inner["annotations"] == {"i": "1"}


async def test_an_annotation_for_a_platform_not_built_is_refused(state: State) -> None:
    with pytest.raises(UsageError, match="no platform linux/s390x found"):
        await _export(state, "type=image,name=m:5,annotation[linux/s390x].k=v", await _refs(state))


@pytest.mark.parametrize("kind", ["type=image,name=one", "type=oci,dest=-", "type=docker,dest=-"])
@pytest.mark.parametrize("annotation", ["annotation-index.k=v", "annotation-index-descriptor.k=v"])
async def test_single_platform_exports_refuse_index_annotations(
    state: State, kind: str, annotation: str
) -> None:
    (ref, *_) = (await _refs(state)).values()
    exporter = resolve(parse_output(f"{kind},{annotation}"), state.services)
    with pytest.raises(UsageError, match="index annotations not supported for single platform"):
        await exporter.export(ExportRequest(ref=ref, epoch=T0))


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("", ["linux_amd64/p", "linux_arm64/p"]),
        (",platform-split=false", ["p"]),  # merged here, sent once
    ],
)
async def test_local_to_a_clients_directory(state: State, split: str, expected: list[str]) -> None:
    from .test_export import _Client

    client = _Client()
    exporter = resolve(parse_output(f"type=local,dest=session:d{split}"), state.services)
    refs = await _refs(state)
    parts = tuple(PlatformExport(platform=p, ref=ref) for p, ref in refs.items())
    await exporter.export(ExportRequest(ref=None, client=client, platforms=parts))
    assert client.directories["d"] == expected
