"""A hostile or broken cache config (from a registry or an S3 bucket): nesting past the
JSON parser's stack, layer chains deeper than any image, and many records on one deep
chain are refused or indexed in linear time, never a traceback or a quadratic walk."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.core import ContentError, Digest
from dockyard.remotecache._config import (
    _MAX_CHAIN,
    CacheConfig,
    CacheConfigRecord,
    CacheLayer,
    CacheResult,
)
from dockyard.remotecache._import import ImportedCache

BLOB = "sha256:" + "a" * 64


def _chain(depth: int, *, descending: bool = True) -> list[dict[str, Any]]:
    """``depth`` layers in one chain; ``descending``: each layer's parent comes after it
    (the order that made the cycle check's walks longest)."""
    if descending:
        return [{"blob": BLOB, "parent": i + 1 if i + 1 < depth else -1} for i in range(depth)]
    return [{"blob": BLOB, "parent": i - 1} for i in range(depth)]


def test_nesting_past_the_parsers_stack_is_a_content_error() -> None:
    with pytest.raises(ContentError, match="nested too deeply"):
        CacheConfig.parse(b"[" * 200_000 + b"]" * 200_000)


@pytest.mark.parametrize("descending", [True, False])
def test_a_chain_deeper_than_any_image_is_refused(descending: bool) -> None:
    fine = json.dumps({"layers": _chain(_MAX_CHAIN, descending=descending)}).encode()
    assert len(CacheConfig.parse(fine).layers) == _MAX_CHAIN
    deep = json.dumps({"layers": _chain(_MAX_CHAIN + 1, descending=descending)}).encode()
    with pytest.raises(ContentError, match=f"deeper than {_MAX_CHAIN} layers"):
        CacheConfig.parse(deep)


def test_a_cycle_is_still_refused() -> None:
    layers = [{"blob": BLOB, "parent": 1}, {"blob": BLOB, "parent": 2}, {"blob": BLOB, "parent": 0}]
    with pytest.raises(ContentError, match="its own ancestor"):
        CacheConfig.parse(json.dumps({"layers": layers}).encode())


class _Counting(ImportedCache):
    looked_up = 0

    def _layer_descriptor(self, layer: CacheLayer) -> Any:
        type(self).looked_up += 1
        return super()._layer_descriptor(layer)


def test_many_records_on_one_deep_chain_are_indexed_once_per_layer() -> None:
    depth, records = 2000, 2000
    layers = tuple(
        CacheLayer(
            blob=Digest.parse(BLOB),
            parent=i - 1,
            media_type="application/vnd.oci.image.layer.v1.tar+gzip",
            size=1,
            diff_id=Digest.parse("sha256:" + "b" * 64),
        )
        for i in range(depth)
    )
    config = CacheConfig(
        layers=layers,
        records=tuple(
            CacheConfigRecord(digest=f"sha256:{i:064x}", results=(CacheResult(layer=depth - 1),))
            for i in range(records)
        ),
    )
    config._validate()
    cache = _Counting(
        name="hostile",
        config=config,
        descriptors={},
        blobs=None,  # type: ignore[arg-type]
        unpacker=None,  # type: ignore[arg-type]
        content=None,  # type: ignore[arg-type]
    )
    assert cache.statistics().records == records  # every record loadable
    assert _Counting.looked_up <= depth  # each layer once, not records x depth


def test_a_layer_without_a_descriptor_spoils_the_chains_above_it_only() -> None:
    gzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    diff = "sha256:" + "b" * 64
    layers = (
        CacheLayer(
            blob=Digest.parse(BLOB),
            media_type=gzip,
            size=1,
            diff_id=Digest.parse(diff),
        ),
        CacheLayer(blob=Digest.parse(BLOB), parent=0),  # no media type nor size: not loadable
        CacheLayer(
            blob=Digest.parse(BLOB),
            parent=1,
            media_type=gzip,
            size=1,
            diff_id=Digest.parse(diff),
        ),
        CacheLayer(
            blob=Digest.parse(BLOB),
            parent=0,
            media_type=gzip,
            size=1,
            diff_id=Digest.parse(diff),
        ),
    )
    records = tuple(
        CacheConfigRecord(digest=f"sha256:{i:064x}", results=(CacheResult(layer=i),))
        for i in range(4)
    )
    cache = ImportedCache(
        name="c",
        config=CacheConfig(layers=layers, records=records),
        descriptors={},
        blobs=None,  # type: ignore[arg-type]
        unpacker=None,  # type: ignore[arg-type]
        content=None,  # type: ignore[arg-type]
    )
    assert cache.statistics().records == 2  # layers 0 and 3; not 1 nor 2 above it


def test_an_output_index_past_any_op_is_refused() -> None:
    """A record's ``output`` became the length of the imported record's result list:
    ``"output": 100000000000`` in an image's inline cache (or a registry or S3 cache)
    made the daemon build a list of 10^11 entries. An op has at most as many outputs
    as an LLB definition can name (BuildKit's outputs are small indexes too)."""
    diff = "sha256:" + "b" * 64
    layer = {
        "blob": BLOB,
        "parent": -1,
        "annotations": {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "size": 1,
            "diffID": diff,
        },
    }

    def config(output: int) -> bytes:
        record = {"digest": "sha256:" + "c" * 64, "output": output, "layers": [{"layer": 0}]}
        return json.dumps({"layers": [layer], "records": [record]}).encode()

    assert CacheConfig.parse(config(3)).records[0].output == 3
    with pytest.raises(ContentError, match="output"):
        CacheConfig.parse(config(100_000_000_000))
    inline = json.dumps(
        [{"digest": "sha256:" + "c" * 64, "output": 10**11, "layers": [{"layer": 0}]}]
    )
    with pytest.raises(ContentError, match="output"):
        CacheConfig.parse_inline(inline.encode(), [CacheLayer(blob=Digest.parse(BLOB))])
    # many records of moderate outputs add up the same way
    many = [
        {"digest": f"sha256:{i:064x}", "output": 60_000, "layers": [{"layer": 0}]}
        for i in range(20)
    ]
    with pytest.raises(ContentError, match="output"):
        CacheConfig.parse_inline(json.dumps(many).encode(), [CacheLayer(blob=Digest.parse(BLOB))])
