"""Layer 8: the daemon — ``dockyardd``'s configuration, and the conversions between the
engine's values and the control API's messages (``dockyard/api/proto/control.proto``).

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

from typing import TYPE_CHECKING, Any

from ._config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_GC_INTERVAL,
    DEFAULT_SOCKET,
    DaemonConfig,
    GcConfig,
    GcPolicy,
    Listener,
    RuntimeName,
    SnapshotterName,
    Space,
    TcpListener,
    TlsConfig,
    UnixListener,
    default_gc_policies,
    parse_address,
    parse_duration,
    parse_space,
)

if TYPE_CHECKING:
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

_LAZY = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import _convert

    value = getattr(_convert, name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_GC_INTERVAL",
    "DEFAULT_SOCKET",
    "DETAILS_KEY",
    "ERROR_DETAIL_TYPE",
    "DaemonConfig",
    "GcConfig",
    "GcPolicy",
    "Listener",
    "RuntimeName",
    "SnapshotterName",
    "Space",
    "TcpListener",
    "TlsConfig",
    "UnixListener",
    "abort",
    "default_gc_policies",
    "error_from_rpc",
    "error_from_status",
    "error_to_status",
    "events_to_status",
    "gc_policy_from_pb",
    "gc_policy_to_pb",
    "parse_address",
    "parse_duration",
    "parse_space",
    "prune_request_to_pb",
    "status_to_events",
    "usage_record_from_pb",
    "usage_record_to_pb",
]
