"""A cache in BuildKit's object-store layout, whatever the store (an S3 bucket, an Azure
Blob Storage container): what ``type=s3`` and ``type=azblob`` share.

The layout: each layer blob at its :meth:`ObjectLayout.blob_key` (``.../blobs/sha256:<hex>``)
and, for each name, the cache config itself — JSON, not an OCI manifest: its layers carry
the annotations (media type, diffID, size, createdAt) an importer needs — at its
:meth:`ObjectLayout.manifest_key`. An export asks the store whether each blob is there
already (:meth:`ObjectStore.has_blob`, which may also refresh it), uploads the missing ones
(``parallelism`` at once), then writes the configs, last. An import reads one name's
config; blobs are downloaded (verified into the content store) when a step needs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from dockyard.content import ContentStore
from dockyard.core import ContentError, NotFoundError
from dockyard.oci import Descriptor
from dockyard.source import LayerUnpacker, StoreSink

from ._blobs import DownloadedBlobs
from ._config import CACHE_CONFIG_MEDIA_TYPE, CacheConfig

if TYPE_CHECKING:
    from pathlib import Path

    from dockyard.exporter import Progress
    from dockyard.registry import BlobSink

    from ._export import CollectedCache
    from ._import import ImportedCache

__all__ = ["ObjectBlobs", "ObjectLayout", "ObjectStore", "export_objects", "import_objects"]

CONFIG_LIMIT = 64 << 20
"""The largest cache config an import reads."""


class ObjectLayout(Protocol):
    """Where a cache's objects are (an ``S3Location``, an ``AzblobLocation``)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def blob_key(self, digest: str) -> str: ...

    def manifest_key(self, name: str) -> str: ...

    def describe(self, name: str | None = None) -> str:
        """The address of the cache config ``name`` (the first one) for messages."""
        ...


class ObjectStore(Protocol):
    """The few operations a cache needs of an object store's client."""

    async def has_blob(self, key: str, size: int) -> bool:
        """Whether ``key`` holds an object of ``size`` bytes (an export then skips it)."""
        ...

    async def put_file(
        self,
        path: Path,
        key: str,
        *,
        size: int,
        sha256: str | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None: ...

    async def put_bytes(self, key: str, data: bytes) -> None: ...

    async def get_bytes(self, key: str, *, limit: int) -> bytes | None:
        """The object ``key`` (at most ``limit`` bytes); ``None`` when there is none."""
        ...

    async def download(
        self,
        key: str,
        sink: BlobSink,
        *,
        digest: str,
        size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> None: ...

    async def aclose(self) -> None: ...


async def export_objects(
    collected: CollectedCache,
    store: ObjectStore,
    layout: ObjectLayout,
    *,
    parallelism: int,
    content: ContentStore,
    progress: Progress,
) -> Descriptor:
    """Write ``collected`` to ``store`` (see the module docstring); the descriptor of the
    cache config written under each name. The caller closes ``store``."""
    config = collected.config.to_bytes()
    blobs: dict[str, Descriptor] = {}
    for desc in collected.layers:
        blobs.setdefault(str(desc.digest), desc)
    limit = asyncio.Semaphore(parallelism)

    async def one(desc: Descriptor) -> None:
        async with limit:
            await _blob(store, layout, desc, content, progress)

    try:
        async with asyncio.TaskGroup() as group:
            for desc in blobs.values():
                group.create_task(one(desc))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    for name in layout.names:
        step = progress.step(f"manifest-{name}", f"writing cache manifest {name}")
        await store.put_bytes(layout.manifest_key(name), config)
        step.done()
    return Descriptor.of(CACHE_CONFIG_MEDIA_TYPE, config)


async def _blob(
    store: ObjectStore,
    layout: ObjectLayout,
    desc: Descriptor,
    content: ContentStore,
    progress: Progress,
) -> None:
    key = layout.blob_key(str(desc.digest))
    # an object of another size under the blob's name (a cut-short upload, a foreign
    # object) is written again, or every import would fail to verify it
    if await store.has_blob(key, desc.size):
        return
    step = progress.step(f"layer-{desc.digest}", f"writing layer {desc.digest}")

    def on_bytes(n: int) -> None:
        step.update(n, desc.size)

    await store.put_file(
        content.path(desc.digest),
        key,
        size=desc.size,
        sha256=desc.digest.split(":", 1)[1] if desc.digest.startswith("sha256:") else None,
        on_progress=on_bytes,
    )
    step.done()


class ObjectBlobs(DownloadedBlobs):
    """The blobs of an imported object-store cache, downloaded (verified) into the
    content store, one download per blob whoever asks; closing it closes ``store``."""

    def __init__(self, store: ObjectStore, layout: ObjectLayout, content: ContentStore) -> None:
        super().__init__(content)
        self._store_client = store
        self._layout = layout

    async def _download_into(
        self, desc: Descriptor, sink: StoreSink, on_bytes: Callable[[int], None]
    ) -> None:
        await self._store_client.download(
            self._layout.blob_key(str(desc.digest)),
            sink,
            digest=str(desc.digest),
            size=desc.size,
            on_progress=on_bytes,
        )

    async def aclose(self) -> None:
        await self._store_client.aclose()


async def import_objects(
    store: ObjectStore,
    layout: ObjectLayout,
    name: str,
    *,
    content: ContentStore,
    unpacker: LayerUnpacker,
) -> ImportedCache:
    """The cache config ``name`` as an :class:`ImportedCache`, which owns ``store`` from
    here (closed with it, or here on failure); :class:`~dockyard.core.NotFoundError` when
    there is no such config."""
    from ._import import ImportedCache

    try:
        data = await store.get_bytes(layout.manifest_key(name), limit=CONFIG_LIMIT)
        if data is None:
            raise NotFoundError(f"no cache manifest {layout.describe(name)}")
        try:
            config = CacheConfig.parse(data)
        except ContentError as exc:
            raise ContentError(f"{layout.describe(name)}: {exc}") from exc
        return ImportedCache(
            name=layout.describe(name),
            config=config,
            descriptors={},  # the config's layer annotations describe the blobs
            blobs=ObjectBlobs(store, layout, content),
            unpacker=unpacker,
            content=content,
        )
    except BaseException:
        await store.aclose()
        raise
