"""Cache exports: a job's chain records → layer blobs + cache config → a cache manifest,
written as a local OCI layout, pushed to a registry, or inlined in an image config.

The layer blobs come from the exporter's layer→blob path
(:func:`dockyard.exporter.export_layers`): a layer that already has a blob of the
compression (a pulled base image's, an image export's) is reused, never recompressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.cache import CacheManager, LayerBlob
from dockyard.content import REF_NAME_ANNOTATION, ContentStore, write_oci_layout
from dockyard.core import DockyardError, NotFoundError, Reporter, UsageError
from dockyard.exporter import CompressionOptions, Progress, export_layers
from dockyard.oci import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    MediaType,
    format_timestamp,
    parse_manifest,
)
from dockyard.registry import CredentialsProvider, RegistryConfig
from dockyard.solver import CacheChainRecord, CacheSource

from ._config import (
    CACHE_CONFIG_MEDIA_TYPE,
    CacheConfig,
    CacheConfigRecord,
    CacheInput,
    CacheLayer,
    CacheResult,
)
from ._options import (
    AzblobCacheExport,
    ClientCacheExport,
    LocalCacheExport,
    RegistryCacheExport,
    S3CacheExport,
)

if TYPE_CHECKING:
    from dockyard.registry import RegistryClient
    from dockyard.session import ContentCaller

__all__ = [
    "CREATED_ANNOTATION",
    "UNCOMPRESSED_ANNOTATION",
    "CollectedCache",
    "collect_cache",
    "export_cache",
]

UNCOMPRESSED_ANNOTATION = "containerd.io/uncompressed"
CREATED_ANNOTATION = "buildkit/createdat"
# a blob's own annotations that its cache manifest entry keeps (BuildKit's
# filterAnnotationsForSave keeps eStargz's)
_KEPT_ANNOTATIONS = (
    "containerd.io/snapshot/stargz/toc.digest",
    "io.containers.estargz.uncompressed-size",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectedCache:
    """A cache config and the descriptors of its layer blobs (in the content store,
    held by the lease they were collected under), one per config layer, in order."""

    config: CacheConfig
    layers: tuple[Descriptor, ...]

    @property
    def empty(self) -> bool:
        """No record has a result: nothing worth importing."""
        return not any(r.results for r in self.config.records)

    def manifest(self) -> tuple[bytes, bytes]:
        """The cache manifest (an OCI image manifest whose config is the cache config)
        and the config, as bytes."""
        config = self.config.to_bytes()
        unique: dict[str, Descriptor] = {}
        for desc in self.layers:  # a blob on two chains is listed once
            unique.setdefault(str(desc.digest), desc)
        manifest = ImageManifest(
            config=Descriptor.of(CACHE_CONFIG_MEDIA_TYPE, config),
            layers=tuple(unique.values()),
            media_type=MediaType.OCI_MANIFEST,
        )
        return manifest.to_bytes(indent=3), config

    def restricted(self, blobs: Sequence[LayerBlob]) -> CollectedCache:
        """Only the records whose whole layer chains are among ``blobs`` (an image's
        layers, for an inline cache), layers renumbered."""
        present = {b.digest for b in blobs}
        config = self.config
        keep_layer: dict[int, int] = {}
        layers: list[CacheLayer] = []
        descriptors: list[Descriptor] = []

        def keep(top: int) -> int | None:
            chain = []
            index = top
            while index >= 0:
                chain.append(index)
                index = config.layers[index].parent
            if any(config.layers[i].blob not in present for i in chain):
                return None
            for i in reversed(chain):
                if i not in keep_layer:
                    layer = config.layers[i]
                    parent = keep_layer[layer.parent] if layer.parent >= 0 else -1
                    keep_layer[i] = len(layers)
                    layers.append(dataclasses.replace(layer, parent=parent))
                    descriptors.append(self.layers[i])
            return keep_layer[top]

        records = []
        for record in config.records:
            results = []
            for result in record.results:
                top = keep(result.layer)
                if top is not None:
                    results.append(dataclasses.replace(result, layer=top))
            records.append(dataclasses.replace(record, results=tuple(results)))
        return CollectedCache(
            config=CacheConfig(layers=tuple(layers), records=tuple(records)),
            layers=tuple(descriptors),
        )


def _layer_media_type(media_type: str) -> str:
    try:
        return MediaType.layer(MediaType.layer_compression(media_type), oci=True)
    except ValueError:
        return media_type


async def _layers(
    cache: CacheManager,
    content: ContentStore,
    compression: CompressionOptions,
    result_id: str,
    lease: str,
    skip_empty: bool,
) -> list[tuple[CacheLayer, dict[str, str]]]:
    """The chain of a result of this cache (blobs made or reused), bottom first, each
    with its blob's annotations; the ``parent`` fields are left to the caller. Empty if
    the result is gone."""
    ref = await cache.load(result_id)
    if ref is None:
        return []
    try:
        exported = await export_layers(ref, content, compression, lease=lease)
    finally:
        await ref.release()
    return [
        (
            CacheLayer(
                blob=layer.blob.digest,
                media_type=_layer_media_type(layer.blob.media_type),
                diff_id=layer.blob.diff_id,
                size=layer.blob.size,
                created_at=layer.created,
            ),
            _kept(dict(layer.blob.annotations)),
        )
        for layer in exported
        if not (skip_empty and layer.empty)
    ]


def _kept(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: annotations[k] for k in _KEPT_ANNOTATIONS if k in annotations}


async def _imported_layers(
    source: CacheSource, result_id: str, lease: str
) -> list[tuple[CacheLayer, dict[str, str]]]:
    """The chain of a result an imported cache holds and the build never needed: its
    blobs copied into the content store as they are, nothing unpacked (BuildKit
    re-exports such results from the remote the same way). Empty if it cannot."""
    from ._import import ImportedCache

    if not isinstance(source, ImportedCache):
        return []
    stored = await source.stored_chain(result_id, lease)
    return [
        (
            CacheLayer(
                blob=layer.descriptor.digest,
                media_type=_layer_media_type(layer.descriptor.media_type),
                diff_id=layer.diff_id,
                size=layer.descriptor.size,
                created_at=layer.created,
            ),
            _kept(layer.descriptor.annotations),
        )
        for layer in stored or ()
    ]


async def collect_cache(
    chain: Sequence[CacheChainRecord],
    *,
    cache: CacheManager,
    content: ContentStore,
    compression: CompressionOptions,
    lease: str,
    skip_empty: bool = False,
) -> CollectedCache:
    """The cache config of ``chain`` (see :func:`dockyard.solver.cache_chain`) with the
    blobs of every exported result's layer chain, made or reused in ``content`` under
    ``lease``. ``skip_empty``: leave layers without entries out of the chains (an
    image has none; the tree is the same without them). A result that is gone (pruned)
    is left out; its keys stay. A result an imported cache holds but the build never
    needed (``CacheChainRecord.source``) is exported with the blobs it has there."""
    layers: list[CacheLayer] = []
    descriptors: list[Descriptor] = []
    by_chain: dict[tuple[str, int], int] = {}
    results: dict[tuple[int, int], CacheResult] = {}
    for n, entry in enumerate(chain):
        record = entry.record
        if record is None:
            continue
        created = format_timestamp(round(record.created * 1_000_000) * 1000)
        for output in entry.outputs:
            result_id = record.result_ids[output]
            if entry.source is not None:
                found = await _imported_layers(entry.source, result_id, lease)
            else:
                found = await _layers(cache, content, compression, result_id, lease, skip_empty)
            if not found:
                continue
            top = -1
            for layer, kept in found:
                key = (str(layer.blob), top)
                index = by_chain.get(key)
                if index is None:
                    index = len(layers)
                    layers.append(dataclasses.replace(layer, parent=top))
                    descriptors.append(
                        Descriptor(
                            media_type=layer.media_type,
                            digest=layer.blob,
                            size=layer.size,
                            annotations={
                                UNCOMPRESSED_ANNOTATION: str(layer.diff_id),
                                CREATED_ANNOTATION: layer.created_at,
                                **kept,
                            },
                        )
                    )
                    by_chain[key] = index
                top = index
            results[(n, output)] = CacheResult(layer=top, created_at=created)
    # one record per vertex output that has a result or that a dependant links to,
    # inputs before dependants (the chain's order)
    needed: set[tuple[int, int]] = set(results)
    for entry in chain:
        needed.update((link.record, link.output) for link in entry.inputs if link is not None)
    numbers: dict[tuple[int, int], int] = {}
    records: list[CacheConfigRecord] = []
    for n, entry in enumerate(chain):
        outputs = sorted(o for (m, o) in needed if m == n)
        for output in outputs:
            numbers[(n, output)] = len(records)
            result = results.get((n, output))
            records.append(
                CacheConfigRecord(
                    digest=entry.canonical_key,
                    output=output,
                    keys=entry.keys[1:],
                    inputs=tuple(
                        (
                            CacheInput(
                                link=numbers[(link.record, link.output)],
                                selector=link.selector or "",
                            ),
                        )
                        if link is not None
                        else ()  # an input unique to that build: nothing to link
                        for link in entry.inputs
                    ),
                    results=(result,) if result is not None else (),
                )
            )
    return CollectedCache(
        config=CacheConfig(layers=tuple(layers), records=tuple(records)),
        layers=tuple(descriptors),
    )


async def _write_blobs(collected: CollectedCache, content: ContentStore, lease: str) -> Descriptor:
    manifest, config = collected.manifest()
    await content.write_blob(config, lease=lease)
    await content.write_blob(manifest, lease=lease)
    return Descriptor.of(MediaType.OCI_MANIFEST, manifest)


async def export_cache(
    chain: Sequence[CacheChainRecord],
    options: LocalCacheExport
    | ClientCacheExport
    | RegistryCacheExport
    | S3CacheExport
    | AzblobCacheExport,
    *,
    cache: CacheManager,
    content: ContentStore,
    registry: RegistryConfig | None = None,
    credentials: CredentialsProvider | None = None,
    reporter: Reporter | None = None,
    client: ContentCaller | None = None,
) -> Descriptor | None:
    """Export ``chain`` as ``options`` say; returns the cache manifest's descriptor
    (``None``: nothing to export; for an :class:`S3CacheExport` or
    :class:`AzblobCacheExport`, the cache config's).
    A :class:`ClientCacheExport` goes to the content store of the build's session
    (``client``). Errors are
    :class:`~dockyard.core.DockyardError` naming the destination (the engine turns them
    into warnings with ``ignore-error=true``)."""
    compression = options.compression or CompressionOptions()
    if isinstance(options, LocalCacheExport):
        where = f"cache to {options.dest}"
    elif isinstance(options, ClientCacheExport):
        where = f"cache to the client's content store {options.store!r}"
    elif isinstance(options, S3CacheExport | AzblobCacheExport):
        where = f"cache to {options.location.describe()}"
    else:
        where = f"cache to {options.ref.familiar()}"
    progress = Progress(reporter, f"exporting {where}", kind="cache")
    progress.start()
    try:
        async with content.lease() as lease:
            step = progress.step("layers", "preparing build cache for export")
            collected = await collect_cache(
                chain, cache=cache, content=content, compression=compression, lease=lease
            )
            step.done()
            if collected.empty:
                progress.finish()
                return None
            if isinstance(options, S3CacheExport):
                from ._s3cache import export_s3

                desc = await export_s3(collected, options, content=content, progress=progress)
                progress.finish()
                return desc
            if isinstance(options, AzblobCacheExport):
                from ._azblobcache import export_azblob

                desc = await export_azblob(collected, options, content=content, progress=progress)
                progress.finish()
                return desc
            desc = await _write_blobs(collected, content, lease)
            if isinstance(options, LocalCacheExport):
                step = progress.step("write", f"writing cache manifest {desc.digest}")
                await _write_local(content, desc, options)
            elif isinstance(options, ClientCacheExport):
                step = progress.step("write", f"sending cache manifest {desc.digest} to the client")
                await _write_client(content, desc, options, client)
            else:
                step = progress.step("push", f"pushing cache manifest {desc.digest}")
                await _push(content, desc, options, registry, credentials)
            step.done()
    except OSError as exc:  # the reason, not Python's "[Errno N] ...: 'path'"
        reason = exc.strerror or str(exc)
        if exc.filename is not None and str(exc.filename) not in where:
            reason += f": {exc.filename}"
        error = DockyardError(f"exporting {where} failed: {reason}")
        progress.finish(error)
        raise error from exc
    except BaseException as exc:
        progress.finish(exc)
        raise
    progress.finish()
    return desc


async def _write_local(content: ContentStore, desc: Descriptor, options: LocalCacheExport) -> None:
    """Blobs first, ``index.json`` last (renamed into place): an export that fails
    halfway leaves the previous cache in ``dest`` as it was. As BuildKit's client does,
    the manifest replaces the entry of its tag in ``index.json`` and the others stay
    (the same commit as a daemon's export into a client's layout)."""
    from dockyard.session import LayoutStore

    dest = options.dest
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"--cache-to {dest}: not a directory")
    tagged = dataclasses.replace(desc, annotations={REF_NAME_ANNOTATION: options.tag})
    index = ImageIndex(manifests=(tagged,), media_type=MediaType.OCI_INDEX)
    await write_oci_layout(content, index, dest, write_index=False)
    layout = LayoutStore(path=dest, writable=True, tag=options.tag)
    await asyncio.to_thread(layout.commit, desc.media_type, desc.digest, desc.size)


_CLIENT_WRITES = 4  # blobs sent to the client at once


async def _write_client(
    content: ContentStore,
    desc: Descriptor,
    options: ClientCacheExport,
    client: ContentCaller | None,
) -> None:
    """The layout of :func:`_write_local` in the client's content store: the blobs it
    lacks (each checked and published by the client), the manifest after them, then
    the client names the manifest in its ``index.json``."""
    store = options.store
    if client is None:
        raise NotFoundError(
            f"--cache-to type=local: the build has no client session offering content store "
            f"{store!r}"
        )
    manifest = await content.read(desc.digest)
    parsed = parse_manifest(manifest, MediaType.OCI_MANIFEST)
    assert isinstance(parsed, ImageManifest)
    limit = asyncio.Semaphore(_CLIENT_WRITES)

    async def send(blob: Descriptor) -> None:
        async with limit:
            await client.push(store, blob.digest, blob.size, content.path(blob.digest))

    try:
        async with asyncio.TaskGroup() as group:
            for blob in {str(d.digest): d for d in (parsed.config, *parsed.layers)}.values():
                group.create_task(send(blob))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    await client.push(store, desc.digest, desc.size, content.path(desc.digest))
    await client.commit(store, desc.media_type, desc.digest, desc.size)


async def _push(
    content: ContentStore,
    desc: Descriptor,
    options: RegistryCacheExport,
    registry: RegistryConfig | None,
    credentials: CredentialsProvider | None,
) -> None:
    from dockyard.registry import FileReader

    manifest = await content.read(desc.digest)
    parsed = parse_manifest(manifest, MediaType.OCI_MANIFEST)
    assert isinstance(parsed, ImageManifest)
    blobs = {d.digest: FileReader(content.path(d.digest)) for d in (parsed.config, *parsed.layers)}
    async with registry_client(
        options.ref.domain, registry, credentials, options.insecure
    ) as client:
        await client.push_image(
            options.ref, manifest=manifest, media_type=MediaType.OCI_MANIFEST, blobs=blobs
        )


def new_registry_client(
    domain: str,
    registry: RegistryConfig | None,
    credentials: CredentialsProvider | None,
    insecure: bool,
) -> RegistryClient:
    """A registry client for one export or import (``insecure``: plain HTTP or
    unverified TLS allowed for ``domain``); the caller closes it."""
    from dockyard.registry import RegistryClient

    config = registry or RegistryConfig()
    if insecure:
        hosts = dict(config.hosts)
        hosts[domain] = dataclasses.replace(config.host(domain), insecure=True)
        config = RegistryConfig(hosts=hosts, loopback_insecure=config.loopback_insecure)
    return RegistryClient(config=config, credentials=credentials)


@contextlib.asynccontextmanager
async def registry_client(
    domain: str,
    registry: RegistryConfig | None,
    credentials: CredentialsProvider | None,
    insecure: bool,
) -> AsyncIterator[RegistryClient]:
    """:func:`new_registry_client` for the block."""
    client = new_registry_client(domain, registry, credentials, insecure)
    try:
        yield client
    finally:
        await client.aclose()
