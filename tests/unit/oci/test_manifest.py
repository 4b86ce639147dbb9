from __future__ import annotations

import base64
import json

import pytest

from dockyard.core import ContentError, Digest, Platform
from dockyard.oci import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    MediaType,
    manifest_media_type,
    parse_manifest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64

DOCKER_LIST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MediaType.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": MediaType.DOCKER_MANIFEST,
                "digest": D1,
                "size": 527,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": MediaType.DOCKER_MANIFEST,
                "digest": D2,
                "size": 527,
                "platform": {"architecture": "arm", "os": "linux", "variant": "v6"},
            },
        ],
    },
    indent=3,
).encode()


def test_docker_manifest_list() -> None:
    index = parse_manifest(DOCKER_LIST)
    assert isinstance(index, ImageIndex)
    assert index.media_type == MediaType.DOCKER_MANIFEST_LIST
    assert [m.digest for m in index.manifests] == [D1, D2]
    assert index.manifests[1].platform == Platform(os="linux", architecture="arm", variant="v6")
    # Re-encoding is canonical (compact), unlike the received bytes.
    assert index.to_bytes() != DOCKER_LIST
    assert parse_manifest(index.to_bytes()) == index


def test_oci_documents_without_media_type_are_recognized_by_shape() -> None:
    index = {"schemaVersion": 2, "manifests": []}
    manifest = {
        "schemaVersion": 2,
        "config": {"mediaType": MediaType.OCI_CONFIG, "digest": D1, "size": 2},
        "layers": [],
    }
    assert manifest_media_type(index) == MediaType.OCI_INDEX
    assert manifest_media_type(manifest) == MediaType.OCI_MANIFEST
    parsed = parse_manifest(json.dumps(manifest).encode())
    assert isinstance(parsed, ImageManifest)
    # A Content-Type hint names the type when the body does not.
    assert manifest_media_type(manifest, MediaType.DOCKER_MANIFEST + "; charset=utf-8") == (
        MediaType.DOCKER_MANIFEST
    )
    # The body's own mediaType wins over the hint.
    assert manifest_media_type({"mediaType": MediaType.OCI_INDEX}, MediaType.OCI_MANIFEST) == (
        MediaType.OCI_INDEX
    )


def test_manifest_fields_round_trip() -> None:
    subject = Descriptor(media_type=MediaType.OCI_MANIFEST, digest=Digest(D2), size=9)
    manifest = ImageManifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=Digest(D1), size=2),
        layers=[
            Descriptor(
                media_type=MediaType.OCI_LAYER_ZSTD,
                digest=Digest(D2),
                size=10,
                urls=("https://example.com/layer",),
                data=b"\x00\x01",
                artifact_type="x/y",
            )
        ],  # type: ignore[arg-type]  # lists are accepted and frozen into tuples
        annotations={"k": "v"},
        subject=subject,
        artifact_type="application/x-test",
    )
    assert isinstance(manifest.layers, tuple)
    doc = json.loads(manifest.to_bytes())
    assert list(doc) == [
        "schemaVersion",
        "mediaType",
        "artifactType",
        "config",
        "layers",
        "subject",
        "annotations",
    ]
    assert doc["layers"][0]["data"] == base64.b64encode(b"\x00\x01").decode()
    assert parse_manifest(manifest.to_bytes()) == manifest


def test_descriptor_of_bytes() -> None:
    desc = Descriptor.of(MediaType.OCI_CONFIG, b"{}")
    assert desc.size == 2
    assert desc.digest == Digest.from_bytes(b"{}")
    assert json.loads(desc.to_bytes()) == {
        "mediaType": MediaType.OCI_CONFIG,
        "digest": desc.digest,
        "size": 2,
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, "schema 1 is deprecated"),
        ({"schemaVersion": 3, "manifests": []}, "unsupported schemaVersion 3"),
        ({"schemaVersion": 2, "mediaType": "text/plain"}, "unsupported media type"),
        ({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "layers": []}, "'config'"),
        (
            {
                "schemaVersion": 2,
                "manifests": [{"mediaType": "x", "digest": "sha256:1", "size": 1}],
            },
            "entry 0",
        ),
        (
            {"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": D1}]},
            "'size' is missing",
        ),
        (
            {"schemaVersion": 2, "manifests": [{"digest": D1, "size": 1, "annotations": {"a": 1}}]},
            "object of strings",
        ),
        (
            {"schemaVersion": 2, "manifests": [{"digest": D1, "size": 1, "data": "!!"}]},
            "base64",
        ),
    ],
)
def test_malformed_documents(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ContentError, match=message):
        parse_manifest(json.dumps(doc).encode())


def test_descriptor_validation() -> None:
    with pytest.raises(ValueError, match="negative size"):
        Descriptor(media_type="x", digest=Digest(D1), size=-1)
    with pytest.raises(ValueError, match="invalid digest"):
        Descriptor(media_type="x", digest="sha256:abc", size=1)  # type: ignore[arg-type]


def test_media_type_helpers() -> None:
    assert MediaType.is_index(MediaType.DOCKER_MANIFEST_LIST)
    assert MediaType.is_manifest(MediaType.OCI_MANIFEST)
    assert not MediaType.is_manifest(MediaType.OCI_INDEX)
    assert MediaType.is_config(MediaType.DOCKER_CONFIG)
    assert MediaType.layer_compression(MediaType.DOCKER_LAYER_GZIP) == "gzip"
    assert MediaType.layer_compression(MediaType.OCI_LAYER_ZSTD) == "zstd"
    assert MediaType.layer_compression(MediaType.OCI_LAYER) == "uncompressed"
    assert MediaType.layer("gzip", oci=False) == MediaType.DOCKER_LAYER_GZIP
    assert MediaType.layer("zstd", oci=False) == MediaType.OCI_LAYER_ZSTD
    with pytest.raises(ValueError, match="not a layer"):
        MediaType.layer_compression(MediaType.OCI_CONFIG)
    with pytest.raises(ValueError, match="unknown layer compression"):
        MediaType.layer("brotli")
