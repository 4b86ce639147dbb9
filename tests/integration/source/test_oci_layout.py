"""``oci-layout://`` sources: images from OCI layouts the tests write, unpacked into
chains of layer snapshots."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import ImmutableRef, RecordType, UsageFilter
from dockyard.content import REF_NAME_ANNOTATION, ContentStore, write_oci_layout
from dockyard.core import ContentError, Digest, NotFoundError, Platform
from dockyard.oci import Descriptor, ImageIndex, ImageManifest, MediaType
from dockyard.source import CHAIN_ID_LABEL, chain_ids

from .conftest import (
    Engine,
    MadeImage,
    layer_tar,
    make_image,
    open_engine,
    read_tree,
    tar_of,
    write_layout,
)

APP_LAYER = {
    "app": None,
    "app/hello.txt": b"hello from the app layer\n",
    "app/link": "->hello.txt",
    "etc/.wh.group": b"",
    "bin/.wh.ls": b"",
}


def _expected(rootfs: Path) -> dict[str, object]:
    tree = read_tree(rootfs)
    del tree["etc/group"]
    del tree["bin/ls"]
    tree["app"] = ("dir", 0o755)
    tree["app/hello.txt"] = (b"hello from the app layer\n", 0o644)
    tree["app/link"] = ("link", "hello.txt")
    return tree


@pytest.mark.parametrize("as_tar", [False, True], ids=["directory", "tarball"])
async def test_layout_image_unpacks_into_a_chain_matching_the_tree(
    engine: Engine, busybox_rootfs: Path, tmp_path: Path, as_tar: bool
) -> None:
    base = tar_of(busybox_rootfs)
    image = make_image([(base, "gzip"), (layer_tar(APP_LAYER), "zstd")])
    layout = await write_layout(
        tmp_path / ("layout.tar" if as_tar else "layout"), {"v1": image}, tar=as_tar
    )
    state = llb.oci_layout(f"{layout}:v1")
    ref, _ = await engine.solve(state.marshal())
    assert ref is not None
    assert await engine.tree(ref) == _expected(busybox_rootfs)
    value = ref.value
    assert isinstance(value, ImmutableRef)
    layers = await value.layers()
    try:
        assert [r.labels[CHAIN_ID_LABEL] for r in layers] == chain_ids(image.config.diff_ids)
        assert all(r.record_type is RecordType.SOURCE_IMAGE for r in layers)
        blob = layers[0].blob("gzip")
        assert blob is not None
        assert blob.digest == image.manifest.layers[0].digest
        assert engine.content.has(blob.digest)
    finally:
        for r in layers:
            await r.release()
    await ref.release()
    assert engine.unpacker.statistics().unpacked == 2

    # by digest: the same image, nothing unpacked again
    ref, _ = await engine.solve(llb.oci_layout(f"{layout}@{image.digest}").marshal())
    assert ref is not None
    await ref.release()
    assert engine.unpacker.statistics().unpacked == 2


async def test_images_sharing_a_base_share_its_snapshot(
    engine: Engine, busybox_rootfs: Path, tmp_path: Path
) -> None:
    base = tar_of(busybox_rootfs)
    first = make_image([(base, "gzip"), (layer_tar({"one": b"1"}), "uncompressed")])
    second = make_image([(base, "gzip"), (layer_tar({"two": b"2"}), "gzip")])
    layout = await write_layout(tmp_path / "layout", {"first": first, "second": second})
    both = llb.merge([llb.oci_layout(f"{layout}:first"), llb.oci_layout(f"{layout}:second")])
    ref, _ = await engine.solve(both.marshal())
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert tree["one"] == (b"1", 0o644)
    assert tree["two"] == (b"2", 0o644)
    assert tree["bin/busybox"] == read_tree(busybox_rootfs)["bin/busybox"]
    stats = engine.unpacker.statistics()
    assert stats.unpacked == 3  # the base once, each top layer once
    records = await engine.cache.du(UsageFilter(types=frozenset({RecordType.SOURCE_IMAGE})))
    assert len(records) == 3


async def test_platform_is_matched_from_the_index(engine: Engine, tmp_path: Path) -> None:
    arm = make_image(
        [(layer_tar({"arch": b"arm64"}), "gzip")], platform=Platform.parse("linux/arm64")
    )
    amd = make_image(
        [(layer_tar({"arch": b"amd64"}), "gzip")], platform=Platform.parse("linux/amd64")
    )
    store = ContentStore(tmp_path / "store")
    try:
        for image in (arm, amd):
            for blob in (*image.blobs.values(), image.manifest_bytes):
                await store.write_blob(blob)
        inner = ImageIndex(
            manifests=(
                arm.descriptor(platform=Platform.parse("linux/arm64")),
                amd.descriptor(platform=Platform.parse("linux/amd64")),
            )
        )
        inner_bytes = inner.to_bytes()
        await store.write_blob(inner_bytes)
        top = ImageIndex(
            manifests=(
                Descriptor.of(
                    MediaType.OCI_INDEX, inner_bytes, annotations={REF_NAME_ANNOTATION: "multi"}
                ),
            )
        )
        await write_oci_layout(store, top, tmp_path / "layout")
    finally:
        store.close()
    for platform, want in (("linux/arm64", b"arm64"), ("linux/amd64", b"amd64")):
        state = llb.oci_layout(f"{tmp_path / 'layout'}:multi", platform=platform)
        ref, _ = await engine.solve(state.marshal())
        assert ref is not None
        assert (await engine.tree(ref))["arch"] == (want, 0o644)
        await ref.release()
    with pytest.raises(NotFoundError, match="no image for platform linux/s390x"):
        await engine.solve(
            llb.oci_layout(f"{tmp_path / 'layout'}:multi", platform="linux/s390x").marshal()
        )


async def test_corrupt_layers_are_refused_and_leave_nothing(
    engine: Engine, busybox_rootfs: Path, tmp_path: Path
) -> None:
    good = layer_tar({"good": b"good"})
    image = make_image([(good, "gzip"), (layer_tar({"bad": b"bad"}), "gzip")])
    layout = await write_layout(tmp_path / "layout", {"v1": image})
    # flip the second layer's bytes on disk: its digest no longer matches
    bad_blob = tmp_path / "layout" / "blobs" / "sha256" / image.manifest.layers[1].digest.hex
    data = bytearray(bad_blob.read_bytes())
    data[-12] ^= 0xFF
    bad_blob.write_bytes(bytes(data))
    with pytest.raises(ContentError):
        await engine.solve(llb.oci_layout(f"{layout}:v1").marshal())
    assert await engine.cache.du() == []
    assert not engine.content.has(image.manifest.layers[1].digest)
    assert engine.content.ingests() == []

    # a config whose diff_id does not match the layer
    lying = make_image([(good, "gzip")])
    wrong = replace(lying.config, diff_ids=(Digest.from_bytes(b"other"),))
    config_bytes = wrong.to_bytes()
    manifest = ImageManifest(
        config=Descriptor.of(MediaType.OCI_CONFIG, config_bytes), layers=lying.manifest.layers
    )
    blobs = dict(lying.blobs)
    blobs[Digest.from_bytes(config_bytes)] = config_bytes
    liar = MadeImage(
        manifest=manifest, manifest_bytes=manifest.to_bytes(), config=wrong, blobs=blobs
    )
    layout2 = await write_layout(tmp_path / "layout2", {"v1": liar})
    with pytest.raises(ContentError, match="diff_id"):
        await engine.solve(llb.oci_layout(f"{layout2}:v1").marshal())
    assert await engine.cache.du() == []


async def test_unknown_tag_and_store(engine: Engine, tmp_path: Path) -> None:
    image = make_image([(layer_tar({"x": b"x"}), "gzip")])
    layout = await write_layout(tmp_path / "layout", {"v1": image})
    with pytest.raises(NotFoundError, match="'v2' not found"):
        await engine.solve(llb.oci_layout(f"{layout}:v2").marshal())
    with pytest.raises(NotFoundError, match="not known"):
        await engine.solve(llb.oci_layout("relative-store:v1").marshal())


async def test_layer_snapshots_are_shared_across_restarts(
    tmp_path: Path, mountinfo_unchanged: None
) -> None:
    base = layer_tar({"base": b"base" * 1000})
    first = make_image([(base, "gzip"), (layer_tar({"one": b"1"}), "gzip")])
    second = make_image([(base, "zstd"), (layer_tar({"two": b"2"}), "gzip")])
    layout = await write_layout(tmp_path / "layout", {"first": first, "second": second})
    async with open_engine(tmp_path / "state") as engine:
        ref, _ = await engine.solve(llb.oci_layout(f"{layout}:first").marshal())
        assert ref is not None
        await ref.release()
        assert engine.unpacker.statistics().unpacked == 2
    async with open_engine(tmp_path / "state") as engine:
        # the base has the same diff_id compressed differently: still one snapshot
        ref, _ = await engine.solve(llb.oci_layout(f"{layout}:second").marshal())
        assert ref is not None
        tree = await engine.tree(ref)
        await ref.release()
        assert tree["base"] == (b"base" * 1000, 0o644)
        assert tree["two"] == (b"2", 0o644)
        assert engine.unpacker.statistics().unpacked == 1


async def test_layer_limit(engine: Engine, tmp_path: Path) -> None:
    image = make_image([(layer_tar({"one": b"1"}), "gzip"), (layer_tar({"two": b"2"}), "gzip")])
    layout = await write_layout(tmp_path / "layout", {"v1": image})
    ref, _ = await engine.solve(llb.oci_layout(f"{layout}:v1", layer_limit=1).marshal())
    assert ref is not None
    assert await engine.tree(ref) == {"one": (b"1", 0o644)}
    await ref.release()
    ref, _ = await engine.solve(llb.oci_layout(f"{layout}:v1").marshal())
    assert ref is not None
    assert set(await engine.tree(ref)) == {"one", "two"}
    await ref.release()
    assert engine.unpacker.statistics().unpacked == 2
