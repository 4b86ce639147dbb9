"""Image layers unpacked into chains of committed snapshots, each layer once.

Every layer becomes one committed cache record whose parent is the record of the layer
below it, labelled with its *chain id* (OCI image spec: the chain id of the bottom layer
is its diff_id; each one above is ``sha256(parent_chain_id + " " + diff_id)``). The chain
id names the whole tree up to that layer, so images that share a base share its records:
:meth:`LayerUnpacker.unpack` looks each chain id up first and only unpacks what is
missing, one unpacker per chain id at a time.

A layer is read from its compressed blob once: hashed on the way (unless it comes from
the content store, which verified it when it was written), copied into the content store
when it is not there yet, decompressed (the compression is sniffed from the first bytes)
and applied. The blob digest and size and the diff_id the config promises are checked
before the record is committed; on any failure the work area is removed, and records
this call committed for an image that then failed are pruned again, so a refused image
leaves no snapshot behind. The record remembers its compressed blob
(:class:`dockyard.cache.LayerBlob`, variant = the compression) for exporters, which also
makes the blob a root for the content store's garbage collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from dockyard.cache import CacheManager, ImmutableRef, LayerBlob, RecordType, UsageFilter
from dockyard.content import ContentStore, Writer
from dockyard.core import ContentError, Digest, DockyardError, NotFoundError, first_error
from dockyard.oci import Descriptor, MediaType
from dockyard.snapshot import LayerResult

from ._streams import Tee, decompressed_ahead, sniff_compression
from ._tasks import complete

__all__ = [
    "CHAIN_ID_LABEL",
    "BlobStream",
    "LayerProgress",
    "LayerSpec",
    "LayerUnpacker",
    "UnpackStatistics",
    "chain_ids",
    "layer_specs",
]

T = TypeVar("T")

CHAIN_ID_LABEL = "dockyard.source.chainid"
"""Label on each layer record: the chain id of the tree it holds."""

DIFF_ID_LABEL = "dockyard.source.diffid"
_DOWNLOADS = 3  # concurrent blob fetches per image (BuildKit's default)
_PROGRESS_INTERVAL = 0.1


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """The chain id of each layer (OCI image spec, "ChainID")."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else Digest.from_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerSpec:
    """One layer of an image: its compressed ``blob``, the ``diff_id`` the config
    promises for its uncompressed tar, and the ``chain_id`` of the tree up to it."""

    blob: Descriptor
    diff_id: Digest
    chain_id: Digest


