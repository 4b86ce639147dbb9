"""Content stores over the session: OCI layout directories of the client that the engine
reads blobs from and writes blobs into by store id and digest — the client's side
(:class:`LayoutStore`) alone, and the engine's (``handle.content``) over each transport,
with the refusals that keep the engine inside what the client offered."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dockyard.core import ContentError, Digest, NotFoundError, UsageError
from dockyard.session import LayoutStore, Session, SessionHandle, blob_digest

from .harness import Harness

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def digest_of(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def put_blob(layout: Path, data: bytes) -> Digest:
    digest = digest_of(data)
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs/sha256" / digest.hex).write_bytes(data)
    return digest


def image(layout: Path, *, payload: bytes = b"layer bytes") -> tuple[Digest, int, bytes]:
    """A manifest with a config and one layer written into ``layout`` (not indexed)."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer_digest = put_blob(layout, payload)
    config_digest = put_blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(payload),
                }
            ],
        }
    ).encode()
    return put_blob(layout, manifest), len(manifest), manifest


def index_entries(layout: Path) -> list[dict[str, object]]:
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    assert isinstance(entries, list)
    return entries


def leftovers(layout: Path) -> list[str]:
    """Temp files left in the layout (there must be none)."""
    return sorted(p.name for p in layout.rglob("*.tmp"))


# -- the client's side ----------------------------------------------------------------


def test_digests_are_validated_before_they_name_a_path() -> None:
    good = "sha256:" + "a" * 64
    assert blob_digest(good) == good
    for bad in (
        "sha256:../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 128,
        "sha256:" + "a" * 63 + "/",
        "a" * 64,
        "",
    ):
        with pytest.raises(ContentError, match="invalid blob digest"):
            blob_digest(bad)


def test_a_blob_is_published_only_when_complete_and_correct(tmp_path: Path) -> None:
    store = LayoutStore(path=tmp_path / "layout", writable=True)
    data = os.urandom(3000)
    digest = digest_of(data)
    writer = store.blob_writer(digest, len(data))
    writer.write(data[:1000])
    assert store.blob_size(digest) is None  # not visible while written
    writer.write(data[1000:])
    writer.commit()
    assert store.blob_size(digest) == len(data)
    assert (tmp_path / "layout/blobs/sha256" / digest.hex).read_bytes() == data

    # other bytes under that digest: refused, nothing published, no temp file left
    other = digest_of(b"expected")
    writer = store.blob_writer(other, len(b"tampered"))
    writer.write(b"tampered")
    with pytest.raises(ContentError, match="another digest"):
        writer.commit()
    assert store.blob_size(other) is None
    # more bytes than announced: refused at once
    writer = store.blob_writer(other, 3)
    with pytest.raises(ContentError, match="more than the announced"):
        writer.write(b"expected")
    # fewer
    writer = store.blob_writer(other, 100)
    writer.write(b"expected")
    with pytest.raises(ContentError, match="8 bytes arrived, not 100"):
        writer.commit()
    assert store.blob_size(other) is None
    assert leftovers(tmp_path / "layout") == []


def test_a_read_only_store_takes_no_writes(tmp_path: Path) -> None:
    store = LayoutStore(path=tmp_path, writable=False)
    with pytest.raises(UsageError, match="read-only"):
        store.blob_writer(digest_of(b"x"), 1)
    with pytest.raises(UsageError, match="read-only"):
        store.commit(MANIFEST, digest_of(b"x"), 1)


