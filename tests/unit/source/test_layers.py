"""The layer unpacker on the native snapshotter (no mounts): chain ids, sharing,
verification, cleanup after failures and cancellation."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import ContentStore
from dockyard.core import ContentError, Digest
from dockyard.oci import Descriptor, MediaType
from dockyard.source import CHAIN_ID_LABEL, BlobStream, LayerSpec, LayerUnpacker, chain_ids
from dockyard.source._layers import layer_specs


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.uid, info.gid = os.getuid(), os.getgid()
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layers(*contents: dict[str, bytes]) -> tuple[list[LayerSpec], dict[Digest, bytes]]:
    tars = [_tar(c) for c in contents]
    blobs = [gzip.compress(t) for t in tars]
    specs = layer_specs(
        [Descriptor.of(MediaType.OCI_LAYER_GZIP, b) for b in blobs],
        [Digest.from_bytes(t) for t in tars],
        name="test",
        limit=None,
    )
    return specs, {Digest.from_bytes(b): b for b in blobs}


class Fetcher:
    """Serves blobs from memory (unverified, like an OCI layout), counting fetches."""

    def __init__(self, blobs: dict[Digest, bytes], *, delay: float = 0.0) -> None:
        self.blobs = blobs
        self.fetched: list[Digest] = []
        self.delay = delay

    async def __call__(self, layer: LayerSpec) -> BlobStream:
        self.fetched.append(layer.blob.digest)
        if self.delay:
            await asyncio.sleep(self.delay)
        data = self.blobs[layer.blob.digest]

        def opener() -> BinaryIO:
            return io.BytesIO(data)

        return BlobStream(open=opener, verified=False)


@pytest.fixture
async def unpacker(tmp_path: Path) -> AsyncIterator[LayerUnpacker]:
    cache = await CacheManager.open(tmp_path / "state", snapshotter="native")
    content = ContentStore(tmp_path / "content")
    try:
        yield LayerUnpacker(cache, content)
        assert cache.statistics().in_use == 0
    finally:
        content.close()
        await cache.close()


def _read(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def _files(ref: ImmutableRef) -> dict[str, bytes]:
    (mount,) = await ref.mounts()
    return await asyncio.to_thread(_read, Path(mount.source))


def test_chain_ids_follow_the_image_spec() -> None:
    a, b = Digest.from_bytes(b"a"), Digest.from_bytes(b"b")
    assert chain_ids([a, b]) == [a, Digest.from_bytes(f"{a} {b}".encode())]
    with pytest.raises(ContentError, match="2 layers but the config 1"):
        layer_specs([Descriptor.of(MediaType.OCI_LAYER, b"x")] * 2, [a], name="img", limit=None)


async def test_unpack_chain_shares_base_and_stores_blobs(unpacker: LayerUnpacker) -> None:
    first, blobs = _layers({"base": b"base"}, {"one": b"1"})
    second, more = _layers({"base": b"base"}, {"two": b"2"})
    fetch = Fetcher({**blobs, **more})
    ref = await unpacker.unpack(first, fetch, name="first")
    assert await _files(ref) == {"base": b"base", "one": b"1"}
    assert ref.labels[CHAIN_ID_LABEL] == first[1].chain_id
    await ref.release()
    ref = await unpacker.unpack(second, fetch, name="second")
    assert await _files(ref) == {"base": b"base", "two": b"2"}
    await ref.release()
    assert fetch.fetched == [first[0].blob.digest, first[1].blob.digest, second[1].blob.digest]
    stats = unpacker.statistics()
    assert (stats.unpacked, stats.reused) == (3, 1)
    for layer in (*first, second[1]):
        assert unpacker.content.has(layer.blob.digest)  # kept for exporters
    # all of it again: nothing fetched
    ref = await unpacker.unpack(second, fetch, name="second")
    await ref.release()
    assert len(fetch.fetched) == 3


async def test_concurrent_unpacks_of_one_chain_unpack_once(unpacker: LayerUnpacker) -> None:
    layers, blobs = _layers({"a": b"a"}, {"b": b"b"})
    fetch = Fetcher(blobs, delay=0.01)
    refs = await asyncio.gather(*(unpacker.unpack(layers, fetch, name="x") for _ in range(4)))
    assert len({r.id for r in refs}) == 1
    for ref in refs:
        await ref.release()
    assert unpacker.statistics().unpacked == 2


async def test_empty_image(unpacker: LayerUnpacker) -> None:
    ref = await unpacker.unpack([], Fetcher({}), name="empty")
    assert await _files(ref) == {}
    await ref.release()


@pytest.mark.parametrize("what", ["digest", "diff_id", "fetch"])
async def test_failures_leave_no_record_and_no_blob(unpacker: LayerUnpacker, what: str) -> None:
    layers, blobs = _layers({"good": b"good"}, {"bad": b"bad"})
    bad = layers[1]
    if what == "digest":
        blobs[bad.blob.digest] = gzip.compress(_tar({"bad": b"tampered"}))
    elif what == "diff_id":
        layers[1] = LayerSpec(
            blob=bad.blob, diff_id=Digest.from_bytes(b"lie"), chain_id=bad.chain_id
        )
    fetch = Fetcher(blobs)

    async def failing(layer: LayerSpec) -> BlobStream:
        if layer is layers[1]:
            raise ContentError("the registry broke")
        return await fetch(layer)

    use: Callable[[LayerSpec], Awaitable[BlobStream]] = failing if what == "fetch" else fetch
    with pytest.raises(ContentError):
        await unpacker.unpack(layers, use, name="broken")
    assert await unpacker.cache.du() == []
    assert not unpacker.content.has(bad.blob.digest)
    assert unpacker.content.ingests() == []


async def test_cancelled_unpack_leaves_nothing(unpacker: LayerUnpacker) -> None:
    layers, blobs = _layers({"big": os.urandom(8 << 20)})
    started = threading.Event()
    loop = asyncio.get_running_loop()
    reading = asyncio.Event()

    class Slow(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if not started.is_set():
                started.set()
                loop.call_soon_threadsafe(reading.set)
            return super().read(min(n if n is not None and n > 0 else 4096, 4096))

    async def fetch(layer: LayerSpec) -> BlobStream:
        data = blobs[layer.blob.digest]
        return BlobStream(open=lambda: Slow(data), verified=False)

    task = asyncio.create_task(unpacker.unpack(layers, fetch, name="slow"))
    await reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await unpacker.cache.du() == []
    assert unpacker.content.ingests() == []
