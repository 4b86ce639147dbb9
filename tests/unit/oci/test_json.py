from __future__ import annotations

import json

import pytest

from dockyard.core import ContentError, Digest
from dockyard.oci import Descriptor, ImageManifest, MediaType, canonical_json, parse_manifest

CONFIG = "sha256:" + "a" * 64
LAYER = "sha256:" + "b" * 64

# What Go's json.Marshal writes for an ocispec.Manifest with these values (struct field
# order, no spaces, sorted map keys, HTML characters escaped).
GO_MANIFEST = (
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CONFIG}","size":7}},'
    f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{LAYER}","size":42,'
    '"annotations":{"a":"1","z":"\\u003cb\\u003e \\u0026 é"}}],'
    '"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}'
).encode()


def test_canonical_json_is_go_compatible() -> None:
    assert canonical_json({"b": 1, "a": [1, "x"]}) == b'{"b":1,"a":[1,"x"]}'
    assert canonical_json("<>&") == b'"\\u003c\\u003e\\u0026"'
    assert canonical_json("\u2028\u2029") == b'"\\u2028\\u2029"'
    assert canonical_json("é✓") == '"é✓"'.encode()
    assert canonical_json('tab\tnl\nq"\\\x01') == b'"tab\\tnl\\nq\\"\\\\\\u0001"'
    with pytest.raises(ValueError):
        canonical_json(float("nan"))


def test_manifest_reencodes_to_the_bytes_go_writes() -> None:
    manifest = parse_manifest(GO_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert manifest.to_bytes() == GO_MANIFEST
    assert json.loads(manifest.to_bytes()) == json.loads(GO_MANIFEST)


def test_map_keys_are_sorted_whatever_the_input_order() -> None:
    one = Descriptor(
        media_type=MediaType.OCI_LAYER,
        digest=Digest(LAYER),
        size=1,
        annotations={"z": "1", "a": "2"},
    )
    two = Descriptor(
        media_type=MediaType.OCI_LAYER,
        digest=Digest(LAYER),
        size=1,
        annotations={"a": "2", "z": "1"},
    )
    assert one.to_bytes() == two.to_bytes()
    assert one == two
    assert hash(one) == hash(two)
    assert b'"annotations":{"a":"2","z":"1"}' in one.to_bytes()


def test_values_are_frozen() -> None:
    desc = Descriptor.of(MediaType.OCI_CONFIG, b"{}")
    with pytest.raises(AttributeError):
        desc.size = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        desc.annotations["x"] = "y"  # type: ignore[index]


def test_invalid_json_is_a_content_error() -> None:
    with pytest.raises(ContentError, match="invalid image manifest: not valid JSON"):
        parse_manifest(b"{nope")
    with pytest.raises(ContentError, match="expected a JSON object"):
        parse_manifest(b"[]")


def test_indented_like_go_marshal_indent() -> None:
    manifest = parse_manifest(GO_MANIFEST)
    # json.MarshalIndent(m, "", "   "): what BuildKit writes for manifests.
    expected = (
        "{\n"
        '   "schemaVersion": 2,\n'
        '   "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
        '   "config": {\n'
        '      "mediaType": "application/vnd.oci.image.config.v1+json",\n'
        f'      "digest": "{CONFIG}",\n'
        '      "size": 7\n'
        "   },\n"
        '   "layers": [\n'
        "      {\n"
        '         "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",\n'
        f'         "digest": "{LAYER}",\n'
        '         "size": 42,\n'
        '         "annotations": {\n'
        '            "a": "1",\n'
        '            "z": "\\u003cb\\u003e \\u0026 é"\n'
        "         }\n"
        "      }\n"
        "   ],\n"
        '   "annotations": {\n'
        '      "org.opencontainers.image.created": "2024-01-01T00:00:00Z"\n'
        "   }\n"
        "}"
    ).encode()
    assert manifest.to_bytes(indent=3) == expected
    assert canonical_json({"a": [], "b": {}}, indent=2) == b'{\n  "a": [],\n  "b": {}\n}'
