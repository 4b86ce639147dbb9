"""Compressed layer blobs from a result's layer chain, made once per layer and variant.

``ref.layers()`` lists the records whose layers make up a tree, bottom first. For each,
the blob of the wanted variant (compression, level, clamped time) is taken from what the
record remembers (:meth:`dockyard.cache.ImmutableRef.blob`) when the content store still
has it; otherwise the layer tar is written from the snapshot diff straight into a
compressor and from there into the content store, and the record remembers the result.
Without ``force`` an existing blob of another compression is reused (a pulled base
image's gzip layers stay gzip), as BuildKit does.

A layer whose tar holds no entry is *empty* and has no place in an image.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from dataclasses import dataclass

from dockyard.cache import ImmutableRef, LayerBlob
from dockyard.content import ContentStore, Writer
from dockyard.core import Digest, DockyardError, first_error
from dockyard.core.singleflight import SingleFlight
from dockyard.oci import MediaType, format_timestamp

from ._compress import new_compressor
from ._estargz import EStargzInfo, EStargzWriter, empty_layer_diff_id, existing_estargz
from ._options import Compression, CompressionOptions
from ._progress import Progress
from ._upload import LayerPusher, TeeSink

__all__ = ["EMPTY_TAR_DIGESTS", "ExportedLayer", "IngestSink", "export_layers"]

EMPTY_TAR_DIGESTS = frozenset(
    {
        Digest("sha256:" + hashlib.sha256(b"\0" * 1024).hexdigest()),
        Digest("sha256:" + hashlib.sha256(b"\0" * 10240).hexdigest()),
        empty_layer_diff_id(b"\0" * 1024),
        empty_layer_diff_id(b"\0" * 10240),
    }
)
"""diff_ids of tars without entries (Go's and Python's end-of-archive padding), plain
and as eStargz streams (the tar, then the TOC's tar)."""

_flights: SingleFlight[tuple[str, str, str], LayerBlob] = SingleFlight()
_PARALLEL_LAYERS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportedLayer:
    """One layer of the chain: its blob (OCI media type family), the record's
    description and creation time (RFC 3339), and whether it is empty."""

    blob: LayerBlob
    description: str
    created: str

    @property
    def empty(self) -> bool:
        return self.blob.diff_id in EMPTY_TAR_DIGESTS


def _fallbacks(options: CompressionOptions, clamp: int | None) -> list[str]:
    """Variants acceptable instead of the exact one (``force`` off)."""
    out: list[str] = []
    same = CompressionOptions(type=options.type)
    out.append(same.variant(clamp))
    for other in Compression:
        if other is not options.type:
            out.append(CompressionOptions(type=other).variant(clamp))
    return out


def _has_diff_id(layer: ImmutableRef, options: CompressionOptions, diff_id: Digest) -> bool:
    """Whether some unclamped blob recorded for the layer has ``diff_id`` (an eStargz
    blob's differs from the plain tar's: its stream has the TOC after the tar)."""
    for variant in (options.variant(), *_fallbacks(options, None)):
        blob = layer.blob(variant)
        if blob is not None and blob.diff_id == diff_id:
            return True
    return False


async def _make_blob(
    layer: ImmutableRef,
    content: ContentStore,
    options: CompressionOptions,
    variant: str,
    clamp: int | None,
    lease: str,
    pusher: LayerPusher | None,
) -> LayerBlob:
    media_type = MediaType.layer(options.type.media_compression, oci=True)
    writer = content.writer(f"layer-{layer.id}-{variant}-{uuid.uuid4().hex[:8]}")
    async with writer:
        stream = pusher.start() if pusher is not None else None
        sink = IngestSink(writer) if stream is None else TeeSink(writer, stream)
        compressor = new_compressor(options, sink)

        def close() -> None:
            compressor.close()
            if stream is not None:
                stream.close()

        try:
            result = await layer.write_layer(compressor, clamp_mtime=clamp)  # type: ignore[arg-type]
            await asyncio.to_thread(close)
            if stream is not None:
                # the upload closes (the registry verifies) while the blob is made durable
                stream.finish(writer.digest, writer.offset, media_type)
            info = await writer.commit(lease=lease)
        except BaseException as exc:
            # (a commit cancelled half-way, too: its ingest would stay behind otherwise)
            compressor.abort()
            if stream is not None:
                stream.fail(exc)
            await writer.abort()
            raise
    diff_id = result.diff_id
    annotations: tuple[tuple[str, str], ...] = ()
    if isinstance(compressor, EStargzWriter):
        # the blob uncompresses to the tar and the TOC's tar after it: that is the
        # diff_id a puller computes (BuildKit's too), and the TOC is annotated
        diff_id = compressor.info.diff_id
        annotations = compressor.info.annotations()
    blob = LayerBlob(
        variant=variant,
        diff_id=diff_id,
        digest=info.digest,
        media_type=media_type,
        size=info.size,
        annotations=annotations,
    )
    layer.set_blob(blob)
    return blob


async def _already_estargz(
    layer: ImmutableRef, content: ContentStore, variant: str
) -> LayerBlob | None:
    """A gzip blob of the layer that already is eStargz (a pulled eStargz image's layer,
    recorded as ``gzip``), kept under ``force`` as BuildKit keeps it (its ``Is`` check)
    and recorded as ``variant`` with the annotations it needs."""
    blob = layer.blob(Compression.GZIP.value)  # what a pull records a gzip layer as
    if (
        blob is None
        or not content.has(blob.digest)
        or MediaType.layer_compression(blob.media_type) != "gzip"
    ):
        return None
    digest = blob.digest

    def check() -> tuple[Digest, int] | None:
        with content.open(digest) as f:
            return existing_estargz(f)

    found = await asyncio.to_thread(check)
    if found is None:
        return None
    toc_digest, size = found
    info = EStargzInfo(diff_id=blob.diff_id, uncompressed_size=size, toc_digest=toc_digest)
    kept = dataclasses.replace(blob, variant=variant, annotations=info.annotations())
    await asyncio.to_thread(layer.set_blob, kept)
    return kept


class IngestSink:
    """A content-store ingest as the compressor's output (written from its thread)."""

    __slots__ = ("_w",)

    def __init__(self, w: Writer) -> None:
        self._w = w

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        return self._w.write_sync(data)


async def _layer_blob(
    layer: ImmutableRef,
    content: ContentStore,
    options: CompressionOptions,
    clamp: int | None,
    lease: str,
    pusher: LayerPusher | None,
) -> LayerBlob:
    variant = options.variant(clamp)
    candidates = [variant] if options.force else [variant, *_fallbacks(options, clamp)]
    for name in candidates:
        blob = layer.blob(name)
        if blob is not None and content.has(blob.digest):
            content.add_to_lease(lease, blob.digest)
            return blob
    if options.force and options.type is Compression.ESTARGZ and clamp is None:
        found = await _already_estargz(layer, content, variant)
        if found is not None:
            content.add_to_lease(lease, found.digest)
            return found
    key = (str(content.root), layer.id, variant)
    blob = await _flights.do(
        key, lambda: _make_blob(layer, content, options, variant, clamp, lease, pusher)
    )
    content.add_to_lease(lease, blob.digest)
    return blob


async def export_layers(
    ref: ImmutableRef | None,
    content: ContentStore,
    options: CompressionOptions,
    *,
    lease: str,
    clamp: int | None = None,
    base_diff_ids: tuple[Digest, ...] = (),
    progress: Progress | None = None,
    pusher: LayerPusher | None = None,
) -> list[ExportedLayer]:
    """The blobs of every layer of ``ref``, bottom first (empty layers included: see
    :attr:`ExportedLayer.empty`). ``clamp`` caps file times in the layers made
    (``rewrite-timestamp``), except in the bottom layers that are ``base_diff_ids``
    (the base image's, kept as they are). Blobs are held by ``lease``. With a
    ``pusher``, each layer compressed here is also streamed to its registry as it is
    made (see :mod:`dockyard.exporter._upload`)."""
    if ref is None:
        return []
    layers = await ref.layers()
    try:
        clamps: list[int | None] = []
        diverged = clamp is None
        for i, layer in enumerate(layers):
            if (
                not diverged
                and i < len(base_diff_ids)
                and _has_diff_id(layer, options, base_diff_ids[i])
            ):
                clamps.append(None)
                continue
            diverged = True
            clamps.append(clamp)
        limit = asyncio.Semaphore(_PARALLEL_LAYERS)
        results: list[LayerBlob | None] = [None] * len(layers)

        async def one(i: int) -> None:
            async with limit:
                step = (
                    progress.step(f"layer-{i}", f"layer {i + 1}/{len(layers)}")
                    if progress
                    else None
                )
                try:
                    results[i] = await _layer_blob(
                        layers[i], content, options, clamps[i], lease, pusher
                    )
                finally:
                    if step is not None:
                        step.done()

        try:
            async with asyncio.TaskGroup() as group:
                for i in range(len(layers)):
                    group.create_task(one(i))
        except BaseExceptionGroup as failures:
            raise _first(failures) from None
        out: list[ExportedLayer] = []
        for layer, blob in zip(layers, results, strict=True):
            assert blob is not None
            out.append(
                ExportedLayer(
                    blob=blob,
                    description=layer.description,
                    created=format_timestamp(round(layer.created * 1_000_000) * 1000),
                )
            )
        return out
    finally:
        for layer in layers:
            await layer.release()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = first_error(group)
    if isinstance(first, OSError):
        return DockyardError(f"exporting layers failed: {first}")
    return first
