"""A pushed image's new layers stream to the registry while they are compressed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.content import ContentStore
from dockyard.core import Digest, DockyardError
from dockyard.exporter import ExportRequest, ExportResponse, parse_output, resolve
from dockyard.exporter._compress import new_compressor
from dockyard.oci import ImageManifest, parse_manifest
from dockyard.registry import RegistryClient
from dockyard.testing.registry import RegistryProcess

from .conftest import Stores


class Gate(httpx.AsyncBaseTransport):
    """Passes requests to the network and remembers them; with ``refuse_streams`` it
    answers a ``PATCH`` without ``Content-Range`` (a streamed upload) as a registry
    that does not take them."""

    def __init__(self, *, refuse_streams: bool = False) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.refuse_streams = refuse_streams

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if (
            self.refuse_streams
            and request.method == "PATCH"
            and "content-range" not in request.headers
        ):
            await request.aread()
            return httpx.Response(416, json={"errors": [{"code": "BLOB_UPLOAD_INVALID"}]})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def streamed(self) -> list[httpx.Request]:
        return [
            r for r in self.requests if r.method == "PATCH" and "content-range" not in r.headers
        ]

    def closing_puts(self) -> list[str]:
        """Digests of blob uploads closed by a ``PUT`` without a body."""
        return [
            r.url.params["digest"]
            for r in self.requests
            if r.method == "PUT"
            and "/blobs/uploads/" in r.url.path
            and r.headers.get("content-length") == "0"
        ]


async def _push(
    stores: Stores, gate: Gate, registry: RegistryProcess, spec: str, ref: Any
) -> tuple[ExportResponse, ImageManifest, RegistryClient]:
    client = RegistryClient(config=registry.registry_config(), transport=gate)
    services = dataclasses.replace(stores.services, registry=client)
    try:
        resp = await resolve(parse_output(spec), services).export(ExportRequest(ref=ref))
    except BaseException:
        await client.aclose()
        raise
    assert resp.image_digest is not None
    manifest = parse_manifest(await stores.content.read(resp.image_digest))
    assert isinstance(manifest, ImageManifest)
    return resp, manifest, client


async def _same_blobs(
    client: RegistryClient, name: str, content: ContentStore, manifest: ImageManifest
) -> None:
    for desc in (manifest.config, *manifest.layers):
        stored = await content.read(desc.digest)
        assert await client.get_blob(name, desc, limit=desc.size) == stored


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
async def test_new_layers_stream_to_the_registry(
    stores: Stores, busybox_rootfs: Path, registry: RegistryProcess, compression: str
) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    name = registry.ref(f"stream-{compression}-{stores.cache.snapshotter.name}:1")
    gate = Gate()
    spec = f"type=image,name={name},push=true,compression={compression}"
    resp, manifest, client = await _push(stores, gate, registry, spec, chain[-1])
    async with client:
        # each layer went up in one streamed PATCH, closed with the digest of the blob
        # the content store holds: the same bytes, uploaded once
        layer_digests = {str(d.digest) for d in manifest.layers}
        assert len(gate.streamed()) >= len(manifest.layers)
        assert layer_digests <= set(gate.closing_puts())
        uploaded_whole = {
            r.url.params.get("digest")
            for r in gate.requests
            if r.method == "PUT" and r.headers.get("content-length", "0") != "0"
        }
        assert not layer_digests & uploaded_whole  # no layer uploaded a second time
        assert str(manifest.config.digest) in uploaded_whole
        await _same_blobs(client, name, stores.content, manifest)
        assert (await client.resolve(name)).digest == resp.image_digest
    # a second export has every blob: nothing is compressed or streamed again
    again_gate = Gate()
    again, _, client = await _push(stores, again_gate, registry, spec, chain[-1])
    await client.aclose()
    assert again.image_digest == resp.image_digest
    assert again_gate.streamed() == []


async def test_registry_refusing_streams_gets_the_blobs_from_the_store(
    stores: Stores, busybox_rootfs: Path, registry: RegistryProcess
) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    name = registry.ref(f"nostream-{stores.cache.snapshotter.name}:1")
    gate = Gate(refuse_streams=True)
    resp, manifest, client = await _push(
        stores, gate, registry, f"type=image,name={name},push=true", chain[-1]
    )
    async with client:
        assert gate.streamed()  # tried, refused, then each session deleted
        assert [r for r in gate.requests if r.method == "DELETE"]
        await _same_blobs(client, name, stores.content, manifest)
        assert (await client.resolve(name)).digest == resp.image_digest


async def test_failed_layer_leaves_nothing_half_made(
    stores: Stores,
    busybox_rootfs: Path,
    registry: RegistryProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    name = registry.ref(f"broken-{stores.cache.snapshotter.name}:1")
    before = {info.digest async for info in stores.content.walk()}

    class Failing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.seen = 0

        def write(self, data: bytes) -> int:
            self.seen += len(data)
            if self.seen > 300_000:
                raise OSError("disk on fire")
            return int(self.inner.write(data))

        def flush(self) -> None:
            self.inner.flush()

        def close(self) -> None:
            self.inner.close()

        def abort(self) -> None:
            self.inner.abort()

    monkeypatch.setattr(
        "dockyard.exporter._layers.new_compressor",
        lambda o, out: Failing(new_compressor(o, out)),
    )
    gate = Gate()
    with pytest.raises(DockyardError, match="disk on fire"):
        await _push(stores, gate, registry, f"type=image,name={name},push=true", chain[-1])
    # no ingest left in the store, and what it holds is whole (smaller layers made
    # beside the failing one may have been completed); the registry's session of the
    # failed layer was deleted, and only blobs the store has whole were closed there
    assert stores.content.ingests() == []
    after = {info.digest async for info in stores.content.walk()}
    for digest in after - before:
        await stores.content.read(digest, verify=True)
    closed = gate.closing_puts()
    assert {Digest(d) for d in closed} <= after
    deleted = [r for r in gate.requests if r.method == "DELETE"]
    assert deleted
    assert len(deleted) + len(closed) == len(gate.streamed())