def test_symlinks_in_the_layout_do_not_lead_out_of_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    secret = b"a file outside the layout"
    put_blob(outside, secret)
    layout = tmp_path / "layout"
    layout.mkdir()
    # blobs -> an absolute path: resolved inside the layout, never outside
    os.symlink(outside / "blobs", layout / "blobs")
    store = LayoutStore(path=layout, writable=True)
    assert store.blob_size(digest_of(secret)) is None
    with pytest.raises(NotFoundError):
        store.open_blob(digest_of(secret))
    # a blob that is a symlink climbing out reads nothing outside either
    os.unlink(layout / "blobs")
    (layout / "blobs/sha256").mkdir(parents=True)
    os.symlink(
        f"../../../outside/blobs/sha256/{digest_of(secret).hex}",
        layout / "blobs/sha256" / digest_of(secret).hex,
    )
    assert store.blob_size(digest_of(secret)) is None
    # writes through a symlinked blobs directory stay inside the layout
    os.unlink(layout / "blobs/sha256" / digest_of(secret).hex)
    os.rmdir(layout / "blobs/sha256")
    os.rmdir(layout / "blobs")
    os.symlink(outside / "blobs", layout / "blobs")
    data = b"written by the engine"
    writer = store.blob_writer(digest_of(data), len(data))
    writer.write(data)
    writer.commit()
    assert not (outside / "blobs/sha256" / digest_of(data).hex).exists()
    assert sorted(p.name for p in (outside / "blobs/sha256").iterdir()) == [digest_of(secret).hex]


def test_a_blob_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    (layout / "blobs/sha256").mkdir(parents=True)
    fifo = digest_of(b"fifo")
    os.mkfifo(layout / "blobs/sha256" / fifo.hex)  # opening it must not hang
    (layout / "blobs/sha256" / digest_of(b"dir").hex).mkdir()
    store = LayoutStore(path=layout)
    for digest in (fifo, digest_of(b"dir")):
        with pytest.raises(ContentError, match="not a regular file"):
            store.open_blob(digest)


