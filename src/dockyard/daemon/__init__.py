"""Layer 8: the daemon — ``dockyardd``: its configuration, its server, and the
conversions between the engine's values and the control API's messages
(``dockyard/api/proto/control.proto``).

- :class:`Daemon` (``await Daemon.start(config)``): one engine served over grpc.aio on
  unix sockets and TCP with mutual TLS — the control API (:class:`ControlService`:
  Solve, Status, DiskUsage, Prune, ListWorkers, Info) and the session service on the
  same address; garbage collection in the background (:class:`GarbageCollector`);
  ``shutdown()`` cancels running builds and closes the engine. The seam it serves is
  :class:`~dockyard.daemon.types.ServedEngine`.
- :class:`Builds` / :class:`BuildProgress`: each build's progress, kept from its start
  and fanned out to any number of ``Status`` streams.
- :func:`keep_bytes`: how a GC rule's space limits fold into the bytes to keep
  (BuildKit's rule).

- :class:`DaemonConfig` (``DaemonConfig.load(path)``): the TOML config file parsed into
  frozen values — state dir, runtime, snapshotter, parallelism, GC rules
  (:class:`GcConfig` / :class:`GcPolicy` with :class:`Space` limits), registries,
  allowed entitlements, listen addresses (:class:`UnixListener`, :class:`TcpListener`
  with :class:`TlsConfig`). Bad values raise :class:`~dockyard.core.ConfigError` naming
  the file and key.
- Conversions (importing them loads protobuf and grpc): progress events ↔
  ``StatusResponse`` (:func:`events_to_status`, :func:`status_to_events`), errors ↔ gRPC
  status details (:func:`error_to_status`, :func:`error_from_status`,
  :func:`error_from_rpc`), usage records and GC rules ↔ their messages.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

if TYPE_CHECKING:
    from dockyard.core.address import (
        DEFAULT_SOCKET,
        Listener,
        TcpListener,
        TlsConfig,
        UnixListener,
        parse_address,
    )

    from ._builds import BuildProgress, Builds
    from ._config import (
        DEFAULT_CONFIG_PATH,
        DEFAULT_GC_INTERVAL,
        DaemonConfig,
        GcConfig,
        GcPolicy,
        RuntimeName,
        SnapshotterName,
        Space,
        default_gc_policies,
        parse_duration,
        parse_space,
    )
    from ._convert import (
        DETAILS_KEY,
        ERROR_DETAIL_TYPE,
        abort,
        error_from_rpc,
        error_from_status,
        error_to_status,
        events_to_status,
        gc_policy_from_pb,
        gc_policy_to_pb,
        prune_request_to_pb,
        status_to_events,
        usage_record_from_pb,
        usage_record_to_pb,
    )
    from ._gc import DiskStat, GarbageCollector, GcResult, keep_bytes
    from ._server import Daemon
    from ._service import ControlService, WorkerInfo

# Every name loads on first use, with only the module that defines it: a client reading
# build progress (status_to_events, error_from_rpc) loads the conversions and grpc, not
# the daemon's configuration (the cache, the LLB solver) nor its server.
_MODULES = {
    "dockyard.core.address": (
        "DEFAULT_SOCKET",
        "Listener",
        "TcpListener",
        "TlsConfig",
        "UnixListener",
        "parse_address",
    ),
    "._builds": ("BuildProgress", "Builds"),
    "._config": (
        "DEFAULT_CONFIG_PATH",
        "DEFAULT_GC_INTERVAL",
        "DaemonConfig",
        "GcConfig",
        "GcPolicy",
        "RuntimeName",
        "SnapshotterName",
        "Space",
        "default_gc_policies",
        "parse_duration",
        "parse_space",
    ),
    "._convert": (
        "DETAILS_KEY",
        "ERROR_DETAIL_TYPE",
        "abort",
        "error_from_rpc",
        "error_from_status",
        "error_to_status",
        "events_to_status",
        "gc_policy_from_pb",
        "gc_policy_to_pb",
        "prune_request_to_pb",
        "status_to_events",
        "usage_record_from_pb",
        "usage_record_to_pb",
    ),
    "._gc": ("DiskStat", "GarbageCollector", "GcResult", "keep_bytes"),
    "._server": ("Daemon",),
    "._service": ("ControlService", "WorkerInfo"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_GC_INTERVAL",
    "DEFAULT_SOCKET",
    "DETAILS_KEY",
    "ERROR_DETAIL_TYPE",
    "BuildProgress",
    "Builds",
    "ControlService",
    "Daemon",
    "DaemonConfig",
    "DiskStat",
    "GarbageCollector",
    "GcConfig",
    "GcPolicy",
    "GcResult",
    "Listener",
    "RuntimeName",
    "SnapshotterName",
    "Space",
    "TcpListener",
    "TlsConfig",
    "UnixListener",
    "WorkerInfo",
    "abort",
    "default_gc_policies",
    "error_from_rpc",
    "error_from_status",
    "error_to_status",
    "events_to_status",
    "gc_policy_from_pb",
    "gc_policy_to_pb",
    "keep_bytes",
    "parse_address",
    "parse_duration",
    "parse_space",
    "prune_request_to_pb",
    "status_to_events",
    "usage_record_from_pb",
    "usage_record_to_pb",
]
