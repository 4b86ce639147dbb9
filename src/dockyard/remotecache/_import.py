"""Cache imports: a cache manifest (local OCI layout, registry, or an image's inline
cache) → an :class:`ImportedCache`, the :class:`dockyard.solver.CacheSource` a build's
job consults after the local cache.

Reading the manifest and config is all an import costs up front. Layers are fetched and
unpacked only when the solver needs a result (``load``), through the shared
:class:`dockyard.source.LayerUnpacker` (layers keyed by chain id, each unpacked once and
shared with images; every blob verified against its digest, size and diff_id), so a
no-op build pulls the layers of its final result only. Nothing here fails a build: a
cache that cannot be read is a warning and no import; a blob that is missing or corrupt
is a warning and the step runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dockyard.cache import ImmutableRef
from dockyard.content import ContentStore, OCILayout
from dockyard.core import (
    BuildWarning,
    ContentError,
    Digest,
    DockyardError,
    NotFoundError,
    Platform,
    Reporter,
    host_platform,
    jsontext,
)
from dockyard.exporter import INLINE_CACHE_KEY, Progress, parse_timestamp
from dockyard.oci import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    MediaType,
    parse_manifest,
    select_platform,
)
from dockyard.registry import CredentialsProvider, RegistryConfig
from dockyard.solver import CacheRecord, VertexContext
from dockyard.source import (
    BlobStream,
    ClientStore,
    LayerSpec,
    LayerUnpacker,
    StoreSink,
    chain_ids,
    fetch_client_blob,
)

from ._blobs import DownloadedBlobs
from ._config import CACHE_CONFIG_MEDIA_TYPE, CacheConfig, CacheLayer, CacheResult
from ._export import UNCOMPRESSED_ANNOTATION, new_registry_client
from ._options import (
    AzblobCacheImport,
    CacheImport,
    ClientCacheImport,
    LocalCacheImport,
    RegistryCacheImport,
    S3CacheImport,
)

if TYPE_CHECKING:
    from dockyard.registry import Reference, RegistryClient
    from dockyard.session import ContentCaller

__all__ = ["ImportStatistics", "ImportedCache", "StoredLayer", "import_cache"]

_CONFIG_LIMIT = 64 << 20
_MANIFEST_LIMIT = 16 << 20


class _Blobs(Protocol):
    """Where an imported cache's blobs come from."""

    async def fetch(self, desc: Descriptor, lease: str, ctx: VertexContext) -> BlobStream: ...

    async def store(self, desc: Descriptor, lease: str) -> None:
        """Copy the blob into the content store (verified), held by ``lease``."""
        ...

    async def aclose(self) -> None: ...


class _LayoutBlobs:
    def __init__(self, layout: OCILayout, content: ContentStore) -> None:
        self._layout = layout
        self._content = content

    async def fetch(self, desc: Descriptor, lease: str, ctx: VertexContext) -> BlobStream:
        self._content.add_to_lease(lease, desc.digest)
        if self._content.has(desc.digest):
            return BlobStream(
                open=functools.partial(self._content.open, desc.digest), verified=True
            )
        # read (and hashed, and copied into the content store) by the unpacker
        return BlobStream(
            open=functools.partial(self._layout.open_blob, desc.digest), verified=False
        )

    async def store(self, desc: Descriptor, lease: str) -> None:
        content = self._content
        content.add_to_lease(lease, desc.digest)
        if content.has(desc.digest):
            return
        src = await asyncio.to_thread(self._layout.open_blob, desc.digest)
        try:
            await content.ingest(
                f"cache-{desc.digest}",
                src,
                expected_digest=desc.digest,
                expected_size=desc.size,
                lease=lease,
            )
        finally:
            src.close()

    async def aclose(self) -> None:
        self._layout.close()


class _ClientBlobs:
    """Blobs of a client's content store, copied into the content store (verified)
    before anything reads them."""

    def __init__(self, where: ClientStore, content: ContentStore) -> None:
        self._where = where
        self._content = content

    async def fetch(self, desc: Descriptor, lease: str, ctx: VertexContext) -> BlobStream:
        def on_bytes(n: int) -> None:
            ctx.progress(str(desc.digest), f"transferring {desc.digest}", n, total=desc.size)

        await fetch_client_blob(self._where, desc, self._content, lease=lease, progress=on_bytes)
        return BlobStream(open=functools.partial(self._content.open, desc.digest), verified=True)

    async def store(self, desc: Descriptor, lease: str) -> None:
        await fetch_client_blob(self._where, desc, self._content, lease=lease)

    async def aclose(self) -> None:
        return None


