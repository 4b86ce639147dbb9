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

The package is cheap to import: the services load in :meth:`Engine.open`.
"""

from ._config import STATE_DIR_ENV, EngineConfig, RuntimeName, SnapshotterName, default_state_dir
from ._engine import Engine, PruneResult
from ._lock import StateDirInUseError
from ._request import BuildRequest, SolveResponse

__all__ = [
    "STATE_DIR_ENV",
    "BuildRequest",
    "Engine",
    "EngineConfig",
    "PruneResult",
    "RuntimeName",
    "SnapshotterName",
    "SolveResponse",
    "StateDirInUseError",
    "default_state_dir",
]
