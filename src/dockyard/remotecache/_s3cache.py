"""``type=s3`` caches in BuildKit's layout (``cache/remotecache/s3``), over the shared
object-store cache (:mod:`._objectcache`).

In the bucket, under ``prefix``: each layer blob at ``blobs_prefix + DIGEST``
(``blobs/sha256:<hex>``) and, for each name, the cache config JSON at
``manifests_prefix + NAME``. A blob already there is not uploaded again, only copied onto
itself when it was last written more than ``touch_refresh`` ago (so that a bucket expiry
rule keeps a blob still in use). An import reads the config of the first name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dockyard.content import ContentStore
from dockyard.core import ConfigError
from dockyard.oci import Descriptor
from dockyard.source import LayerUnpacker

from ._objectcache import export_objects, import_objects
from ._options import S3CacheExport, S3CacheImport, S3Location

if TYPE_CHECKING:
    from dockyard.exporter import Progress

    from ._export import CollectedCache
    from ._import import ImportedCache
    from ._s3 import S3Client

__all__ = ["export_s3", "import_s3", "s3_client"]


def s3_client(location: S3Location, *, touch_refresh: float | None = None) -> S3Client:
    """A client for the bucket of ``location``: its credentials, or those the AWS SDK's
    default chain finds (:mod:`._awscreds`: environment, profiles, web identity,
    container, instance metadata; STS in the cache's region, as BuildKit configures the
    SDK), fetched at the first request and again before they expire; its endpoint, or
    ``$AWS_ENDPOINT_URL_S3``/``$AWS_ENDPOINT_URL`` as the SDK reads them. A bad AWS
    profile is a :class:`~dockyard.core.ConfigError` naming the cache."""
    from ._awscreds import CachedCredentials, default_credentials
    from ._s3 import S3Client
    from ._sigv4 import AwsCredentials

    credentials: AwsCredentials | CachedCredentials
    if location.credentials is not None:
        credentials = location.credentials
    else:
        try:
            credentials = CachedCredentials(default_credentials(region=location.region))
        except ConfigError as exc:
            exc.message = f"s3 cache {location.describe()}: {exc.message}"
            raise
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
        touch_refresh=touch_refresh,
    )


async def export_s3(
    collected: CollectedCache,
    options: S3CacheExport,
    *,
    content: ContentStore,
    progress: Progress,
) -> Descriptor:
    """Write ``collected`` to the bucket; the descriptor of the cache config written
    under each name."""
    location = options.location
    async with s3_client(location, touch_refresh=options.touch_refresh) as client:
        return await export_objects(
            collected,
            client,
            location,
            parallelism=options.upload_parallelism,
            content=content,
            progress=progress,
        )


async def import_s3(
    options: S3CacheImport, content: ContentStore, unpacker: LayerUnpacker
) -> ImportedCache:
    """The cache config of the first name, as an :class:`ImportedCache`
    (:class:`~dockyard.core.NotFoundError` when the bucket has none)."""
    location = options.location
    client = s3_client(location)
    return await import_objects(
        client, location, location.names[0], content=content, unpacker=unpacker
    )