class _RegistryBlobs(DownloadedBlobs):
    def __init__(self, client: RegistryClient, ref: Reference, content: ContentStore) -> None:
        super().__init__(content)
        self._client = client
        self._ref = ref

    async def _download_into(
        self, desc: Descriptor, sink: StoreSink, on_bytes: Callable[[int], None]
    ) -> None:
        await self._client.fetch_blob(self._ref, desc, sink, on_progress=on_bytes)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredLayer:
    """One layer of an imported result's chain whose blob is in the content store."""

    descriptor: Descriptor
    diff_id: Digest
    created: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportStatistics:
    """What an import did so far: ``records`` it can answer, ``results`` loaded
    (materialized), ``failed`` loads that warned instead."""

    records: int
    results: int
    failed: int


class ImportedCache:
    """A read-only cache for one build (a :class:`dockyard.solver.CacheSource`).

    ``lookup`` answers from an in-memory index of the config's records that have a
    loadable result. A record without one (keys only, as mode=min exports every record
    but the final ones, or layers the manifest cannot serve) answers only for its other
    keys, with result ids that do not load: it tells which canonical key they stand for
    (a run key, for a step that ran afresh), and the step runs if it is needed.
    ``load`` unpacks a result's layer chain. :meth:`aclose` when the build is done.
    """

    def __init__(
        self,
        *,
        name: str,
        config: CacheConfig,
        descriptors: Mapping[str, Descriptor],
        blobs: _Blobs,
        unpacker: LayerUnpacker,
        content: ContentStore,
    ) -> None:
        self.name = name
        self.config = config
        self._descriptors = descriptors
        self._blobs = blobs
        self._unpacker = unpacker
        self._content = content
        self._records: dict[str, CacheRecord] = {}
        self._with_results = 0
        self._results = 0
        self._failed = 0
        self._index()

    def _layer_descriptor(self, layer: CacheLayer) -> Descriptor | None:
        desc = self._descriptors.get(str(layer.blob))
        if desc is not None:
            return desc
        if layer.size < 0 or not layer.media_type:
            return None
        return Descriptor(media_type=layer.media_type, digest=layer.blob, size=layer.size)

    def _diff_id(self, layer: CacheLayer) -> Digest | None:
        if layer.diff_id is not None:
            return layer.diff_id
        desc = self._descriptors.get(str(layer.blob))
        text = desc.annotations.get(UNCOMPRESSED_ANNOTATION, "") if desc is not None else ""
        try:
            return Digest.parse(text) if text else None
        except ValueError:
            return None

    def _loadable(self, top: int, known: dict[int, bool]) -> bool:
        """Whether every layer of the chain ending at ``top`` has a descriptor and a
        diffID; ``known`` remembers each layer's answer (records share chains: walking
        each result's whole chain again was records x depth)."""
        walk: list[int] = []
        index = top
        while index >= 0 and index not in known:
            walk.append(index)
            index = self.config.layers[index].parent
        answer = known.get(index, True)
        for i in reversed(walk):
            layer = self.config.layers[i]
            answer = (
                answer
                and self._layer_descriptor(layer) is not None
                and self._diff_id(layer) is not None
            )
            known[i] = answer
        return known[top] if top >= 0 else True

    def _index(self) -> None:
        groups: dict[str, dict[int, CacheResult]] = {}
        aliases: dict[str, str] = {}
        known: dict[int, bool] = {}
        keys_only: dict[str, int] = {}
        for record in self.config.records:
            results = [r for r in record.results if self._loadable(r.layer, known)]
            if not results:
                # no result to load (mode=min leaves them out), but its keys still say
                # which canonical key a key stands for: a step that ran afresh has a
                # run key as its canonical key (solver), and the records made from it
                # are found only through that key
                if record.keys:
                    count = keys_only.get(record.digest, 0)
                    keys_only[record.digest] = max(count, record.output + 1)
                continue
            best = max(results, key=lambda r: _created(r.created_at))  # BuildKit: newest
            groups.setdefault(record.digest, {})[record.output] = best
            for key in (record.digest, *record.keys):
                aliases.setdefault(key, record.digest)
        records: dict[str, CacheRecord] = {}
        self._with_results = len(groups)
        for record in self.config.records:
            if record.digest in keys_only and record.digest not in groups:
                # its other keys only: asked for by its canonical key, a record without
                # results tells nothing
                for key in record.keys:
                    aliases.setdefault(key, record.digest)
        for canonical, count in keys_only.items():
            if canonical not in groups:
                # a hit whose results all fail to load: the step runs, under this key
                records[canonical] = CacheRecord(
                    id=f"import:{self.name}:{canonical}",
                    canonical_key=canonical,
                    result_ids=("",) * count,
                    created=0.0,
                )
        for canonical, outputs in groups.items():
            count = max(outputs) + 1
            ids = tuple(str(outputs[i].layer) if i in outputs else "" for i in range(count))
            created = max(_created(r.created_at) for r in outputs.values())
            records[canonical] = CacheRecord(
                id=f"import:{self.name}:{canonical}",
                canonical_key=canonical,
                result_ids=ids,
                created=created,
            )
        self._records = {key: records[canonical] for key, canonical in aliases.items()}

    def statistics(self) -> ImportStatistics:
        return ImportStatistics(
            records=self._with_results,
            results=self._results,
            failed=self._failed,
        )

    async def lookup(self, key: str) -> CacheRecord | None:
        return self._records.get(key)

    async def load(self, result_id: str, ctx: VertexContext) -> ImmutableRef | None:
        if not result_id:
            return None  # an output the export left out
        try:
            chain = self.config.chain(int(result_id))
        except (ValueError, IndexError):
            return None
        diff_ids: list[Digest] = []
        descs: list[Descriptor] = []
        for layer in chain:
            diff_id, desc = self._diff_id(layer), self._layer_descriptor(layer)
            if diff_id is None or desc is None:
                return None  # not indexed: lookup never returned this id
            diff_ids.append(diff_id)
            descs.append(desc)
        specs = [
            LayerSpec(blob=desc, diff_id=diff_id, chain_id=chain_id)
            for desc, diff_id, chain_id in zip(descs, diff_ids, chain_ids(diff_ids), strict=True)
        ]
        fresh = len(self._unpacker.missing(specs))
        try:
            async with self._content.lease() as lease:

                async def fetch(spec: LayerSpec) -> BlobStream:
                    return await self._blobs.fetch(spec.blob, lease, ctx)

                ref = await self._unpacker.unpack(
                    specs, fetch, name=f"cache {self.name}", cancelled=ctx.cancelled
                )
        except (DockyardError, OSError) as exc:
            self._failed += 1
            ctx.warn(f"cache from {self.name} could not be used ({exc}); running the step instead")
            return None
        if fresh:
            with contextlib.suppress(DockyardError, OSError):
                await self._date_layers(ref, chain[len(chain) - fresh :])
        self._results += 1
        return ref

    async def stored_chain(self, result_id: str, lease: str) -> list[StoredLayer] | None:
        """The layer chain of a result this cache holds, bottom first, its blobs copied
        into the content store under ``lease`` without unpacking anything (a cache
        export of a result the build never needed); ``None`` if it cannot."""
        if not result_id:
            return None
        try:
            chain = self.config.chain(int(result_id))
        except (ValueError, IndexError):
            return None
        out: list[StoredLayer] = []
        for layer in chain:
            diff_id, desc = self._diff_id(layer), self._layer_descriptor(layer)
            if diff_id is None or desc is None:
                return None
            try:
                await self._blobs.store(desc, lease)
            except (DockyardError, OSError):
                return None
            out.append(StoredLayer(descriptor=desc, diff_id=diff_id, created=layer.created_at))
        return out

    async def _date_layers(self, ref: ImmutableRef, made: Sequence[CacheLayer]) -> None:
        """Give the layer records this import made the times the cache says they were
        built at (image history takes layer times: the same image comes out)."""
        layers = await ref.layers()
        try:
            for record, layer in zip(reversed(layers), reversed(made), strict=False):
                when = _created(layer.created_at)
                if when > 0:
                    record.set_created(when)
        finally:
            for record in layers:
                await record.release()

    async def aclose(self) -> None:
        await self._blobs.aclose()