def layer_specs(
    layers: Sequence[Descriptor], diff_ids: Sequence[Digest], *, name: str, limit: int | None
) -> list[LayerSpec]:
    """Pair a manifest's layers with the config's diff_ids (``limit``: only the first
    ones, ``image.layerlimit``)."""
    if len(layers) != len(diff_ids):
        raise ContentError(
            f"image {name}: the manifest has {len(layers)} layers but the config "
            f"{len(diff_ids)} diff_ids"
        )
    for desc in layers:
        if desc.media_type and MediaType.is_manifest(desc.media_type):
            raise ContentError(f"image {name}: layer {desc.digest} is a manifest")
    if limit is not None:
        layers, diff_ids = layers[:limit], diff_ids[:limit]
    return [
        LayerSpec(blob=desc, diff_id=diff_id, chain_id=chain)
        for desc, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobStream:
    """How to read a layer's compressed blob: ``open`` (blocking, called in a worker
    thread) returns a readable binary file. ``verified``: the bytes were checked against
    the digest already (the content store); otherwise they are hashed while read.
    A stream may also be verified by the end of the blob: a reader that follows a download
    returns the end only after the download verified and stored it. ``interrupt`` (any thread)
    wakes a read blocked waiting for bytes, which then raises
    :class:`~dockyard.core.CancelledError`."""

    open: Callable[[], BinaryIO]
    verified: bool
    interrupt: Callable[[], None] | None = None


class LayerProgress:
    """Progress of one image's layers; the unpacker calls it on the event loop."""

    def extracting(self, layer: LayerSpec) -> None:
        return None

    def extracted(self, layer: LayerSpec, done: bool, size: int) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackStatistics:
    """Counters since the unpacker was made: ``unpacked`` layers applied into new
    snapshots (bytes of uncompressed tar in ``bytes_unpacked``), ``reused`` layers found
    already unpacked."""

    unpacked: int
    reused: int
    bytes_unpacked: int


class LayerUnpacker:
    """Unpacks image layers into shared chains of cache records (see the module
    docstring). One per cache manager; safe for concurrent use."""

    def __init__(self, cache: CacheManager, content: ContentStore) -> None:
        self.cache = cache
        self.content = content
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._unpacked = 0
        self._reused = 0
        self._bytes = 0

    def statistics(self) -> UnpackStatistics:
        return UnpackStatistics(
            unpacked=self._unpacked, reused=self._reused, bytes_unpacked=self._bytes
        )

    async def lookup(self, chain_id: Digest) -> ImmutableRef | None:
        """A handle on the record holding ``chain_id``'s tree, if one exists."""
        for rid in self.cache.records_with_label(CHAIN_ID_LABEL, str(chain_id)):
            with contextlib.suppress(NotFoundError):
                return await self.cache.get(rid)
        return None

    def missing(self, layers: Sequence[LayerSpec]) -> list[LayerSpec]:
        """The layers above the highest one already unpacked (cheap: label lookups)."""
        for i in range(len(layers) - 1, -1, -1):
            if self.cache.records_with_label(CHAIN_ID_LABEL, str(layers[i].chain_id)):
                return list(layers[i + 1 :])
        return list(layers)

    @contextlib.asynccontextmanager
    async def _chain_lock(self, chain_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(chain_id, (asyncio.Lock(), 0))
        self._locks[chain_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[chain_id]
            if users <= 1:
                del self._locks[chain_id]
            else:
                self._locks[chain_id] = (lock, users - 1)

    async def empty(self, description: str) -> ImmutableRef:
        mutable = await self.cache.new_mutable(
            None, record_type=RecordType.SOURCE_IMAGE, description=description
        )
        return await mutable.commit()

    async def unpack(
        self,
        layers: Sequence[LayerSpec],
        fetch: Callable[[LayerSpec], Awaitable[BlobStream]],
        *,
        name: str,
        progress: LayerProgress | None = None,
        cancelled: threading.Event | None = None,
    ) -> ImmutableRef:
        """The tree of ``layers`` (bottom first) as a handle the caller owns.

        Layers already unpacked are reused; for the others ``fetch`` is called (up to
        three at a time, starting at once, so downloads overlap with unpacking) and they
        are applied in order. ``cancelled`` is polled by the unpacking threads.
        """
        progress = progress or LayerProgress()
        if not layers:
            return await self.empty(f"image {name} (no layers)")
        todo = self.missing(layers)
        base: ImmutableRef | None = None
        if len(todo) < len(layers):
            base = await self.lookup(layers[len(layers) - len(todo) - 1].chain_id)
            if base is None:  # pruned meanwhile
                todo = list(layers)
            else:
                self._reused += len(layers) - len(todo)
        if not todo:
            assert base is not None
            return base
        created: list[str] = []
        parent = base
        limit = asyncio.Semaphore(_DOWNLOADS)

        async def fetch_one(layer: LayerSpec) -> BlobStream:
            async with limit:
                return await fetch(layer)

        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    fetches = [tg.create_task(fetch_one(layer)) for layer in todo]
                    for layer, fetching in zip(todo, fetches, strict=True):
                        async with self._chain_lock(str(layer.chain_id)):
                            ref = await self.lookup(layer.chain_id)
                            if ref is None:
                                blob = await fetching
                                ref = await self._apply(
                                    parent, layer, blob, name, progress, cancelled
                                )
                                created.append(ref.id)
                            else:
                                fetching.cancel()  # another image unpacked it meanwhile
                                self._reused += 1
                        if parent is not None:
                            await parent.release()
                        parent = ref
            except BaseExceptionGroup as group:
                raise first_error(group) from None
        except BaseException:
            if parent is not None:
                await parent.release()
            await self._discard(created)
            raise
        assert parent is not None
        return parent

    async def _discard(self, created: list[str]) -> None:
        """Prune records this call made for an image that then failed (those another
        image already uses stay)."""
        if not created:
            return
        with contextlib.suppress(DockyardError, OSError):
            await self.cache.prune(all=True, filters=UsageFilter(ids=tuple(created)))

    async def _apply(
        self,
        parent: ImmutableRef | None,
        layer: LayerSpec,
        blob: BlobStream,
        name: str,
        progress: LayerProgress,
        cancelled: threading.Event | None,
    ) -> ImmutableRef:
        desc = layer.blob
        mutable = await self.cache.new_mutable(
            parent,
            record_type=RecordType.SOURCE_IMAGE,
            description=f"layer {desc.digest} of {name}",
        )
        writer: Writer | None = None
        stop = threading.Event()

        def on_cancel() -> None:
            stop.set()
            if blob.interrupt is not None:
                blob.interrupt()

        try:
            if not blob.verified and not self.content.has(desc.digest):
                writer = self.content.writer(
                    f"unpack-{desc.digest}-{uuid.uuid4().hex[:8]}",
                    expected_digest=desc.digest,
                    expected_size=desc.size,
                )
            source = _LazyFile(blob.open)
            try:
                tee = Tee(
                    source,
                    sink=writer,
                    cancelled=(stop, cancelled) if cancelled is not None else (stop,),
                    on_read=_from_thread(lambda n: progress.extracted(layer, False, n)),
                    hashed=not blob.verified,
                )
                progress.extracting(layer)
                try:
                    result, compression = await complete(
                        lambda: self._apply_stream(mutable.id, tee, blob.interrupt), on_cancel
                    )
                    await complete(lambda: asyncio.to_thread(tee.drain), on_cancel)
                except ContentError as exc:
                    if str(desc.digest) in exc.message:
                        raise
                    # e.g. a corrupt gzip stream, found before the digest check could run
                    raise ContentError(
                        f"layer {desc.digest} of image {name}: {exc.message}"
                    ) from exc
            finally:
                source.close()  # no thread reads it any more
            if not blob.verified and (tee.digest != desc.digest or tee.size != desc.size):
                raise ContentError(
                    f"layer {desc.digest} of image {name} does not match its descriptor "
                    f"(read {tee.size} bytes with digest {tee.digest})"
                )
            if result.diff_id != layer.diff_id:
                raise ContentError(
                    f"layer {desc.digest} of image {name} unpacks to diff_id "
                    f"{result.diff_id}, the image config says {layer.diff_id}"
                )
            if writer is not None:
                committing, writer = writer, None
                await complete(lambda: committing.commit(desc.digest, desc.size))
            ref = await mutable.commit()
        except BaseException:
            if writer is not None:
                await writer.abort()
            await mutable.release()
            raise
        try:
            ref.set_label(CHAIN_ID_LABEL, str(layer.chain_id))
            ref.set_label(DIFF_ID_LABEL, str(layer.diff_id))
            ref.set_blob(
                LayerBlob(
                    variant=compression,
                    diff_id=layer.diff_id,
                    digest=desc.digest,
                    media_type=desc.media_type or MediaType.layer(compression),
                    size=desc.size,
                )
            )
        except BaseException:
            await ref.release()
            raise
        self._unpacked += 1
        self._bytes += result.size
        progress.extracted(layer, True, tee.size)
        return ref

    async def _apply_stream(
        self, key: str, tee: Tee, interrupt: Callable[[], None] | None
    ) -> tuple[LayerResult, str]:
        compression = await asyncio.to_thread(lambda: sniff_compression(tee.peek(4)))
        ahead = await asyncio.to_thread(decompressed_ahead, tee)
        try:
            result = await self.cache.snapshotter.apply(key, ahead.stream)
        except BaseException:
            await asyncio.to_thread(ahead.close, interrupt)
            raise
        await asyncio.to_thread(ahead.close)  # it ended with the stream: the tar is drained
        return result, compression


def _from_thread(report: Callable[[int], None]) -> Callable[[int], None]:
    """A progress callback for a worker thread: reporters belong to the event loop, so
    the call is handed to it (at most every 0.1 s)."""
    loop = asyncio.get_running_loop()
    last = [0.0]

    def on_read(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= _PROGRESS_INTERVAL:
            last[0] = now
            loop.call_soon_threadsafe(report, n)

    return on_read


class _LazyFile:
    """A blob opened on its first read (in the thread that reads it), so that an open
    interrupted by a cancellation cannot leak a file; :meth:`close` once no thread reads
    it any more."""

    def __init__(self, opener: Callable[[], BinaryIO]) -> None:
        self._opener = opener
        self._file: BinaryIO | None = None
        self._closed = False

    def read(self, n: int = -1) -> bytes:
        if self._file is None:
            if self._closed:
                raise ValueError("read of a closed blob")
            self._file = self._opener()
        return self._file.read(n)

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
