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

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_GC_INTERVAL",
    "DEFAULT_SOCKET",
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
    "default_gc_policies",
    "parse_address",
    "parse_duration",
    "parse_space",
]
