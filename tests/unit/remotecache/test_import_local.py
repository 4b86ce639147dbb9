"""Reading local caches (no unpacking): the image-manifest form Dockyard writes,
BuildKit's older index form, tags and digests, and what is refused with a warning."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from dockyard.content import ContentStore
from dockyard.core import BuildWarning, CollectingReporter, Digest
from dockyard.oci import Descriptor, ImageIndex, ImageManifest, MediaType
from dockyard.remotecache import (
    CACHE_CONFIG_MEDIA_TYPE,
    CacheConfig,
    CacheConfigRecord,
    CacheLayer,
    CacheResult,
    ImportedCache,
    LocalCacheImport,
    import_cache,
)

KEY = "sha256:" + "aa" * 32
LAYER = b"not really a tar, never unpacked here"
DIFF_ID = Digest.from_bytes(b"uncompressed")


def write_blob(root: Path, data: bytes) -> Descriptor:
    digest = Digest.from_bytes(data)
    path = root / "blobs" / "sha256" / digest.hex
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Descriptor(media_type="", digest=digest, size=len(data))


def write_cache(root: Path, *, index_form: bool = False, tag: str = "latest") -> Digest:
    layer = write_blob(root, LAYER)
    config = CacheConfig(
        layers=(
            CacheLayer(
                blob=layer.digest,
                media_type=MediaType.OCI_LAYER_GZIP,
                diff_id=DIFF_ID,
                size=layer.size,
            ),
        ),
        records=(CacheConfigRecord(digest=KEY, results=(CacheResult(layer=0),)),),
    ).to_bytes()
    config_desc = Descriptor.of(CACHE_CONFIG_MEDIA_TYPE, config)
    write_blob(root, config)
    layer_desc = Descriptor(
        media_type=MediaType.OCI_LAYER_GZIP, digest=layer.digest, size=layer.size
    )
    if index_form:
        data = ImageIndex(manifests=(layer_desc, config_desc)).to_bytes()
        media_type = MediaType.OCI_INDEX
    else:
        data = ImageManifest(config=config_desc, layers=(layer_desc,)).to_bytes()
        media_type = MediaType.OCI_MANIFEST
    top = write_blob(root, data)
    entry = {
        "mediaType": media_type,
        "digest": str(top.digest),
        "size": top.size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return top.digest


@pytest.fixture
async def content(tmp_path: Path) -> AsyncIterator[ContentStore]:
    store = ContentStore(tmp_path / "content")
    yield store
    store.close()


async def read(
    content: ContentStore, options: LocalCacheImport
) -> tuple[ImportedCache | None, CollectingReporter]:
    reporter = CollectingReporter()
    cache = await import_cache(
        options, content=content, unpacker=cast(Any, None), reporter=reporter
    )
    return cache, reporter


@pytest.mark.parametrize("index_form", [False, True])
async def test_both_forms_are_read(tmp_path: Path, content: ContentStore, index_form: bool) -> None:
    write_cache(tmp_path / "c", index_form=index_form)
    cache, reporter = await read(content, LocalCacheImport(src=tmp_path / "c"))
    assert cache is not None
    try:
        record = await cache.lookup(KEY)
        assert record is not None
        assert record.result_ids == ("0",)
    finally:
        await cache.aclose()
    assert not [e for e in reporter.events if isinstance(e, BuildWarning)]


async def test_by_tag_and_by_digest(tmp_path: Path, content: ContentStore) -> None:
    digest = write_cache(tmp_path / "c", tag="v2")
    cache, _ = await read(content, LocalCacheImport(src=tmp_path / "c", digest=digest))
    assert cache is not None
    await cache.aclose()
    cache, _ = await read(content, LocalCacheImport(src=tmp_path / "c", tag="v2"))
    assert cache is not None
    await cache.aclose()
    cache, reporter = await read(content, LocalCacheImport(src=tmp_path / "c"))  # latest
    assert cache is None
    (warning,) = [e for e in reporter.events if isinstance(e, BuildWarning)]
    assert "not found" in warning.short


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-dir", "does not exist"),
        ("no-index", "index.json is missing"),
        ("config", "cache config"),
        ("not-a-cache", "not a build cache manifest"),
    ],
)
async def test_unreadable_caches_are_warnings(
    tmp_path: Path, content: ContentStore, damage: str, message: str
) -> None:
    root = tmp_path / "c"
    if damage != "no-dir":
        write_cache(root)
    if damage == "no-index":
        (root / "index.json").unlink()
    elif damage == "config":
        index = json.loads((root / "index.json").read_text())
        top = root / "blobs" / "sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.loads(top.read_text())
        config = root / "blobs" / "sha256" / manifest["config"]["digest"].removeprefix("sha256:")
        config.write_bytes(b'{"records": 1}'.ljust(manifest["config"]["size"]))
        # the blob no longer matches its digest: refused before parsing
        message = "does not match"
    elif damage == "not-a-cache":
        config = write_blob(root, b"{}")
        data = ImageManifest(
            config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=config.digest, size=2)
        ).to_bytes()
        top = write_blob(root, data)
        entry = {
            "mediaType": MediaType.OCI_MANIFEST,
            "digest": str(top.digest),
            "size": top.size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }
        (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    cache, reporter = await read(content, LocalCacheImport(src=root))
    assert cache is None
    (warning,) = [e for e in reporter.events if isinstance(e, BuildWarning)]
    assert warning.short.startswith(f"importing cache from {root} failed")
    assert message in warning.short
