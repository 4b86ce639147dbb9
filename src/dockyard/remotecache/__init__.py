"""Layer 6: build cache export and import (``--cache-to`` / ``--cache-from``) in
BuildKit's formats, so that many engines share cache through an OCI registry.

Values (parsed at the edge; the engine re-exports them for clients)
    :func:`parse_cache_export` (``--cache-to``) → :class:`LocalCacheExport`
    (``type=local,dest=DIR``), :class:`RegistryCacheExport` (``type=registry,ref=REF``),
    :class:`InlineCacheExport` (``type=inline``); options ``mode=min|max`` (:class:`CacheMode`),
    ``compression=gzip|zstd|uncompressed``, ``compression-level``,
    ``force-compression``, ``ignore-error``, ``tag`` (local), ``registry.insecure``;
    :class:`S3CacheExport` (``type=s3,bucket=B,region=R``: an :class:`S3Location` —
    ``name`` (``;``-separated), ``prefix``, ``blobs_prefix``, ``manifests_prefix``,
    ``endpoint_url``, ``use_path_style``, ``access_key_id``/``secret_access_key``/
    ``session_token`` (:class:`AwsCredentials`; else the environment's) — with
    ``upload_parallelism`` and ``touch_refresh``).
    :func:`parse_cache_import` (``--cache-from``) → :class:`LocalCacheImport`
    (``type=local,src=DIR[,tag=T|digest=D]``) or :class:`RegistryCacheImport`
    (``type=registry,ref=REF`` or a bare ``REF``; a cache manifest, or an image with an
    inline cache) or :class:`S3CacheImport` (``type=s3``, as for the export).
    :class:`AzblobCacheExport` / :class:`AzblobCacheImport` (``type=azblob``: an
    :class:`AzblobLocation` — ``account_url``, ``account_name`` (else the URL's first
    host label), ``container``, ``name`` (``;``-separated; an import reads each:
    :func:`each_cache_import`), ``prefix``, ``blobs_prefix``, ``manifests_prefix``,
    ``secret_access_key`` (required), with BuildKit's ``BUILDKIT_AZURE_STORAGE_*``
    environment defaults).
    :func:`cache_export_from_attrs` / :func:`cache_import_from_attrs` do
    the same from a type and attributes (BuildKit's ``CacheOptionsEntry``, what a daemon
    receives). A build request carries tuples of them (``BuildRequest.cache_exports`` /
    ``cache_imports``). Through a daemon, ``type=local`` travels as ``store=ID`` (with
    ``digest=D`` for an import): :class:`ClientCacheExport` / :class:`ClientCacheImport`,
    an OCI layout the client offers as a content store of its session.

Format (:mod:`._config`)
    A cache is an OCI image manifest whose config has media type
    ``application/vnd.buildkit.cacheconfig.v0`` (BuildKit's ``image-manifest=true``
    form) and whose layers are the layer blobs; the config lists ``layers`` (blob +
    parent index, annotations with media type, diffID, size, createdAt) and ``records``
    (one per vertex output: its cache key as ``digest``, the other keys naming it, links
    to its inputs' records with selectors, results as the top layer of a chain). The
    local form is an OCI layout directory whose ``index.json`` names the manifest with
    the tag (``latest``); the registry form is that manifest pushed to the ref; the
    inline form is BuildKit's, base64, under ``moby.buildkit.cache.v0`` in an image's
    config: the records alone, their results naming positions in the image's own
    layers (``mode=min``; a whole config object, what Dockyard wrote before, still
    reads). Reading also accepts BuildKit's
    older index form (an index listing the layers and the config).

Export (:func:`export_cache`, :func:`collect_cache`)
    After a build, :func:`dockyard.solver.cache_chain` lists the job's keys and records
    (``mode=min``: results of the final step only; ``max``: of every step). Each result's
    layer chain gets blobs through :func:`dockyard.exporter.export_layers` (a layer's
    blob of that compression is reused: pulled base layers and earlier image exports are
    never recompressed). A result an imported cache holds but the build never needed is
    exported with the blobs it has there (copied, not unpacked), so ``--cache-from X
    --cache-to X,mode=max`` keeps every step's result. Keys unique to one build (a local
    source's) are left out. A local export writes blobs first and ``index.json`` last (an
    atomic rename), so a failed export leaves the previous cache as it was; an export
    error fails the build unless ``ignore-error=true``. A client's store gets the same
    layout through the session: each blob it lacks is sent (the client checks and
    publishes it), the manifest last, then the client names it in ``index.json``
    (keeping the index's other entries).

S3 (:mod:`._s3cache`, :mod:`._s3`, :mod:`._sigv4`)
    BuildKit's s3 layout: blobs at ``PREFIX + BLOBS_PREFIX + DIGEST``
    (``blobs/sha256:<hex>``), the cache config JSON itself (no OCI manifest) at
    ``PREFIX + MANIFESTS_PREFIX + NAME``; a blob already there is skipped (HEAD) and
    copied onto itself when older than ``touch_refresh``. :class:`S3Client` is a small
    httpx client signing with SigV4 (single PUT or multipart upload, retries as the
    AWS SDK's standard mode). Secrets never reach a message, a ``repr`` or a cache key.

Azure Blob Storage (:mod:`._azblobcache`, :mod:`._azblob`, :mod:`._sharedkey`)
    BuildKit's azblob layout in a container: blobs at ``PREFIX/BLOBS_PREFIX/DIGEST``,
    the cache config JSON at ``PREFIX/MANIFESTS_PREFIX/NAME`` (paths joined as Go's
    ``filepath.Join``). Both object stores share the export and import over a blob
    store (:mod:`._objectcache`) and the httpx pieces (:mod:`._httpio`).
    :class:`AzureBlobClient` signs with the account's Shared Key (single Put Blob, or
    Put Block + Put Block List for large layers; retries of 408/429/5xx).

Import (:func:`import_cache` → :class:`ImportedCache`)
    Reads the manifest and config only; the :class:`ImportedCache` is a
    :class:`dockyard.solver.CacheSource` the build's job consults after the local cache.
    A hit costs nothing until the solver needs the result; then its layer chain is
    fetched and unpacked by the shared :class:`dockyard.source.LayerUnpacker` (verified,
    keyed by chain id, shared with images), and the solver records it locally. Nothing
    here fails a build: an unreadable cache is a warning and no import, a missing or
    corrupt blob a warning and the step runs.

The heavy parts (export, import) load on first use; importing the package costs the
values only.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._options import (
    AzblobCacheExport,
    AzblobCacheImport,
    AzblobLocation,
    CacheExport,
    CacheImport,
    CacheMode,
    ClientCacheExport,
    ClientCacheImport,
    InlineCacheExport,
    LocalCacheExport,
    LocalCacheImport,
    RegistryCacheExport,
    RegistryCacheImport,
    S3CacheExport,
    S3CacheImport,
    S3Location,
    cache_export_from_attrs,
    cache_import_from_attrs,
    each_cache_import,
    parse_cache_export,
    parse_cache_import,
    redact,
    redact_attrs,
    secret_values,
)
from ._sigv4 import AwsCredentials

if TYPE_CHECKING:
    from ._awscreds import (
        CachedCredentials,
        add_credentials,
        client_credentials,
        default_credentials,
        with_client_credentials,
    )
    from ._azblob import AzureBlobClient
    from ._config import (
        CACHE_CONFIG_MEDIA_TYPE,
        CacheConfig,
        CacheConfigRecord,
        CacheInput,
        CacheLayer,
        CacheResult,
    )
    from ._export import CollectedCache, collect_cache, export_cache
    from ._import import ImportedCache, ImportStatistics, import_cache
    from ._s3 import S3Client
    from ._sharedkey import AzureSharedKey

_LAZY = {
    "CACHE_CONFIG_MEDIA_TYPE": "._config",
    "CacheConfig": "._config",
    "CacheConfigRecord": "._config",
    "CacheInput": "._config",
    "CacheLayer": "._config",
    "CacheResult": "._config",
    "CollectedCache": "._export",
    "collect_cache": "._export",
    "export_cache": "._export",
    "ImportedCache": "._import",
    "ImportStatistics": "._import",
    "import_cache": "._import",
    "AzureBlobClient": "._azblob",
    "AzureSharedKey": "._sharedkey",
    "S3Client": "._s3",
    "CachedCredentials": "._awscreds",
    "add_credentials": "._awscreds",
    "client_credentials": "._awscreds",
    "default_credentials": "._awscreds",
    "with_client_credentials": "._awscreds",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CACHE_CONFIG_MEDIA_TYPE",
    "AwsCredentials",
    "AzblobCacheExport",
    "AzblobCacheImport",
    "AzblobLocation",
    "AzureBlobClient",
    "AzureSharedKey",
    "CacheConfig",
    "CacheConfigRecord",
    "CacheExport",
    "CacheImport",
    "CacheInput",
    "CacheLayer",
    "CacheMode",
    "CacheResult",
    "CachedCredentials",
    "ClientCacheExport",
    "ClientCacheImport",
    "CollectedCache",
    "ImportStatistics",
    "ImportedCache",
    "InlineCacheExport",
    "LocalCacheExport",
    "LocalCacheImport",
    "RegistryCacheExport",
    "RegistryCacheImport",
    "S3CacheExport",
    "S3CacheImport",
    "S3Client",
    "S3Location",
    "add_credentials",
    "cache_export_from_attrs",
    "cache_import_from_attrs",
    "client_credentials",
    "collect_cache",
    "default_credentials",
    "each_cache_import",
    "export_cache",
    "import_cache",
    "parse_cache_export",
    "parse_cache_import",
    "redact",
    "redact_attrs",
    "secret_values",
    "with_client_credentials",
]
