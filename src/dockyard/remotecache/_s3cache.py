"""``type=s3`` caches in BuildKit's layout (``cache/remotecache/s3``).

In the bucket, under ``prefix``: each layer blob at ``blobs_prefix + DIGEST``
(``blobs/sha256:<hex>``) and, for each name, the cache config itself — JSON, not an OCI
manifest: its layers carry the annotations (media type, diffID, size, createdAt) an
importer needs — at ``manifests_prefix + NAME``. An export checks each blob with a HEAD:
present, it is not uploaded again, only copied onto itself when it was last written
more than ``touch_refresh`` ago (so that a bucket expiry rule keeps a blob still in
use); missing, it is uploaded (``upload_parallelism`` at once). The configs are written
last. An import reads the config of the first name; blobs are fetched (verified into
the content store) when a step needs them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.content import ContentStore
from dockyard.core import AuthError, ContentError, NotFoundError
from dockyard.oci import Descriptor
from dockyard.source import LayerUnpacker, StoreSink

from ._blobs import DownloadedBlobs
from ._config import CACHE_CONFIG_MEDIA_TYPE, CacheConfig
from ._options import S3CacheExport, S3CacheImport, S3Location

if TYPE_CHECKING:
    from dockyard.exporter import Progress

    from ._export import CollectedCache
    from ._import import ImportedCache
    from ._s3 import S3Client

__all__ = ["S3Blobs", "export_s3", "import_s3", "s3_client"]

_CONFIG_LIMIT = 64 << 20


def s3_client(location: S3Location) -> S3Client:
    """A client for the bucket of ``location``: its credentials, or the environment's
    (:class:`~dockyard.core.AuthError` when there are none); its endpoint, or
    ``$AWS_ENDPOINT_URL_S3``/``$AWS_ENDPOINT_URL`` as the SDK reads them."""
    from ._s3 import S3Client, credentials_from_environment

    credentials = location.credentials or credentials_from_environment()
    if credentials is None:
        raise AuthError(
            f"s3 cache {location.describe()}: no AWS credentials (give access_key_id and "
            "secret_access_key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    # without endpoint_url, the AWS SDK's service endpoint variables
    endpoint = (
        location.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3", "")
        or os.environ.get("AWS_ENDPOINT_URL", "")
    )
    return S3Client(
        bucket=location.bucket,
        region=location.region,
        credentials=credentials,
        endpoint_url=endpoint,
        use_path_style=location.use_path_style,
        max_attempts=location.retry_max_attempts,
        accept_encoding=not location.disable_accept_encoding,
    )


async def export_s3(
    collected: CollectedCache,
    options: S3CacheExport,
    *,
    content: ContentStore,
    progress: Progress,
) -> Descriptor:
    """Write ``collected`` to the bucket (see the module docstring); the descriptor of
    the cache config written under each name."""
    location = options.location
    config = collected.config.to_bytes()
    blobs: dict[str, Descriptor] = {}
    for desc in collected.layers:
        blobs.setdefault(str(desc.digest), desc)
    async with s3_client(location) as client:
        limit = asyncio.Semaphore(options.upload_parallelism)

        async def one(desc: Descriptor) -> None:
            async with limit:
                await _blob(client, location, options.touch_refresh, desc, content, progress)

        try:
            async with asyncio.TaskGroup() as group:
                for desc in blobs.values():
                    group.create_task(one(desc))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        for name in location.names:
            step = progress.step(f"manifest-{name}", f"writing cache manifest {name}")
            await client.put_bytes(location.manifest_key(name), config)
            step.done()
    return Descriptor.of(CACHE_CONFIG_MEDIA_TYPE, config)


async def _blob(
    client: S3Client,
    location: S3Location,
    touch_refresh: float,
    desc: Descriptor,
    content: ContentStore,
    progress: Progress,
) -> None:
    key = location.blob_key(str(desc.digest))
    info = await client.head(key)
    if info is not None and info.size == desc.size:
        if time.time() - info.last_modified > touch_refresh:
            await client.touch(key, info.size)
        return
    # missing, or an object of another size under the blob's name (a cut-short upload, a
    # foreign object): written again, or every import would fail to verify it
    step = progress.step(f"layer-{desc.digest}", f"writing layer {desc.digest}")

    def on_bytes(n: int) -> None:
        step.update(n, desc.size)

    await client.put_file(
        content.path(desc.digest),
        key,
        size=desc.size,
        sha256=desc.digest.split(":", 1)[1] if desc.digest.startswith("sha256:") else None,
        on_progress=on_bytes,
    )
    step.done()


class S3Blobs(DownloadedBlobs):
    """The blobs of an imported ``type=s3`` cache, downloaded (verified) into the
    content store, one download per blob whoever asks."""

    def __init__(self, client: S3Client, location: S3Location, content: ContentStore) -> None:
        super().__init__(content)
        self._client = client
        self._location = location

    async def _download_into(
        self, desc: Descriptor, sink: StoreSink, on_bytes: Callable[[int], None]
    ) -> None:
        await self._client.download(
            self._location.blob_key(str(desc.digest)),
            sink,
            digest=str(desc.digest),
            size=desc.size,
            on_progress=on_bytes,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


async def import_s3(
    options: S3CacheImport, content: ContentStore, unpacker: LayerUnpacker
) -> ImportedCache:
    """The cache config of the first name, as an :class:`ImportedCache`
    (:class:`~dockyard.core.NotFoundError` when the bucket has none)."""
    from ._import import ImportedCache

    location = options.location
    client = s3_client(location)
    try:
        name = location.names[0]
        data = await client.get_bytes(location.manifest_key(name), limit=_CONFIG_LIMIT)
        if data is None:
            raise NotFoundError(f"no cache manifest {location.describe()}")
        try:
            config = CacheConfig.parse(data)
        except ContentError as exc:
            raise ContentError(f"{location.describe()}: {exc}") from exc
        return ImportedCache(  # the client belongs to the imported cache from here
            name=location.describe(),
            config=config,
            descriptors={},  # the config's layer annotations describe the blobs
            blobs=S3Blobs(client, location, content),
            unpacker=unpacker,
            content=content,
        )
    except BaseException:
        await client.aclose()
        raise
