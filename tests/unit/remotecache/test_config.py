"""The cache config: BuildKit's JSON shape, validation, the importer's index, the inline
restriction to an image's layers."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from dockyard.cache import LayerBlob
from dockyard.core import ContentError, Digest
from dockyard.oci import Descriptor, MediaType
from dockyard.remotecache import (
    CacheConfig,
    CacheConfigRecord,
    CacheInput,
    CacheLayer,
    CacheResult,
    CollectedCache,
    ImportedCache,
)


def d(n: int) -> Digest:
    return Digest.parse("sha256:" + f"{n:02x}" * 32)


def key(n: int) -> str:
    return str(d(100 + n))


T1 = "2023-11-14T22:13:20Z"
T2 = "2023-11-14T22:13:21.5Z"


def sample() -> CacheConfig:
    """base layer 0 ← run layer 1; records: base (0), run (1, linking base), copy keys
    only (2, two keys), final with two outputs (3, 4)."""
    gzip = MediaType.OCI_LAYER_GZIP
    return CacheConfig(
        layers=(
            CacheLayer(
                blob=d(1), parent=-1, media_type=gzip, diff_id=d(11), size=10, created_at=T1
            ),
            CacheLayer(blob=d(2), parent=0, media_type=gzip, diff_id=d(12), size=20, created_at=T2),
        ),
        records=(
            CacheConfigRecord(digest=key(0), results=(CacheResult(layer=0, created_at=T1),)),
            CacheConfigRecord(
                digest=key(1),
                inputs=((CacheInput(link=0, selector="/src"),),),
                results=(CacheResult(layer=1, created_at=T2),),
            ),
            CacheConfigRecord(digest=key(2), keys=(key(22),), inputs=((CacheInput(link=1),), ())),
            CacheConfigRecord(
                digest=key(3),
                keys=(key(33),),
                inputs=((CacheInput(link=2),),),
                results=(CacheResult(layer=1, created_at=T2),),
            ),
            CacheConfigRecord(
                digest=key(3),
                output=2,
                keys=(key(33),),
                inputs=((CacheInput(link=2),),),
                results=(CacheResult(layer=0, created_at=T1),),
            ),
        ),
    )


def test_json_has_buildkits_shape_and_round_trips() -> None:
    config = sample()
    data = config.to_bytes()
    obj = json.loads(data)
    assert list(obj) == ["layers", "records"]
    assert obj["layers"][0] == {
        "blob": str(d(1)),
        "parent": -1,
        "annotations": {
            "mediaType": MediaType.OCI_LAYER_GZIP,
            "diffID": str(d(11)),
            "size": 10,
            "createdAt": T1,
        },
    }
    assert "parent" not in obj["layers"][1]  # Go omits 0
    assert obj["records"][1] == {
        "layers": [{"layer": 1, "createdAt": T2}],
        "digest": key(1),
        "inputs": [[{"selector": "/src", "link": 0}]],
    }
    assert obj["records"][4]["output"] == 2
    assert CacheConfig.parse(data) == config
    assert CacheConfig.parse(data).to_bytes() == data
    assert config.chain(1) == [config.layers[0], config.layers[1]]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "not a JSON object"),
        ({"layers": {}}, "layers is not a list"),
        ({"layers": [{"blob": "nope"}]}, "layers\\[0\\].blob"),
        ({"layers": [{"blob": str(d(1)), "parent": 3}]}, "parent 3"),
        ({"layers": [{"blob": str(d(1)), "parent": 1}, {"blob": str(d(2))}]}, "own ancestor"),
        ({"records": [{"digest": key(0), "layers": [{"layer": 0}]}]}, "names layer 0"),
        ({"records": [{"digest": key(0), "inputs": [[{"link": 0}]]}]}, "links to record 0"),
        ({"records": [{"digest": key(0), "keys": [1]}]}, "keys\\[0\\] is not a string"),
        ({"records": [{"digest": key(0), "output": -1}]}, "output is negative"),
        ({"records": [{"digest": "x"}]}, "records\\[0\\].digest"),
    ],
)
def test_malformed_configs_are_content_errors(obj: Any, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        CacheConfig.parse(json.dumps(obj).encode())


def test_not_json() -> None:
    with pytest.raises(ContentError, match="not valid JSON"):
        CacheConfig.parse(b"{")


def imported(
    config: CacheConfig, descriptors: dict[str, Descriptor] | None = None
) -> ImportedCache:
    return ImportedCache(
        name="test",
        config=config,
        descriptors=descriptors or {},
        blobs=cast(Any, None),
        unpacker=cast(Any, None),
        content=cast(Any, None),
    )


async def test_the_importer_answers_records_with_results_under_every_key() -> None:
    cache = imported(sample())
    base = await cache.lookup(key(0))
    assert base is not None
    assert base.canonical_key == key(0)
    assert base.result_ids == ("0",)
    assert await cache.lookup(key(2)) is None  # keys only
    # ... but its other keys still name its canonical key, with nothing to load (a run
    # key's record in a mode=min export: test_keys_only_records.py)
    keys_only = await cache.lookup(key(22))
    assert keys_only is not None
    assert keys_only.canonical_key == key(2)
    assert keys_only.result_ids == ("",)
    final = await cache.lookup(key(33))
    assert final is not None
    assert final.canonical_key == key(3)
    assert final.result_ids == ("1", "", "0")  # output 1 was not exported
    assert final == await cache.lookup(key(3))
    assert cache.statistics().records == 3
    assert await cache.load("", cast(Any, None)) is None


async def test_layers_without_a_size_or_diff_id_are_not_offered() -> None:
    config = sample()
    bare = CacheConfig(
        layers=(CacheLayer(blob=d(1), parent=-1),),  # no annotations
        records=config.records[:1],
    )
    assert await imported(bare).lookup(key(0)) is None
    # the manifest's descriptor (with containerd's uncompressed annotation) fills in
    desc = Descriptor(
        media_type=MediaType.OCI_LAYER_GZIP,
        digest=d(1),
        size=10,
        annotations={"containerd.io/uncompressed": str(d(11))},
    )
    assert await imported(bare, {str(d(1)): desc}).lookup(key(0)) is not None


def test_inline_keeps_the_records_whose_chains_are_in_the_image() -> None:
    config = sample()
    collected = CollectedCache(
        config=config,
        layers=tuple(
            Descriptor(media_type=layer.media_type, digest=layer.blob, size=layer.size)
            for layer in config.layers
        ),
    )
    blob = LayerBlob(
        variant="gzip", diff_id=d(11), digest=d(1), media_type=MediaType.OCI_LAYER_GZIP, size=10
    )
    inline = collected.restricted([blob])
    assert [layer.blob for layer in inline.config.layers] == [d(1)]
    with_results = [r.digest for r in inline.config.records if r.results]
    assert with_results == [key(0), key(3)]  # the chains of layer 0 only
    assert len(inline.config.records) == len(config.records)  # keys stay
    assert collected.restricted([]).empty
    manifest, config_bytes = inline.manifest()
    assert json.loads(manifest)["config"]["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"
    assert CacheConfig.parse(config_bytes) == inline.config


# What docker 20.10's BuildKit (v0.8) wrote under moby.buildkit.cache.v0 for a
# three-layer image (FROM busybox, RUN, WORKDIR + RUN; `--build-arg
# BUILDKIT_INLINE_CACHE=1`), decoded: a list of records, each result naming its chain's
# top layer by its position in the image.
BUILDKIT_INLINE = (
    '[{"layers":[{"layer":1,"createdAt":"2026-11-28T18:52:53.05696028Z"}],'
    '"digest":"sha256:2534e7566c5b5c334330089ca30005bb402f2eaab3396886dc5a603c32aa4d3a",'
    '"inputs":[[{"link":1}]]},'
    '{"digest":"sha256:31f0aeba92785546ffe10682eab1763baffda84bc11227bf34c704ae640d0fd7"},'
    '{"layers":[{"layer":2,"createdAt":"2026-11-28T18:52:53.179073441Z"}],'
    '"digest":"sha256:ada60fffece0732f2e5c9e6c7bbac2c414179b4fddf41a5aa9e76dae64579eff",'
    '"inputs":[[{"link":0}]]}]'
)


def image_chain(n: int) -> list[CacheLayer]:
    return [
        CacheLayer(blob=d(i + 1), media_type=MediaType.OCI_LAYER_GZIP, diff_id=d(i + 11), size=10)
        for i in range(n)
    ]


def test_inline_form_is_buildkits_list_of_records_over_the_images_layers() -> None:
    """BuildKit's importer decodes the inline cache into a list of records (v0.8 failed
    on Dockyard's whole config object: 'json: cannot unmarshal object into Go value of
    type []cacheimport.CacheRecord'; found by differential testing against docker
    20.10's BuildKit)."""
    config = sample()
    data = config.inline_bytes([d(1), d(2), d(3)])
    assert data is not None
    obj = json.loads(data)
    assert isinstance(obj, list)
    assert obj[1] == {
        "layers": [{"layer": 1, "createdAt": T2}],
        "digest": key(1),
        "inputs": [[{"selector": "/src", "link": 0}]],
    }
    assert [r.get("layers") for r in obj] == [
        [{"layer": 0, "createdAt": T1}],
        [{"layer": 1, "createdAt": T2}],
        None,
        [{"layer": 1, "createdAt": T2}],
        [{"layer": 0, "createdAt": T1}],
    ]
    back = CacheConfig.parse_inline(data, image_chain(3))
    assert [r.results for r in back.records] == [r.results for r in config.records]
    assert [layer.blob for layer in back.chain(1)] == [d(1), d(2)]
    # a chain that is not the image's bottom layers is left out; none left: no cache
    assert config.inline_bytes([d(2), d(1)]) is None
    only_base = config.inline_bytes([d(1), d(9)])
    assert only_base is not None
    assert [r.get("layers") for r in json.loads(only_base)][:2] == [
        [{"layer": 0, "createdAt": T1}],
        None,
    ]


