"""``compression=estargz`` through the image exporters: options, annotations, the
config's diff_ids, and the blob variants a layer keeps per compression."""

from __future__ import annotations

import gzip
import hashlib
import io
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.cache import LayerBlob
from dockyard.cache._db import CacheDB
from dockyard.core import Digest, UsageError
from dockyard.exporter import (
    Compression,
    ExportRequest,
    ExportResponse,
    ImageExport,
    load_archive,
    parse_exporter,
    parse_output,
    resolve,
)
from dockyard.exporter._estargz import EStargzWriter
from dockyard.oci import ImageConfig, ImageManifest, MediaType, parse_manifest
from dockyard.remotecache import parse_cache_export

from .conftest import State, frontend_config
from .estargz_check import check_chunks, parse

TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"
SIZE = "io.containers.estargz.uncompressed-size"


async def _export(state: State, spec: str, ref: Any) -> ExportResponse:
    exporter = resolve(parse_output(spec), state.services)
    return await exporter.export(ExportRequest(ref=ref, image_config=frontend_config()))


async def _image(state: State, resp: ExportResponse) -> tuple[ImageManifest, ImageConfig]:
    assert resp.image_digest is not None
    manifest = parse_manifest(await state.content.read(resp.image_digest))
    assert isinstance(manifest, ImageManifest)
    config = ImageConfig.parse(await state.content.read(manifest.config.digest))
    return manifest, config


def test_options() -> None:
    opts = parse_exporter("image", {"name": "x", "compression": "estargz"})
    assert isinstance(opts, ImageExport)
    assert opts.image.compression.type is Compression.ESTARGZ
    assert opts.image.compression.effective_level == 6
    assert opts.image.use_oci(False)  # OCI types forced (BuildKit: "forcibly turning on")
    assert parse_exporter("image", opts.to_attrs()) == opts
    level = parse_exporter(
        "oci",
        {"dest": "x.tar", "compression": "estargz", "compression-level": "9",
         "force-compression": "true", "oci-mediatypes": "true"},
    )  # fmt: skip
    assert level.image.compression.level == 9  # type: ignore[union-attr]
    assert level.image.compression.force  # type: ignore[union-attr]
    assert level.image.compression.variant() == "estargz-9"  # type: ignore[union-attr]
    with pytest.raises(UsageError, match='"compression=estargz" conflicts with'):
        parse_output("type=image,name=x,compression=estargz,oci-mediatypes=false")
    with pytest.raises(UsageError, match="out of range for estargz"):
        parse_output("type=image,name=x,compression=estargz,compression-level=10")
    with pytest.raises(UsageError, match="gzip, estargz, zstd or uncompressed"):
        parse_output("type=image,name=x,compression=stargz")
    cache = parse_cache_export("type=local,dest=/tmp/c,compression=estargz,force-compression=true")
    assert cache.compression is not None  # type: ignore[union-attr]
    assert cache.compression.type is Compression.ESTARGZ  # type: ignore[union-attr]


async def test_image_layers_are_estargz(state: State) -> None:
    chain = await state.chain()
    resp = await _export(state, "type=image,name=esgz,compression=estargz", chain[-1])
    manifest, config = await _image(state, resp)
    assert manifest.media_type == MediaType.OCI_MANIFEST
    # the empty last step has no layer, as with plain gzip
    assert len(manifest.layers) == 2
    assert len(config.diff_ids) == 2
    for desc, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        assert desc.media_type == MediaType.OCI_LAYER_GZIP  # the media type stays gzip
        blob = await state.content.read(desc.digest)
        parsed = parse(blob)
        check_chunks(parsed)
        plain = parsed.uncompressed
        assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
        assert desc.annotations[TOC_DIGEST] == (
            "sha256:" + hashlib.sha256(parsed.toc_json).hexdigest()
        )
        assert desc.annotations[SIZE] == str(len(plain))
        # any gunzip reads the layer: tarfile stops at the end marker, before the TOC
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
            assert "stargz.index.json" not in tf.getnames()
    names = {e["name"] for e in parse(await state.content.read(manifest.layers[0].digest)).entries}
    assert {"etc/os-release", "bin/tool", "bin/tool-link", "bin/alias"} <= names


