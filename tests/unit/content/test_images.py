from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard.content import DANGLING_PREFIX, ContentStore, ImageStore, dangling_name
from dockyard.core import ContentError, Digest, NotFoundError, Platform
from dockyard.oci import Descriptor, ImageConfig, ImageIndex, ImageManifest, MediaType

NAME = "docker.io/library/app:latest"


@pytest.fixture
def content(tmp_path: Path) -> Iterator[ContentStore]:
    store = ContentStore(tmp_path / "state" / "content")
    yield store
    store.close()


@pytest.fixture
async def images(tmp_path: Path, content: ContentStore) -> AsyncIterator[ImageStore]:
    store = ImageStore.open(tmp_path / "state", content)
    yield store
    store.close()


async def _manifest(
    content: ContentStore, layer: bytes = b"layer", arch: str = "amd64"
) -> tuple[Descriptor, Digest]:
    blob = await content.write_blob(layer)
    config = ImageConfig(architecture=arch, os="linux", diff_ids=(blob.digest,))
    cfg = await content.write_blob(config.to_bytes())
    manifest = ImageManifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=cfg.digest, size=cfg.size),
        layers=(Descriptor(media_type=MediaType.OCI_LAYER, digest=blob.digest, size=blob.size),),
    )
    data = manifest.to_bytes()
    await content.write_blob(data)
    return Descriptor.of(MediaType.OCI_MANIFEST, data), cfg.digest


async def test_put_get_list_delete(images: ImageStore, content: ContentStore) -> None:
    desc, config = await _manifest(content)
    stored = await images.put(NAME, desc)
    assert stored.name == NAME
    assert stored.target == desc
    assert stored.config_digest == config
    assert stored.id == config
    assert not stored.dangling
    assert await images.get(NAME) == stored
    assert [i.name for i in await images.list()] == [NAME]
    assert images.roots() == {desc.digest}
    removed = await images.delete(NAME)
    assert removed == stored
    assert await images.list() == []
    with pytest.raises(NotFoundError, match=re.escape(f"image not found: {NAME}")):
        await images.get(NAME)
    with pytest.raises(NotFoundError):
        await images.delete(NAME)


async def test_retag_keeps_created_and_moves_lease(
    images: ImageStore, content: ContentStore
) -> None:
    first, _ = await _manifest(content, b"one")
    second, _ = await _manifest(content, b"two")
    a = await images.put(NAME, first)
    again = await images.put(NAME, first)
    assert again.updated == a.updated
    b = await images.put(NAME, second)
    assert b.created == a.created
    assert b.target == second
    result = await content.gc()
    assert first.digest in result.removed
    assert content.has(second.digest)


async def test_stored_images_survive_gc_without_roots(
    images: ImageStore, content: ContentStore
) -> None:
    desc, config = await _manifest(content)
    loose, _ = await _manifest(content, b"loose")
    await images.put(NAME, desc)
    result = await content.gc()
    assert content.has(desc.digest)
    assert content.has(config)
    assert loose.digest in result.removed
    await images.delete(NAME)
    result = await content.gc()
    assert desc.digest in result.removed
    assert config in result.removed


async def test_dangling_images_give_way_to_named_ones(
    images: ImageStore, content: ContentStore
) -> None:
    desc, _ = await _manifest(content)
    dangling = await images.put(None, desc)
    assert dangling.dangling
    assert dangling.name == DANGLING_PREFIX + desc.digest
    assert dangling.name == dangling_name(desc.digest)
    other, _ = await _manifest(content, b"other")
    await images.put(None, other)
    await images.put(NAME, desc)
    names = [i.name for i in await images.list()]
    assert names == [NAME, dangling_name(other.digest)]


async def test_lookup_by_name_id_and_prefix(images: ImageStore, content: ContentStore) -> None:
    desc, config = await _manifest(content)
    await images.put(NAME, desc)
    await images.put("docker.io/library/app:v2", desc)
    assert [i.name for i in await images.lookup(NAME)] == [NAME]
    for text in (str(config), config.hex, config.hex[:12], "sha256:" + config.hex[:5]):
        found = await images.lookup(text)
        assert {i.name for i in found} == {NAME, "docker.io/library/app:v2"}
    assert len(await images.lookup(desc.digest.hex[:10])) == 2
    assert [i.name for i in await images.by_digest(desc.digest)] == [
        NAME,
        "docker.io/library/app:v2",
    ]
    with pytest.raises(NotFoundError):
        await images.lookup("nothing")
    with pytest.raises(NotFoundError):
        await images.lookup("sha256:" + "0" * 64)