def test_commit_names_the_manifest_and_keeps_the_other_entries(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest, size, _ = image(layout)
    store = LayoutStore(path=layout, writable=True, tag="v2")
    store.commit(MANIFEST, digest, size)
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    first = index_entries(layout)
    assert first == [
        {"mediaType": MANIFEST, "digest": digest, "size": size, "annotations": {REF_NAME: "v2"}}
    ]
    # another tag, and an entry of someone else's with a field we do not know
    other, other_size, _ = image(layout, payload=b"another layer")
    foreign = {"mediaType": MANIFEST, "digest": other, "size": other_size, "x-custom": [1]}
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append(foreign)
    (layout / "index.json").write_text(json.dumps(index))
    LayoutStore(path=layout, writable=True, tag="latest").commit(MANIFEST, other, other_size)
    # the same tag again replaces its entry only
    store.commit(MANIFEST, other, other_size)
    entries = index_entries(layout)
    assert foreign in entries
    assert {
        "mediaType": MANIFEST,
        "digest": other,
        "size": other_size,
        "annotations": {REF_NAME: "latest"},
    } in entries
    tagged = [e for e in entries if e.get("annotations") == {REF_NAME: "v2"}]
    assert [e["digest"] for e in tagged] == [other]
    assert len(entries) == 3
    assert store.resolve().digest == other
    assert store.resolve("latest").digest == other
    assert leftovers(layout) == []


def test_commit_refuses_a_manifest_whose_blobs_are_missing(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest, size, manifest = image(layout)
    layer = json.loads(manifest)["layers"][0]["digest"]
    os.unlink(layout / "blobs/sha256" / Digest(layer).hex)
    store = LayoutStore(path=layout, writable=True)
    with pytest.raises(NotFoundError, match=layer):
        store.commit(MANIFEST, digest, size)
    with pytest.raises(ContentError, match="bytes, not"):
        store.commit(MANIFEST, digest, size + 1)
    assert not (layout / "index.json").exists()


def test_resolve_reads_the_index_with_limits(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    store = LayoutStore(path=layout)
    with pytest.raises(NotFoundError, match=r"index\.json is missing"):
        store.resolve()
    (layout / "index.json").write_bytes(b"{" + b" " * (17 << 20) + b"}")
    with pytest.raises(ContentError, match="too large"):
        store.resolve()
    (layout / "index.json").write_text("[1, 2]")
    with pytest.raises(ContentError, match="not an image index"):
        store.resolve()
    digest = "sha256:" + "b" * 64
    entry = {"mediaType": MANIFEST, "digest": digest, "size": 5,
             "annotations": {"io.containerd.image.name": "docker.io/library/app:v1"}}  # fmt: skip
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    assert store.resolve("v1").digest == digest
    with pytest.raises(NotFoundError, match="no image tagged 'latest'"):
        store.resolve()
    entry["digest"] = "sha256:../../x"
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    with pytest.raises(ContentError, match="invalid blob digest"):
        store.resolve("v1")


def test_store_ids_are_plain_names() -> None:
    Session(content_stores={"cache-to-0": LayoutStore(path=Path("/x"))})
    for bad in ("", "a/b", "a:b", "a@b", ".hidden", "x" * 200):
        with pytest.raises(UsageError, match="content store id"):
            Session(content_stores={bad: LayoutStore(path=Path("/x"))})


# -- the engine's side, over each transport ---------------------------------------------


async def test_the_engine_reads_blobs_it_verifies(harness: Harness, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    payload = os.urandom(700_000)
    good = put_blob(layout, payload)
    session = Session(content_stores={"ctx": LayoutStore(path=layout)})
    async with harness.open(session) as handle:
        assert handle.content.has("ctx")
        assert not handle.content.writable("ctx")
        assert await handle.content.info("ctx", good) == len(payload)
        assert await handle.content.info("ctx", digest_of(b"absent")) is None
        got = bytearray()

        async def sink(data: bytes) -> None:
            got.extend(data)

        await handle.content.fetch("ctx", good, len(payload), sink)
        assert bytes(got) == payload
        small = put_blob(layout, b'{"small": true}')
        assert await handle.content.read("ctx", small, 15, limit=100) == b'{"small": true}'
        with pytest.raises(ContentError, match="too large"):
            await handle.content.read("ctx", good, len(payload), limit=1000)

        # the client's file under that name holds other bytes: refused
        (layout / "blobs/sha256" / small.hex).write_bytes(b'{"small": fake}')
        with pytest.raises(ContentError, match="does not match its digest"):
            await handle.content.read("ctx", small, 15, limit=100)
        # longer than the size the engine expects: refused as soon as it shows
        (layout / "blobs/sha256" / small.hex).write_bytes(b'{"small": true}' + b"x" * 5000)
        with pytest.raises(ContentError, match="more than its 15 bytes"):
            await handle.content.read("ctx", small, 15, limit=100)
        with pytest.raises(NotFoundError, match="not found"):
            await handle.content.read("ctx", digest_of(b"absent"), 6, limit=100)


async def test_the_engine_reaches_only_the_stores_offered(harness: Harness, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest = put_blob(layout, b"data")
    session = Session(content_stores={"ctx": LayoutStore(path=layout)})
    async with harness.open(session) as handle:
        with pytest.raises(NotFoundError, match=r"no content store 'other' \(it offers: ctx\)"):
            await handle.content.info("other", digest)
        with pytest.raises(NotFoundError, match="read-only"):
            await handle.content.push("ctx", digest, 4, tmp_path / "x")
        with pytest.raises(NotFoundError, match="read-only"):
            await handle.content.commit("ctx", MANIFEST, digest, 4)
        with pytest.raises(ContentError, match="invalid blob digest"):
            await handle.content.info("ctx", Digest("sha256:../../../../etc/passwd"))
        # the client refuses on its own what the engine's checks would have stopped
        peer = handle._peer
        with pytest.raises(NotFoundError, match="no content store 'other'"):
            await peer.content_info("other", digest)
        with pytest.raises(NotFoundError, match="read-only"):
            async with peer.content_write("ctx", digest_of(b"new"), 3) as stream:
                await stream.write(b"new")
        with pytest.raises(ContentError, match="invalid blob digest"):
            await peer.content_info("ctx", Digest("sha256:../../blobs"))
    assert sorted(p.name for p in (layout / "blobs/sha256").iterdir()) == [digest.hex]


async def test_a_client_without_stores_names_the_store(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        with pytest.raises(
            NotFoundError, match=r"no content store 'cache-from-0' \(it offers: none\)"
        ):
            await handle.content.info("cache-from-0", digest_of(b"x"))


async def test_the_engine_writes_and_commits(harness: Harness, tmp_path: Path) -> None:
    source = tmp_path / "engine"
    digest, size, manifest = image(source, payload=os.urandom(2_500_000))
    config = json.loads(manifest)["config"]
    layer = json.loads(manifest)["layers"][0]
    dest = tmp_path / "client-cache"
    session = Session(content_stores={"cache-to-0": LayoutStore(path=dest, writable=True)})
    async with harness.open(session) as handle:
        content = handle.content
        assert content.writable("cache-to-0")
        for blob in (layer, config):
            path = source / "blobs/sha256" / Digest(blob["digest"]).hex
            assert await content.push("cache-to-0", blob["digest"], blob["size"], path)
        # the manifest names a blob the client does not have yet: no commit
        with pytest.raises(NotFoundError, match=str(digest)):
            await content.commit("cache-to-0", MANIFEST, digest, size)
        assert await content.push("cache-to-0", digest, size, source / "blobs/sha256" / digest.hex)
        # present already: not sent again
        assert not await content.push(
            "cache-to-0", digest, size, source / "blobs/sha256" / digest.hex
        )
        await content.commit("cache-to-0", MANIFEST, digest, size)
    assert index_entries(dest) == [
        {"mediaType": MANIFEST, "digest": digest, "size": size, "annotations": {REF_NAME: "latest"}}
    ]
    for name in (source / "blobs/sha256").iterdir():
        assert (dest / "blobs/sha256" / name.name).read_bytes() == name.read_bytes()
    assert leftovers(dest) == []


async def test_a_blob_that_does_not_match_is_not_published(
    harness: Harness, tmp_path: Path
) -> None:
    dest = tmp_path / "client-cache"
    session = Session(content_stores={"cache-to-0": LayoutStore(path=dest, writable=True)})
    claimed = digest_of(b"what the engine claims")
    async with harness.open(session) as handle:
        peer = handle._peer  # an engine that lies about what it sends
        with pytest.raises(ContentError, match="another digest"):
            async with peer.content_write("cache-to-0", claimed, 12) as stream:
                await stream.write(b"other bytes!")
        with pytest.raises(ContentError):
            async with peer.content_write("cache-to-0", claimed, 3) as stream:
                await stream.write(b"far more than three bytes")
        source = tmp_path / "short"
        source.write_bytes(b"short")
        with pytest.raises(ContentError):
            await handle.content.push("cache-to-0", claimed, 22, source)
        assert await handle.content.info("cache-to-0", claimed) is None
    assert not (dest / "blobs/sha256" / claimed.hex).exists()
    assert leftovers(dest) == []


async def test_a_failed_push_leaves_the_handle_usable(harness: Harness, tmp_path: Path) -> None:
    dest = tmp_path / "client-cache"
    session = Session(content_stores={"c": LayoutStore(path=dest, writable=True)})
    async with harness.open(session) as handle:
        with pytest.raises(OSError):
            await handle.content.push("c", digest_of(b"x"), 1, tmp_path / "missing")
        data = tmp_path / "data"
        data.write_bytes(b"x")
        assert await handle.content.push("c", digest_of(b"x"), 1, data)
        assert isinstance(handle, SessionHandle)
    assert (dest / "blobs/sha256" / digest_of(b"x").hex).read_bytes() == b"x"