def _created(text: str) -> float:
    if not text:
        return 0.0
    try:
        return parse_timestamp(text) / 1e9
    except ContentError:
        return 0.0


async def import_cache(
    options: CacheImport,
    *,
    content: ContentStore,
    unpacker: LayerUnpacker,
    registry: RegistryConfig | None = None,
    credentials: CredentialsProvider | None = None,
    platform: Platform | None = None,
    reporter: Reporter | None = None,
    client: ContentCaller | None = None,
) -> ImportedCache | None:
    """Read the cache ``options`` name; ``None`` (with a warning to ``reporter``) when
    it cannot be read — a build never fails because of its ``--cache-from``. A
    :class:`ClientCacheImport` is read from the content store of the build's session
    (``client``). The caller closes what it gets (:meth:`ImportedCache.aclose`)."""
    where = _describe(options)
    progress = Progress(reporter, f"importing cache manifest from {where}", kind="cache")
    progress.start()
    try:
        if isinstance(options, LocalCacheImport):
            cache = await _import_local(options, content, unpacker)
        elif isinstance(options, ClientCacheImport):
            cache = await _import_client(options, content, unpacker, client)
        elif isinstance(options, S3CacheImport):
            from ._s3cache import import_s3

            cache = await import_s3(options, content, unpacker)
        elif isinstance(options, AzblobCacheImport):
            from ._azblobcache import import_azblob

            cache = await import_azblob(options, content, unpacker)
        else:
            cache = await _import_registry(
                options, content, unpacker, registry, credentials, platform
            )
    except (DockyardError, OSError, ValueError) as exc:
        progress.finish(exc)
        if reporter is not None:
            reporter.emit(
                BuildWarning(
                    short=f"importing cache from {where} failed: {exc}; building without it"
                )
            )
        return None
    except BaseException as exc:
        progress.finish(exc)
        raise
    progress.finish()
    return cache


