from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.content import ContentStore
from dockyard.core import ContentError, Digest, DockyardError, NotFoundError
from dockyard.oci import Descriptor, ImageIndex, ImageManifest, MediaType


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ContentStore]:
    s = ContentStore(tmp_path / "content")
    yield s
    s.close()


async def test_write_read_info_walk_delete(store: ContentStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = Digest.from_bytes(data)
    async with store.writer("layer", expected_digest=digest, expected_size=len(data)) as w:
        for i in range(0, len(data), 1 << 20):
            await w.write(data[i : i + (1 << 20)])
        info = await w.commit()
    assert info.digest == digest
    assert info.size == len(data)
    assert store.path(digest) == store.root / "blobs" / "sha256" / digest.hex
    assert await store.read(digest) == data
    assert (await store.info(digest)).size == len(data)
    with store.open(digest) as f:
        assert f.read(10) == data[:10]
    assert [b.digest async for b in store.walk()] == [digest]
    assert store.ingests() == []
    await store.delete(digest)
    assert not store.has(digest)
    with pytest.raises(NotFoundError):
        await store.info(digest)
    with pytest.raises(NotFoundError):
        await store.delete(digest)


async def test_digest_mismatch_publishes_nothing(store: ContentStore) -> None:
    wrong = Digest.from_bytes(b"something else")
    async with store.writer("x", expected_digest=wrong) as w:
        await w.write(b"hello")
        with pytest.raises(ContentError, match="does not match"):
            await w.commit()
    assert not store.has(wrong)
    assert not store.has(Digest.from_bytes(b"hello"))
    assert [b async for b in store.walk()] == []
    assert store.ingests() == []


async def test_size_mismatch(store: ContentStore) -> None:
    async with store.writer("x") as w:
        await w.write(b"hello")
        with pytest.raises(ContentError, match="size"):
            await w.commit(expected_size=4)
    async with store.writer("y", expected_size=2) as w:
        with pytest.raises(ContentError, match="more than"):
            await w.write(b"hello")


async def test_interrupted_ingest_resumes(store: ContentStore) -> None:
    data = b"a" * 1000 + b"b" * 1000
    w = store.writer("resumable")
    await w.write(data[:1000])
    w.close()  # e.g. the connection dropped
    assert store.ingests() == ["resumable"]
    assert not store.has(Digest.from_bytes(data))
    async with store.writer("resumable") as w2:
        assert w2.offset == 1000
        await w2.write(data[1000:])
        info = await w2.commit(Digest.from_bytes(data), len(data))
    assert await store.read(info.digest) == data


async def test_concurrent_writers_on_one_ref_refused(store: ContentStore) -> None:
    async with store.writer("busy"):
        with pytest.raises(DockyardError, match="already being written"):
            store.writer("busy")


async def test_committing_existing_content_is_fine(store: ContentStore) -> None:
    a = await store.write_blob(b"same")
    b = await store.ingest("other", io.BytesIO(b"same"))
    assert a.digest == b.digest
    with pytest.raises(ContentError):
        await store.write_blob(b"x", expected_digest=Digest.from_bytes(b"y"))


async def test_blob_file_is_never_partial(store: ContentStore) -> None:
    """Until commit nothing exists at the blob path; after it, the full content does."""
    data = b"z" * 100
    digest = Digest.from_bytes(data)
    async with store.writer("p") as w:
        await w.write(data[:50])
        assert not store.path(digest).exists()
        await w.write(data[50:])
        assert not store.path(digest).exists()
        await w.commit(digest)
    assert store.path(digest).read_bytes() == data


async def test_corrupt_blob_detected_on_read(store: ContentStore) -> None:
    info = await store.write_blob(b"good")
    store.path(info.digest).write_bytes(b"evil")
    with pytest.raises(ContentError, match="corrupt"):
        await store.read(info.digest)


async def test_bad_digests(store: ContentStore) -> None:
    with pytest.raises(ContentError):
        store.path("sha256:../../etc/passwd")
    with pytest.raises(ContentError):
        await store.info("md5:abc")


async def _image(store: ContentStore) -> tuple[Descriptor, list[Digest]]:
    layer = await store.write_blob(b"layer-bytes")
    config = await store.write_blob(b'{"architecture":"amd64","os":"linux"}')
    manifest = ImageManifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=config.digest, size=config.size),
        layers=(Descriptor(media_type=MediaType.OCI_LAYER, digest=layer.digest, size=layer.size),),
    )
    mbytes = manifest.to_bytes()
    m = await store.write_blob(mbytes)
    index = ImageIndex(
        manifests=(Descriptor(media_type=MediaType.OCI_MANIFEST, digest=m.digest, size=m.size),)
    )
    ibytes = index.to_bytes()
    i = await store.write_blob(ibytes)
    desc = Descriptor(media_type=MediaType.OCI_INDEX, digest=i.digest, size=i.size)
    return desc, [i.digest, m.digest, config.digest, layer.digest]


async def test_gc_keeps_roots_closure_and_leases(store: ContentStore) -> None:
    root, kept = await _image(store)
    garbage = await store.write_blob(b"garbage")
    lease = store.create_lease()
    leased = await store.write_blob(b"leased", lease=lease)
    result = await store.gc([root.digest])
    assert result.removed == (garbage.digest,)
    assert result.freed == garbage.size
    for d in [*kept, leased.digest]:
        assert store.has(d)
    store.delete_lease(lease)
    result = await store.gc([])
    assert set(result.removed) == {*kept, leased.digest}
    assert [b async for b in store.walk()] == []


async def test_lease_context_and_expiry(store: ContentStore) -> None:
    async with store.lease() as lease:
        info = await store.write_blob(b"held", lease=lease)
        assert (await store.gc()).removed == ()
    assert store.leases() == []
    expired = store.create_lease(expires=1.0)
    store.add_to_lease(expired, info.digest)
    assert (await store.gc()).removed == (info.digest,)
    with pytest.raises(NotFoundError):
        store.add_to_lease("nope", info.digest)
    with pytest.raises(DockyardError):
        store.create_lease(expired)


async def test_gc_drops_stale_ingests(store: ContentStore) -> None:
    w = store.writer("stale")
    await w.write(b"x")
    w.close()
    async with store.writer("active") as active:
        await active.write(b"y")
        await store.gc(ingest_max_age=-1)
        assert store.ingests() == ["active"]
