"""Streamed uploads (digest known only at the end) against a real docker-registry."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from dockyard.core import ContentError, Digest, DockyardError
from dockyard.oci import Descriptor, MediaType
from dockyard.testing.registry import RegistryProcess

from .conftest import client_for
from .test_roundtrip import Recording


async def pieces(data: bytes, size: int = 300_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[i : i + size]


def settled(desc: Descriptor) -> asyncio.Future[Descriptor]:
    future: asyncio.Future[Descriptor] = asyncio.get_running_loop().create_future()
    future.set_result(desc)
    return future


async def test_streamed_blob_lands_with_its_digest(registry: RegistryProcess) -> None:
    data = os.urandom((2 << 20) + 777)
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    recording = Recording()
    seen: list[int] = []
    async with client_for(registry, transport=recording) as client:
        got = await client.push_blob_stream(
            registry.ref("stream/ok"), pieces(data), settled(desc), on_progress=seen.append
        )
        assert got == desc
        assert await client.get_blob(registry.ref("stream/ok"), desc, limit=len(data)) == data
        assert await client.blob_exists(registry.ref("stream/ok"), desc)
    assert seen[-1] == len(data)
    patches = [r for r in recording.requests if r.method == "PATCH"]
    assert len(patches) == 1
    assert "content-range" not in patches[0].headers
    assert patches[0].headers.get("transfer-encoding") == "chunked"
    puts = [r for r in recording.requests if r.method == "PUT"]
    assert [p.url.params["digest"] for p in puts] == [str(desc.digest)]


async def test_wrong_digest_is_refused_and_not_stored(registry: RegistryProcess) -> None:
    data = os.urandom(100_000)
    lie = Descriptor(
        media_type=MediaType.OCI_LAYER, digest=Digest.from_bytes(b"other"), size=len(data)
    )
    async with client_for(registry) as client:
        with pytest.raises(ContentError):
            await client.push_blob_stream(registry.ref("stream/lie"), pieces(data), settled(lie))
        assert not await client.blob_exists(registry.ref("stream/lie"), lie)


async def test_broken_stream_leaves_nothing(registry: RegistryProcess) -> None:
    data = os.urandom(700_000)
    desc = Descriptor.of(MediaType.OCI_LAYER, data)

    async def broken() -> AsyncIterator[bytes]:
        yield data[:400_000]
        raise DockyardError("the layer could not be made")

    recording = Recording()
    async with client_for(registry, transport=recording) as client:
        with pytest.raises(DockyardError):
            await client.push_blob_stream(registry.ref("stream/broken"), broken(), settled(desc))
        assert not await client.blob_exists(registry.ref("stream/broken"), desc)
    assert [r.method for r in recording.requests][-2:] == ["DELETE", "HEAD"]
    assert not [r for r in recording.requests if r.method == "PUT"]


async def test_failed_blob_never_closes_the_upload(registry: RegistryProcess) -> None:
    data = os.urandom(50_000)
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    failed: asyncio.Future[Descriptor] = asyncio.get_running_loop().create_future()
    failed.set_exception(DockyardError("compression failed"))
    async with client_for(registry) as client:
        with pytest.raises(DockyardError, match="compression failed"):
            await client.push_blob_stream(registry.ref("stream/failed"), pieces(data), failed)
        assert not await client.blob_exists(registry.ref("stream/failed"), desc)


async def test_size_mismatch_is_caught_before_closing(registry: RegistryProcess) -> None:
    data = os.urandom(50_000)
    desc = Descriptor.of(MediaType.OCI_LAYER, data + b"x")
    async with client_for(registry) as client:
        with pytest.raises(ContentError, match="bytes sent"):
            await client.push_blob_stream(registry.ref("stream/size"), pieces(data), settled(desc))


async def test_streamed_upload_with_token_auth(token_registry: RegistryProcess) -> None:
    data = os.urandom(200_000)
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    async with client_for(token_registry) as client:
        await client.push_blob_stream(
            token_registry.ref("stream/auth"), pieces(data), settled(desc)
        )
        assert await client.blob_exists(token_registry.ref("stream/auth"), desc)
