from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.content import REF_NAME_ANNOTATION, ContentStore, OCILayout, write_oci_layout
from dockyard.core import ContentError, Digest, NotFoundError
from dockyard.oci import Descriptor, ImageIndex, ImageManifest, MediaType


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ContentStore]:
    s = ContentStore(tmp_path / "content")
    yield s
    s.close()


async def _image(store: ContentStore, tag: str = "latest") -> tuple[ImageIndex, Descriptor]:
    layer = await store.write_blob(b"layer-bytes" * 1000)
    config = await store.write_blob(b'{"architecture":"amd64","os":"linux"}')
    manifest = ImageManifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=config.digest, size=config.size),
        layers=(Descriptor(media_type=MediaType.OCI_LAYER, digest=layer.digest, size=layer.size),),
    )
    m = await store.write_blob(manifest.to_bytes())
    desc = Descriptor(
        media_type=MediaType.OCI_MANIFEST,
        digest=m.digest,
        size=m.size,
        annotations={REF_NAME_ANNOTATION: tag},
    )
    return ImageIndex(manifests=(desc,)), desc


@pytest.mark.parametrize("as_tar", [False, True])
async def test_round_trip(store: ContentStore, tmp_path: Path, as_tar: bool) -> None:
    index, desc = await _image(store)
    dest = tmp_path / ("image.tar" if as_tar else "layout")
    await write_oci_layout(store, index, dest, tar=as_tar)
    other = ContentStore(tmp_path / "other")
    try:
        with OCILayout.open(dest) as layout:
            assert layout.index == index
            assert layout.resolve("latest") == desc
            assert layout.resolve(str(desc.digest)) == desc
            assert layout.resolve() == desc
            with pytest.raises(NotFoundError):
                layout.resolve("nope")
            copied = await layout.copy_to(other, desc)
        assert len(copied) == 3
        for d in copied:
            assert await other.read(d.digest) == await store.read(d.digest)
    finally:
        other.close()


async def test_tarball_is_deterministic(store: ContentStore, tmp_path: Path) -> None:
    index, _ = await _image(store)
    a, b = io.BytesIO(), io.BytesIO()
    await write_oci_layout(store, index, a, tar=True)
    await write_oci_layout(store, index, b, tar=True)
    assert a.getvalue() == b.getvalue()
    with tarfile.open(fileobj=io.BytesIO(a.getvalue())) as tar:
        names = tar.getnames()
    assert names[:2] == ["oci-layout", "index.json"]


async def test_missing_blob_refused(store: ContentStore, tmp_path: Path) -> None:
    index, _desc = await _image(store)
    await store.gc([])  # drop everything
    with pytest.raises(NotFoundError):
        await write_oci_layout(store, index, tmp_path / "x")


async def test_tampered_blob_detected(store: ContentStore, tmp_path: Path) -> None:
    index, desc = await _image(store)
    dest = tmp_path / "layout"
    await write_oci_layout(store, index, dest)
    manifest = json.loads((dest / "blobs" / "sha256" / desc.digest.hex).read_bytes())
    layer = manifest["layers"][0]["digest"].split(":")[1]
    (dest / "blobs" / "sha256" / layer).write_bytes(b"tampered")
    other = ContentStore(tmp_path / "other")
    try:
        with OCILayout.open(dest) as layout, pytest.raises(ContentError):
            await layout.copy_to(other, desc)
        assert not other.has(Digest("sha256:" + layer))
    finally:
        other.close()


async def test_symlinked_blob_cannot_leave_the_layout(store: ContentStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    digest = Digest.from_bytes(b"secret")
    dest = tmp_path / "layout"
    index, _ = await _image(store)
    await write_oci_layout(store, index, dest)
    os.symlink(secret, dest / "blobs" / "sha256" / digest.hex)
    with OCILayout.open(dest) as layout, pytest.raises(NotFoundError):
        layout.open_blob(digest)


def _tar_with(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tar.addfile(ti)
    return buf.getvalue()


def test_hostile_tarball(tmp_path: Path) -> None:
    digest = Digest.from_bytes(b"x")
    index = ImageIndex(
        manifests=(Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digest, size=1),)
    )
    data = _tar_with(
        {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": index.to_bytes(),
            f"../blobs/sha256/{digest.hex}": b"x",
        },
        {"blobs/sha256/" + Digest.from_bytes(b"y").hex: "/etc/passwd"},
    )
    path = tmp_path / "evil.tar"
    path.write_bytes(data)
    with OCILayout.open(path) as layout:
        with pytest.raises(NotFoundError):
            layout.open_blob(digest)
        with pytest.raises(NotFoundError):
            layout.open_blob(Digest.from_bytes(b"y"))


def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        OCILayout.open(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"9"}')
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(ContentError, match="version"):
        OCILayout.open(tmp_path)
    junk = tmp_path / "junk"
    junk.write_bytes(b"junk" * 200)
    with pytest.raises(ContentError):
        OCILayout.open(junk)
    with pytest.raises(NotFoundError):
        OCILayout.open(tmp_path / "missing.tar")