async def test_variants_per_compression(state: State) -> None:
    chain = await state.chain()
    gz = await _export(state, "type=image,name=gz,oci-mediatypes=true", chain[1])
    es = await _export(state, "type=image,name=es,compression=estargz", chain[1])
    gz_manifest, gz_config = await _image(state, gz)
    es_manifest, es_config = await _image(state, es)
    # without force, the layers' gzip blobs are reused as they are (BuildKit: the
    # layers a base image brings stay plain gzip unless force-compression=true)
    assert [d.digest for d in es_manifest.layers] == [d.digest for d in gz_manifest.layers]
    assert es_config.diff_ids == gz_config.diff_ids
    assert all(not d.annotations for d in es_manifest.layers)
    forced = await _export(
        state, "type=image,name=f,compression=estargz,force-compression=true", chain[1]
    )
    f_manifest, f_config = await _image(state, forced)
    assert not {d.digest for d in f_manifest.layers} & {d.digest for d in gz_manifest.layers}
    assert all(TOC_DIGEST in d.annotations for d in f_manifest.layers)
    assert f_config.diff_ids != gz_config.diff_ids  # the TOC is part of the stream
    # both variants are remembered per layer
    gz_blob, es_blob = chain[0].blob("gzip"), chain[0].blob("estargz")
    assert gz_blob is not None
    assert es_blob is not None
    assert gz_blob.digest != es_blob.digest
    assert dict(es_blob.annotations)[SIZE].isdigit()
    # a gzip export with force makes plain gzip again (here: reuses the gzip variant)
    again = await _export(state, "type=image,name=g,force-compression=true", chain[1])
    assert [d.digest for d in (await _image(state, again))[0].layers] == [
        d.digest for d in gz_manifest.layers
    ]
    # a docker-typed gzip export may reuse the eStargz blob but drops its annotations
    docker = await _export(state, "type=image,name=d", chain[-1])
    d_manifest, _ = await _image(state, docker)
    assert d_manifest.media_type == MediaType.DOCKER_MANIFEST
    assert all(not d.annotations for d in d_manifest.layers)


async def test_oci_archive_loads_back(state: State, tmp_path: Path) -> None:
    chain = await state.chain()
    dest = tmp_path / "img.tar"
    spec = f"type=oci,dest={dest},name=docker.io/library/esgz:1,compression=estargz"
    await _export(state, spec, chain[-1])
    loaded = await load_archive(dest, state.content, state.images)
    assert loaded
    with tarfile.open(dest) as tf:
        index = tf.extractfile("index.json")
        assert index is not None
        assert b"application/vnd.oci.image.index.v1+json" in index.read()


async def test_rewrite_timestamp(state: State) -> None:
    chain = await state.chain()
    resp = await _export(
        state,
        "type=image,name=t,compression=estargz,rewrite-timestamp=true,source-date-epoch=86400",
        chain[1],
    )
    manifest, _ = await _image(state, resp)
    for desc in manifest.layers:
        for entry in parse(await state.content.read(desc.digest)).entries:
            if "modtime" in entry:
                assert entry["modtime"] <= "1970-01-02T00:00:00Z"


def test_blob_annotations_are_stored_and_an_old_database_gains_the_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metadata.db"
    with sqlite3.connect(path) as db:  # the table as a Dockyard before this made it
        db.execute(
            "CREATE TABLE cache_blobs (record_id TEXT NOT NULL, variant TEXT NOT NULL,"
            " diff_id TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,"
            " size INTEGER NOT NULL, PRIMARY KEY (record_id, variant)) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO cache_blobs VALUES ('r', 'gzip', ?, ?, 'application/x', 3)",
            ("sha256:" + "1" * 64, "sha256:" + "2" * 64),
        )
    db2 = CacheDB(path)
    try:
        old = db2.blob("r", "gzip")
        assert old is not None
        assert old.annotations == ()
        blob = LayerBlob(
            variant="estargz",
            diff_id=Digest("sha256:" + "3" * 64),
            digest=Digest("sha256:" + "4" * 64),
            media_type=MediaType.OCI_LAYER_GZIP,
            size=9,
            annotations=((TOC_DIGEST, "sha256:" + "5" * 64), (SIZE, "123")),
        )
        db2.set_blob("r", blob).wait()
        assert db2.blob("r", "estargz") == blob
    finally:
        db2.close()


async def test_force_keeps_a_pulled_blob_that_already_is_estargz(state: State) -> None:
    """BuildKit's ``Is`` check: under force-compression=true a layer whose blob already
    is eStargz (pulled, so recorded as plain ``gzip``) is kept, not recompressed."""
    chain = await state.chain()
    layer = chain[0]
    tar = io.BytesIO()
    await layer.write_layer(tar)
    out = io.BytesIO()
    writer = EStargzWriter(out, 1)  # not the bytes an export would make (level 6)
    writer.write(tar.getvalue())
    writer.close()
    blob = out.getvalue()
    lease = state.content.create_lease()
    digest = (await state.content.write_blob(blob, lease=lease)).digest
    layer.set_blob(  # what a pull of an eStargz image records
        LayerBlob(
            variant="gzip",
            diff_id=writer.info.diff_id,
            digest=digest,
            media_type=MediaType.OCI_LAYER_GZIP,
            size=len(blob),
        )
    )
    resp = await _export(
        state, "type=image,name=k,compression=estargz,force-compression=true", chain[0]
    )
    manifest, config = await _image(state, resp)
    assert [d.digest for d in manifest.layers] == [digest]
    assert dict(manifest.layers[0].annotations) == dict(writer.info.annotations())
    assert config.diff_ids == (writer.info.diff_id,)
    # a plain gzip blob is converted
    plain = await _export(
        state, "type=image,name=p,compression=estargz,force-compression=true", chain[1]
    )
    p_manifest, _ = await _image(state, plain)
    assert p_manifest.layers[0].digest == digest
    assert chain[1].blob("gzip") is None  # nothing plain was made for it
    assert TOC_DIGEST in p_manifest.layers[1].annotations
