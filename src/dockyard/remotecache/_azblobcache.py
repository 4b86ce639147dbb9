"""``type=azblob`` caches in BuildKit's layout (``cache/remotecache/azblob``), over the
shared object-store cache (:mod:`._objectcache`).

In the container (``buildkit-cache``; created by an export when missing), under
``prefix``: each layer blob at ``BLOBS_PREFIX/DIGEST`` (``blobs/sha256:<hex>``) and, for
each name, the cache config JSON at ``MANIFESTS_PREFIX/NAME``. A blob already there (of
its size) is not uploaded again. An import reads one name (:func:`each_cache_import`
gives each name its own import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.content import ContentStore
from dockyard.oci import Descriptor
from dockyard.source import LayerUnpacker

from ._objectcache import export_objects, import_objects
from ._options import AzblobCacheExport, AzblobCacheImport, AzblobLocation

if TYPE_CHECKING:
    from dockyard.exporter import Progress

    from ._azblob import AzureBlobClient
    from ._export import CollectedCache
    from ._import import ImportedCache

__all__ = ["azblob_client", "export_azblob", "import_azblob"]

UPLOAD_PARALLELISM = 4
"""Blobs uploaded at once (BuildKit's ``IOConcurrency``)."""


def azblob_client(location: AzblobLocation) -> AzureBlobClient:
    """A client for the container of ``location``, signing with its account key."""
    from ._azblob import AzureBlobClient
    from ._sharedkey import AzureSharedKey

    return AzureBlobClient(
        account_url=location.account_url,
        container=location.container,
        credential=AzureSharedKey(account=location.account, key=location.key),
    )


async def export_azblob(
    collected: CollectedCache,
    options: AzblobCacheExport,
    *,
    content: ContentStore,
    progress: Progress,
) -> Descriptor:
    """Write ``collected`` to the container; the descriptor of the cache config
    written under each name."""
    location = options.location
    async with azblob_client(location) as client:
        await client.ensure_container()
        return await export_objects(
            collected,
            client,
            location,
            parallelism=UPLOAD_PARALLELISM,
            content=content,
            progress=progress,
        )


async def import_azblob(
    options: AzblobCacheImport, content: ContentStore, unpacker: LayerUnpacker
) -> ImportedCache:
    """The cache config of the first name, as an :class:`ImportedCache`
    (:class:`~dockyard.core.NotFoundError` when the container has none)."""
    location = options.location
    return await import_objects(
        azblob_client(location), location, location.names[0], content=content, unpacker=unpacker
    )
