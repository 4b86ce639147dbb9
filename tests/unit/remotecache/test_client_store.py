"""``type=local`` caches in a content store the client offers through its session (what
a daemon does with ``--cache-from``/``--cache-to type=local``): the values as they
travel, an import read through the session, an export written through it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from dockyard.content import ContentStore
from dockyard.core import BuildWarning, CollectingReporter, Digest, NotFoundError, UsageError
from dockyard.oci import Descriptor, ImageManifest, MediaType
from dockyard.remotecache import (
    CACHE_CONFIG_MEDIA_TYPE,
    CacheConfig,
    CacheConfigRecord,
    CacheLayer,
    CacheMode,
    CacheResult,
    ClientCacheExport,
    ClientCacheImport,
    cache_export_from_attrs,
    cache_import_from_attrs,
    import_cache,
    parse_cache_export,
    parse_cache_import,
)
from dockyard.remotecache._export import _write_client
from dockyard.session import LayoutStore, Session, SessionHandle, SessionManager

from .test_import_local import DIFF_ID, KEY, LAYER, write_cache

DIGEST = "sha256:" + "ab" * 32


def test_the_wire_form_names_a_store() -> None:
    assert cache_export_from_attrs("local", {"store": "cache-to-0", "mode": "max"}) == (
        ClientCacheExport(store="cache-to-0", mode=CacheMode.MAX)
    )
    assert cache_import_from_attrs("local", {"store": "cache-from-0", "digest": DIGEST}) == (
        ClientCacheImport(store="cache-from-0", digest=Digest(DIGEST))
    )
    with pytest.raises(UsageError, match="needs digest"):
        cache_import_from_attrs("local", {"store": "s"})
    with pytest.raises(UsageError, match="not both"):
        cache_export_from_attrs("local", {"store": "s", "dest": "/c"})
    with pytest.raises(UsageError, match="not both"):
        cache_import_from_attrs("local", {"store": "s", "src": "/c", "digest": DIGEST})
    # a user's flag names a directory: store= is not one of its options
    with pytest.raises(UsageError, match="unknown option store"):
        parse_cache_export("type=local,store=s")
    with pytest.raises(UsageError, match="unknown option store"):
        parse_cache_import(f"type=local,store=s,digest={DIGEST}")


@pytest.fixture
async def content(tmp_path: Path) -> AsyncIterator[ContentStore]:
    store = ContentStore(tmp_path / "content")
    yield store
    store.close()


@pytest.fixture
async def manager() -> AsyncIterator[SessionManager]:
    manager = SessionManager()
    yield manager
    await manager.aclose()


def attach(manager: SessionManager, **stores: LayoutStore) -> SessionHandle:
    return manager.register(Session(content_stores=stores))


async def test_an_import_reads_the_clients_store(
    tmp_path: Path, content: ContentStore, manager: SessionManager
) -> None:
    digest = write_cache(tmp_path / "c", tag="v2")
    handle = attach(manager, **{"cache-from-0": LayoutStore(path=tmp_path / "c")})
    reporter = CollectingReporter()
    cache = await import_cache(
        ClientCacheImport(store="cache-from-0", digest=digest),
        content=content,
        unpacker=cast(Any, None),
        reporter=reporter,
        client=handle.content,
    )
    assert cache is not None
    try:
        record = await cache.lookup(KEY)
        assert record is not None
        # a result's blobs come over the session into the content store, verified
        async with content.lease() as lease:
            chain = await cache.stored_chain("0", lease)
            assert chain is not None
            assert [layer.diff_id for layer in chain] == [DIFF_ID]
            assert await content.read(chain[0].descriptor.digest) == LAYER
    finally:
        await cache.aclose()
    assert not [e for e in reporter.events if isinstance(e, BuildWarning)]


async def test_a_client_store_that_cannot_be_read_is_a_warning(
    tmp_path: Path, content: ContentStore, manager: SessionManager
) -> None:
    digest = write_cache(tmp_path / "c")
    handle = attach(manager, **{"cache-from-0": LayoutStore(path=tmp_path / "c")})
    for options, client, message in (
        (ClientCacheImport(store="other", digest=digest), handle.content, "no content store"),
        (ClientCacheImport(store="cache-from-0", digest=Digest(DIGEST)), handle.content,
         "not found"),
        (ClientCacheImport(store="cache-from-0", digest=digest), None, "no client session"),
    ):  # fmt: skip
        reporter = CollectingReporter()
        cache = await import_cache(
            options, content=content, unpacker=cast(Any, None), reporter=reporter, client=client
        )
        assert cache is None
        (warning,) = [e for e in reporter.events if isinstance(e, BuildWarning)]
        assert message in warning.short

    # a layer blob the client corrupted: that result cannot be stored, nothing is
    layer = Digest.from_bytes(LAYER)
    (tmp_path / "c/blobs/sha256" / layer.hex).write_bytes(b"X" * len(LAYER))
    cache = await import_cache(
        ClientCacheImport(store="cache-from-0", digest=digest),
        content=content,
        unpacker=cast(Any, None),
        client=handle.content,
    )
    assert cache is not None
    async with content.lease() as lease:
        assert await cache.stored_chain("0", lease) is None
    await cache.aclose()
    assert not content.has(layer)


async def test_an_export_writes_the_layout_into_the_clients_store(
    tmp_path: Path, content: ContentStore, manager: SessionManager
) -> None:
    layer = await content.write_blob(LAYER)
    config = CacheConfig(
        layers=(
            CacheLayer(
                blob=layer.digest, media_type=MediaType.OCI_LAYER_GZIP, diff_id=DIFF_ID,
                size=layer.size,
            ),
        ),
        records=(CacheConfigRecord(digest=KEY, results=(CacheResult(layer=0),)),),
    ).to_bytes()  # fmt: skip
    await content.write_blob(config)
    manifest = ImageManifest(
        config=Descriptor.of(CACHE_CONFIG_MEDIA_TYPE, config),
        layers=(Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=layer.digest,
                           size=layer.size),),
        media_type=MediaType.OCI_MANIFEST,
    ).to_bytes()  # fmt: skip
    await content.write_blob(manifest)
    desc = Descriptor.of(MediaType.OCI_MANIFEST, manifest)
    dest = tmp_path / "client-cache"
    handle = attach(manager, **{"cache-to-0": LayoutStore(path=dest, writable=True, tag="v3")})
    await _write_client(content, desc, ClientCacheExport(store="cache-to-0"), handle.content)
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"] == [
        {
            "mediaType": MediaType.OCI_MANIFEST,
            "digest": str(desc.digest),
            "size": desc.size,
            "annotations": {"org.opencontainers.image.ref.name": "v3"},
        }
    ]
    for digest in (layer.digest, Digest.from_bytes(config), desc.digest):
        assert (dest / "blobs/sha256" / digest.hex).read_bytes() == await content.read(digest)
    # the same cache as a layout the embedded engine reads
    cache = await import_cache(
        cache_import_from_attrs("local", {"src": str(dest), "tag": "v3"}),
        content=content,
        unpacker=cast(Any, None),
    )
    assert cache is not None
    assert await cache.lookup(KEY) is not None
    await cache.aclose()
    # a store the client offers read-only is not written
    ro = attach(manager, **{"cache-to-0": LayoutStore(path=tmp_path / "ro")})
    with pytest.raises(NotFoundError, match="read-only"):
        await _write_client(content, desc, ClientCacheExport(store="cache-to-0"), ro.content)
    assert not (tmp_path / "ro").exists()
