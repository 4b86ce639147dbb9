"""Layer 8: the engine — the composition root.

:class:`Engine` is built from a frozen :class:`EngineConfig` (state directory, OCI
runtime, snapshotter, parallelism, registries, allowed entitlements). ``await
Engine.open(config)`` locks the state directory against a second engine, recovers what
a crash left, and assembles: the cache manager (snapshots, records, du/prune; also the
solver's result storage), the content store, the executor, the solver with its SQLite
cache keys (``<state>/metadata.db``), the session manager, and the plugins by key —
sources by scheme, exporters and frontends by name (:mod:`dockyard.engine._plugins`).

``await engine.solve(BuildRequest(...))`` runs one build: the frontend (or a raw
Definition) → the LLB solver → the exporters, with progress to the request's reporter;
``du``/``prune`` report and reclaim disk space. ``await engine.close()`` cancels what
still runs, waits until no mount or container is left, and releases the directory.

Remote build cache (``--cache-from`` / ``--cache-to``): clients parse each value with
:func:`parse_cache_import` / :func:`parse_cache_export` (re-exported from
:mod:`dockyard.remotecache`; ``type=local,src=DIR``, ``type=registry,ref=REF`` or a bare
``REF``; ``type=local,dest=DIR,mode=max``, ``type=registry,ref=REF``, ``type=inline``)
and pass the frozen values as ``BuildRequest(cache_imports=..., cache_exports=...)``;
a daemon receiving BuildKit's ``CacheOptionsEntry`` (type + attrs) uses
:func:`cache_import_from_attrs` / :func:`cache_export_from_attrs`.
Imports are read before the solve (an unreadable one is a warning, never a failure) and
consulted after the local cache, their layers pulled only when a hit's result is needed;
exports are written after the image exports (an export error fails the build unless
``ignore-error=true``).

The package is cheap to import: the services load in :meth:`Engine.open`.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._config import STATE_DIR_ENV, EngineConfig, RuntimeName, SnapshotterName, default_state_dir
from ._engine import Engine, PruneResult
from ._lock import StateDirInUseError
from ._request import BuildRequest, SolveResponse

if TYPE_CHECKING:
    from dockyard.remotecache import (
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
        cache_export_from_attrs,
        cache_import_from_attrs,
        parse_cache_export,
        parse_cache_import,
    )

# the remote cache's values and parsers load when a build names a cache
_LAZY = dict.fromkeys(
    (
        "CacheExport",
        "CacheImport",
        "CacheMode",
        "ClientCacheExport",
        "ClientCacheImport",
        "InlineCacheExport",
        "LocalCacheExport",
        "LocalCacheImport",
        "RegistryCacheExport",
        "RegistryCacheImport",
        "cache_export_from_attrs",
        "cache_import_from_attrs",
        "parse_cache_export",
        "parse_cache_import",
    ),
    "dockyard.remotecache",
)

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "STATE_DIR_ENV",
    "BuildRequest",
    "CacheExport",
    "CacheImport",
    "CacheMode",
    "ClientCacheExport",
    "ClientCacheImport",
    "Engine",
    "EngineConfig",
    "InlineCacheExport",
    "LocalCacheExport",
    "LocalCacheImport",
    "PruneResult",
    "RegistryCacheExport",
    "RegistryCacheImport",
    "RuntimeName",
    "SnapshotterName",
    "SolveResponse",
    "StateDirInUseError",
    "cache_export_from_attrs",
    "cache_import_from_attrs",
    "default_state_dir",
    "parse_cache_export",
    "parse_cache_import",
]