def _describe(options: CacheImport) -> str:
    if isinstance(options, LocalCacheImport):
        return str(options.src)
    if isinstance(options, ClientCacheImport):
        return f"the client's content store {options.store!r}"
    if isinstance(options, S3CacheImport | AzblobCacheImport):
        return options.location.describe()
    return options.ref.familiar()


def _cache_parts(
    manifest: ImageManifest | ImageIndex, what: str
) -> tuple[Descriptor, dict[str, Descriptor]]:
    """The config descriptor and the layer descriptors of a cache manifest (an image
    manifest with a cache config, or BuildKit's older index form)."""
    if isinstance(manifest, ImageManifest):
        if manifest.config.media_type != CACHE_CONFIG_MEDIA_TYPE:
            raise ContentError(f"{what} is not a build cache manifest")
        return manifest.config, {str(d.digest): d for d in manifest.layers}
    configs = [d for d in manifest.manifests if d.media_type == CACHE_CONFIG_MEDIA_TYPE]
    if len(configs) != 1:
        raise ContentError(f"{what} is not a build cache manifest")
    layers = {str(d.digest): d for d in manifest.manifests if d is not configs[0]}
    return configs[0], layers


async def _import_local(
    options: LocalCacheImport, content: ContentStore, unpacker: LayerUnpacker
) -> ImportedCache:
    src = options.src
    if not src.is_dir():
        raise NotFoundError(f"cache directory {src} does not exist")
    layout = await asyncio.to_thread(OCILayout.open, src)
    try:
        desc = layout.resolve(str(options.digest) if options.digest is not None else options.tag)
        data = await asyncio.to_thread(layout.read_blob, desc)
        manifest = parse_manifest(data, desc.media_type)
        config_desc, layers = _cache_parts(manifest, f"{desc.digest} in {src}")
        if config_desc.size > _CONFIG_LIMIT:
            raise ContentError(f"cache config {config_desc.digest} is too large")
        config = CacheConfig.parse(await asyncio.to_thread(layout.read_blob, config_desc))
        return ImportedCache(
            name=str(src),
            config=config,
            descriptors=layers,
            blobs=_LayoutBlobs(layout, content),
            unpacker=unpacker,
            content=content,
        )
    except BaseException:
        layout.close()
        raise


