"""Records without results in an imported cache (mode=min, the default of registry and
inline caches, leaves every result but the final ones out) still answer for their other
keys: a step that ran afresh (``--no-cache``, ``--no-cache-filter``) has a run key as its
canonical key, and the records made from it are found only through that key. The
importer skipped such records, so a cache exported by a filtered build missed
everywhere in a later build without the filter."""

from __future__ import annotations

from typing import Any

from dockyard.core import Digest
from dockyard.remotecache import (
    CacheConfig,
    CacheConfigRecord,
    CacheInput,
    CacheLayer,
    CacheResult,
    ImportedCache,
)

BLOB = Digest.parse("sha256:" + "a" * 64)
DIFF = Digest.parse("sha256:" + "b" * 64)
RUN_KEY, BASE_DEF, STEP, FINAL, LINK = ("sha256:" + c * 64 for c in "12345")


def _cache(records: tuple[CacheConfigRecord, ...]) -> ImportedCache:
    layer = CacheLayer(
        blob=BLOB, media_type="application/vnd.oci.image.layer.v1.tar+gzip", size=1, diff_id=DIFF
    )
    none: Any = None
    return ImportedCache(
        name="c",
        config=CacheConfig(layers=(layer,), records=records),
        descriptors={},
        blobs=none,
        unpacker=none,
        content=none,
    )


async def test_a_record_without_results_still_maps_its_keys_to_its_canonical_key() -> None:
    cache = _cache(
        (
            # the base ran afresh: canonical = its run key, its usual key beside it
            CacheConfigRecord(digest=RUN_KEY, keys=(BASE_DEF,)),
            CacheConfigRecord(digest=STEP, inputs=((CacheInput(link=0),),), keys=(LINK,)),
            CacheConfigRecord(
                digest=FINAL, inputs=((CacheInput(link=1),),), results=(CacheResult(layer=0),)
            ),
        )
    )
    base = await cache.lookup(BASE_DEF)
    assert base is not None
    assert base.canonical_key == RUN_KEY
    assert base.result_ids == ("",)  # nothing to load: the step runs if it is needed
    assert await cache.load("", None) is None  # type: ignore[arg-type]
    # by its canonical key alone a record without results tells nothing
    assert await cache.lookup(RUN_KEY) is None
    assert await cache.lookup(STEP) is None
    link = await cache.lookup(LINK)
    assert link is not None
    assert link.canonical_key == STEP
    final = await cache.lookup(FINAL)
    assert final is not None
    assert final.result_ids == ("0",)
    assert cache.statistics().records == 1  # records with a result to load


async def test_a_record_with_results_keeps_its_keys() -> None:
    cache = _cache(
        (
            CacheConfigRecord(digest=RUN_KEY, keys=(BASE_DEF,), results=(CacheResult(layer=0),)),
            CacheConfigRecord(digest=STEP, keys=(BASE_DEF,)),
        )
    )
    record = await cache.lookup(BASE_DEF)
    assert record is not None
    assert record.canonical_key == RUN_KEY
    assert record.result_ids == ("0",)
