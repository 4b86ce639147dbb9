"""A registry that dies mid-push, and blob downloads that break, get cut or corrupted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dockyard.core import ContentError, Digest, Platform, RegistryError
from dockyard.oci import Descriptor, MediaType
from dockyard.registry import (
    BlobReader,
    FileSink,
    HostConfig,
    RegistryClient,
    RegistryConfig,
    RetryPolicy,
    TransientRegistryError,
)
from dockyard.testing.registry import BuiltImage, RegistryProcess, build_image

from .conftest import client_for, skopeo_inspect_json
from .proxy import FlakyProxy

MIB = 1 << 20


class Tripwire:
    """Yields ``data`` in 64 KiB chunks and calls ``trip`` once ``after`` bytes went out
    (only on the first read)."""

    def __init__(self, data: bytes, after: int, trip: Callable[[], None]) -> None:
        self.data = data
        self.after = after
        self.trip = trip
        self.reads = 0

    async def read(self, offset: int = 0) -> AsyncIterator[bytes]:
        self.reads += 1
        first = self.reads == 1
        for start in range(offset, len(self.data), 65536):
            if first and start >= self.after:
                self.trip()
                first = False
            yield self.data[start : start + 65536]


def big_image() -> tuple[BuiltImage, bytes]:
    layer = os.urandom(6 * MIB)  # random: gzip cannot shrink it
    image = build_image([{"big.bin": layer}, {"small": "x"}], compression="uncompressed")
    return image, image.blobs[image.manifest.layers[0].digest]


async def push(
    client: RegistryClient, registry: RegistryProcess, image: BuiltImage, big: bytes | BlobReader
) -> None:
    blobs: dict[Digest, bytes | BlobReader] = dict(image.blobs)
    blobs[image.manifest.layers[0].digest] = big
    await client.push_image(
        registry.ref("crash/app:v1"),
        manifest=image.manifest_bytes,
        media_type=image.media_type,
        blobs=blobs,
        chunk_size=MIB,
    )


async def assert_pulls_back(registry: RegistryProcess, image: BuiltImage, tmp_path: Path) -> None:
    async with client_for(registry) as client:
        resolved = await client.resolve(
            registry.ref("crash/app:v1"), platform=Platform.parse("linux/amd64")
        )
        assert resolved.digest == image.digest
        for layer in resolved.image_manifest.layers:
            target = tmp_path / layer.digest.hex
            await client.fetch_blob(registry.ref("crash/app:v1"), layer, FileSink(target))
            assert target.read_bytes() == image.blobs[layer.digest]
    info = await skopeo_inspect_json(registry, "crash/app:v1")
    assert info["Digest"] == image.digest


async def test_registry_killed_mid_push_then_next_push_completes(
    fresh_registry: RegistryProcess, tmp_path: Path
) -> None:
    image, layer = big_image()
    wire = Tripwire(layer, 2 * MIB, fresh_registry.kill)
    async with client_for(fresh_registry, retry=RetryPolicy(attempts=2, initial_delay=0)) as client:
        with pytest.raises(TransientRegistryError) as info:
            await push(client, fresh_registry, image, wire)
    assert f"registry {fresh_registry.host}" in str(info.value)
    assert wire.reads >= 1

    fresh_registry.start()  # same port, same storage
    async with client_for(fresh_registry) as client:
        await push(client, fresh_registry, image, layer)
    await assert_pulls_back(fresh_registry, image, tmp_path)


async def test_registry_restarted_during_backoff_push_completes(
    fresh_registry: RegistryProcess, tmp_path: Path
) -> None:
    image, layer = big_image()
    restarts: list[asyncio.Task[None]] = []

    def crash_and_come_back() -> None:
        fresh_registry.kill()
        restarts.append(
            asyncio.get_running_loop().create_task(asyncio.to_thread(fresh_registry.start))
        )

    wire = Tripwire(layer, 3 * MIB, crash_and_come_back)
    policy = RetryPolicy(attempts=8, initial_delay=0.2, max_delay=2.0)
    async with client_for(fresh_registry, retry=policy) as client:
        await push(client, fresh_registry, image, wire)
        assert client.statistics().restarted_uploads >= 1
    await asyncio.gather(*restarts)
    assert wire.reads >= 2
    await assert_pulls_back(fresh_registry, image, tmp_path)


@pytest.fixture
async def proxied(
    registry: RegistryProcess,
) -> AsyncIterator[tuple[FlakyProxy, RegistryClient, str, Descriptor, bytes]]:
    """A 2 MiB layer on the registry and a client that reaches it through a proxy."""
    data = os.urandom(2 * MIB)
    image = build_image([{"data.bin": data}], compression="uncompressed")
    async with client_for(registry) as direct:
        await direct.push_image(
            registry.ref("flaky:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
        )
    proxy = FlakyProxy(upstream_port=registry.port)
    await proxy.start()
    config = RegistryConfig(hosts={proxy.host: HostConfig(http=True)})
    policy = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.1)
    try:
        async with RegistryClient(config=config, retry=policy) as client:
            layer = image.manifest.layers[0]
            yield proxy, client, f"{proxy.host}/flaky:v1", layer, image.blobs[layer.digest]
    finally:
        await proxy.close()


async def test_truncated_downloads_resume_with_range(
    proxied: tuple[FlakyProxy, RegistryClient, str, Descriptor, bytes], tmp_path: Path
) -> None:
    proxy, client, ref, layer, data = proxied
    proxy.cut_blob_gets = 2
    proxy.cut_after = 300_000
    await client.fetch_blob(ref, layer, FileSink(tmp_path / "blob"))
    assert (tmp_path / "blob").read_bytes() == data
    assert client.statistics().resumed_downloads == 2
    ranges = [
        line.split(b": ", 1)[1]
        for request in proxy.blob_requests
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"range:")
    ]
    assert len(ranges) == 2
    assert all(r.startswith(b"bytes=") and r.endswith(b"-") for r in ranges)
    assert int(ranges[1][6:-1]) > int(ranges[0][6:-1]) > 0


async def test_server_errors_on_blobs_are_retried(
    proxied: tuple[FlakyProxy, RegistryClient, str, Descriptor, bytes], tmp_path: Path
) -> None:
    proxy, client, ref, layer, data = proxied
    proxy.fail_blob_gets = 2
    await client.fetch_blob(ref, layer, FileSink(tmp_path / "blob"))
    assert (tmp_path / "blob").read_bytes() == data
    assert client.statistics().retries >= 2


async def test_downloads_that_keep_failing_leave_nothing(
    proxied: tuple[FlakyProxy, RegistryClient, str, Descriptor, bytes], tmp_path: Path
) -> None:
    proxy, client, ref, layer, _ = proxied
    proxy.cut_blob_gets = 100
    proxy.cut_after = 1000
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RegistryError, match="download from registry"):
        await client.fetch_blob(ref, layer, FileSink(out / "blob"))
    assert list(out.iterdir()) == []


async def test_corrupt_blob_is_refused_and_nothing_stays(
    proxied: tuple[FlakyProxy, RegistryClient, str, Descriptor, bytes], tmp_path: Path
) -> None:
    proxy, client, ref, layer, _ = proxied
    proxy.corrupt_blob_gets = 1
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ContentError, match="does not match its digest"):
        await client.fetch_blob(ref, layer, FileSink(out / "blob"))
    assert list(out.iterdir()) == []
    # A wrong size claimed by a manifest is refused the same way.
    short = Descriptor(media_type=MediaType.OCI_LAYER, digest=layer.digest, size=layer.size - 1)
    with pytest.raises(ContentError, match="larger than"):
        await client.fetch_blob(ref, short, FileSink(out / "blob"))
    assert list(out.iterdir()) == []