async def _import_client(
    options: ClientCacheImport,
    content: ContentStore,
    unpacker: LayerUnpacker,
    client: ContentCaller | None,
) -> ImportedCache:
    where = _describe(options)
    if client is None:
        raise NotFoundError(f"the build has no client session to read {where} from")
    size = await client.info(options.store, options.digest)
    if size is None:
        raise NotFoundError(f"cache manifest {options.digest} not found in {where}")
    data = await client.read(options.store, options.digest, size, limit=_MANIFEST_LIMIT)
    manifest = parse_manifest(data)
    config_desc, layers = _cache_parts(manifest, f"{options.digest} in {where}")
    if config_desc.size > _CONFIG_LIMIT:
        raise ContentError(f"cache config {config_desc.digest} is too large")
    config = CacheConfig.parse(
        await client.read(options.store, config_desc.digest, config_desc.size, limit=_CONFIG_LIMIT)
    )
    return ImportedCache(
        name=where,
        config=config,
        descriptors=layers,
        blobs=_ClientBlobs(ClientStore(store=options.store, content=client), content),
        unpacker=unpacker,
        content=content,
    )


async def _import_registry(
    options: RegistryCacheImport,
    content: ContentStore,
    unpacker: LayerUnpacker,
    registry: RegistryConfig | None,
    credentials: CredentialsProvider | None,
    platform: Platform | None,
) -> ImportedCache:
    ref = options.ref
    client = new_registry_client(ref.domain, registry, credentials, options.insecure)
    try:
        fetched = await client.get_manifest(ref)
        manifest = fetched.manifest
        what = ref.familiar()
        if isinstance(manifest, ImageIndex) and not any(
            d.media_type == CACHE_CONFIG_MEDIA_TYPE for d in manifest.manifests
        ):
            # an image index: the platform's image may carry an inline cache
            entry = select_platform(manifest, platform or host_platform(), name=what)
            manifest = (await client.get_manifest(ref, expected=entry)).manifest
        if isinstance(manifest, ImageManifest) and manifest.config.media_type in (
            MediaType.OCI_CONFIG,
            MediaType.DOCKER_CONFIG,
        ):
            config, layers = await _inline(client, ref, manifest)
        else:
            config_desc, layers = _cache_parts(manifest, what)
            data = await client.get_blob(ref, config_desc, limit=_CONFIG_LIMIT)
            config = CacheConfig.parse(data)
        return ImportedCache(  # the client is the imported cache's from here
            name=what,
            config=config,
            descriptors=layers,
            blobs=_RegistryBlobs(client, ref, content),
            unpacker=unpacker,
            content=content,
        )
    except BaseException:
        await client.aclose()
        raise


async def _inline(
    client: RegistryClient, ref: Reference, manifest: ImageManifest
) -> tuple[CacheConfig, dict[str, Descriptor]]:
    """The inline cache of an image: its config's ``moby.buildkit.cache.v0`` (base64 of
    BuildKit's list of records over the image's layers, or of a whole cache config)."""
    data = await client.get_blob(ref, manifest.config, limit=_CONFIG_LIMIT)
    try:
        obj = jsontext.loads(data)
    except ValueError as exc:
        raise ContentError(f"the config of {ref.familiar()} is not valid JSON") from exc
    encoded = obj.get(INLINE_CACHE_KEY) if isinstance(obj, dict) else None
    if not isinstance(encoded, str):
        raise NotFoundError(f"{ref.familiar()} is an image without an inline build cache")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContentError(f"the inline cache of {ref.familiar()} is not valid base64") from exc
    rootfs = obj.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        diff_ids = []
    chain = []
    for i, desc in enumerate(manifest.layers):
        diff_id = None
        if i < len(diff_ids) and isinstance(diff_ids[i], str):
            with contextlib.suppress(ValueError):
                diff_id = Digest.parse(diff_ids[i])
        chain.append(
            CacheLayer(
                blob=desc.digest, media_type=desc.media_type, diff_id=diff_id, size=desc.size
            )
        )
    config = CacheConfig.parse_inline(decoded, chain)
    layers: dict[str, Descriptor] = {}
    for i, desc in enumerate(manifest.layers):
        if UNCOMPRESSED_ANNOTATION not in desc.annotations and i < len(diff_ids):
            annotations = dict(desc.annotations)
            annotations[UNCOMPRESSED_ANNOTATION] = str(diff_ids[i])
            desc = Descriptor(
                media_type=desc.media_type,
                digest=desc.digest,
                size=desc.size,
                annotations=annotations,
            )
        layers[str(desc.digest)] = desc
    return config, layers