def test_buildkits_inline_cache_parses_over_the_images_layers() -> None:
    config = CacheConfig.parse_inline(BUILDKIT_INLINE.encode(), image_chain(3))
    assert [layer.parent for layer in config.layers] == [-1, 0, 1]
    assert [layer.diff_id for layer in config.layers] == [d(11), d(12), d(13)]
    assert [[r.layer for r in rec.results] for rec in config.records] == [[1], [], [2]]
    assert [[[i.link for i in g] for g in rec.inputs] for rec in config.records] == [
        [[1]],
        [],
        [[0]],
    ]
    assert [layer.blob for layer in config.chain(2)] == [d(1), d(2), d(3)]
    # Dockyard's earlier inline form (a whole config object) still reads
    assert CacheConfig.parse_inline(sample().to_bytes(), image_chain(3)) == sample()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('"records"', "neither a list of records nor a cache config"),
        ('[{"digest": "sha256:' + "a" * 64 + '", "layers": [{"layer": 3}]}]', "names layer 3"),
        ('[{"digest": "sha256:' + "a" * 64 + '", "inputs": [[{"link": 0}]]}]', "links to"),
        ("[1]", r"records\[0\] is not an object"),
        ("[", "not valid JSON"),
    ],
)
def test_a_malformed_inline_cache_is_a_content_error(data: str, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        CacheConfig.parse_inline(data.encode(), image_chain(3))