async def test_put_refuses_missing_or_wrong_content(
    images: ImageStore, content: ContentStore
) -> None:
    ghost = Descriptor.of(MediaType.OCI_MANIFEST, b"{}")
    with pytest.raises(NotFoundError, match="not in the content store"):
        await images.put(NAME, ghost)
    layer = await content.write_blob(b"just a layer")
    with pytest.raises(ContentError, match="neither an image manifest nor an index"):
        await images.put(
            NAME, Descriptor(media_type=MediaType.OCI_LAYER, digest=layer.digest, size=layer.size)
        )
    missing_config = ImageManifest(
        config=Descriptor.of(MediaType.OCI_CONFIG, b'{"os":"linux"}'), layers=()
    )
    data = missing_config.to_bytes()
    await content.write_blob(data)
    with pytest.raises(NotFoundError, match="config"):
        await images.put(NAME, Descriptor.of(MediaType.OCI_MANIFEST, data))
    assert await images.list() == []


async def test_resolve_picks_the_platform_from_an_index(
    images: ImageStore, content: ContentStore
) -> None:
    amd, amd_config = await _manifest(content, b"amd", "amd64")
    arm, arm_config = await _manifest(content, b"arm", "arm64")
    index = ImageIndex(
        manifests=(
            Descriptor(
                media_type=amd.media_type,
                digest=amd.digest,
                size=amd.size,
                platform=Platform.of("linux", "amd64"),
            ),
            Descriptor(
                media_type=arm.media_type,
                digest=arm.digest,
                size=arm.size,
                platform=Platform.of("linux", "arm64"),
            ),
        )
    )
    data = index.to_bytes()
    await content.write_blob(data)
    stored = await images.put(NAME, Descriptor.of(MediaType.OCI_INDEX, data))
    assert stored.config_digest is None
    assert stored.id == stored.target.digest
    local = await images.resolve(NAME, Platform.parse("linux/arm64"))
    assert local.manifest_descriptor.digest == arm.digest
    assert local.manifest.config.digest == arm_config
    assert local.config.architecture == "arm64"
    local = await images.resolve(stored, Platform.parse("linux/amd64"))
    assert local.manifest.config.digest == amd_config
    with pytest.raises(NotFoundError, match="no image for platform"):
        await images.resolve(NAME, Platform.parse("linux/s390x"))


async def test_resolve_names_missing_blobs(images: ImageStore, content: ContentStore) -> None:
    desc, config = await _manifest(content)
    await images.put(NAME, desc)
    await content.delete(config)
    with pytest.raises(NotFoundError, match="missing from the content store"):
        await images.resolve(NAME)


async def test_crash_between_lease_and_record_is_reconciled(
    tmp_path: Path, content: ContentStore
) -> None:
    desc, _ = await _manifest(content)
    store = ImageStore.open(tmp_path / "state", content)
    await store.put(NAME, desc)
    store.close()
    # a lease left without its record, and a record whose lease is gone
    content.create_lease("image:docker.io/library/stale:latest")
    content.delete_lease("image:" + NAME)
    store = ImageStore.open(tmp_path / "state", content)
    try:
        assert "image:docker.io/library/stale:latest" not in content.leases()
        assert "image:" + NAME in content.leases()
        await content.gc()
        assert content.has(desc.digest)
    finally:
        store.close()


async def test_tables_share_metadata_db(tmp_path: Path, images: ImageStore) -> None:
    db = sqlite3.connect(tmp_path / "state" / "metadata.db")
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()
    assert "image_names" in tables
    assert mode == "wal"


async def test_invalid_names_are_refused(images: ImageStore, content: ContentStore) -> None:
    desc, _ = await _manifest(content)
    with pytest.raises(Exception, match="invalid image name"):
        await images.put("", desc)
    with pytest.raises(Exception, match="invalid image name"):
        await images.put(DANGLING_PREFIX + "x", desc)


async def test_a_new_or_moved_name_changes_the_generation(
    tmp_path: Path, images: ImageStore, content: ContentStore
) -> None:
    """A remembered build that looked for a name in vain (its FROM came from a registry)
    must not be trusted once the name exists; storing the same target again changes
    nothing, and neither does a dangling image."""
    from dockyard.core.statedir import read_generation

    state = tmp_path / "state"
    first, _ = await _manifest(content)
    second, _ = await _manifest(content, b"other")
    start = read_generation(state)
    await images.put(None, first)
    assert read_generation(state) == start
    await images.put(NAME, first)
    named = read_generation(state)
    assert named != start
    await images.put(NAME, first)
    assert read_generation(state) == named
    await images.put(NAME, second)
    assert read_generation(state) != named
