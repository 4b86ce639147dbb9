"""Addresses of a ``dockyardd`` daemon as values: ``unix:///PATH`` (:class:`UnixListener`)
and ``tcp://HOST:PORT`` (:class:`TcpListener`, ``[::1]:PORT`` for IPv6), what the daemon
listens on and what a client dials.

Imported on its own (``from dockyard.core.address import parse_address``): a client
choosing where to build parses an address with it and loads nothing of the daemon,
whose configuration (:mod:`dockyard.daemon`) re-exports these values.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ._errors import ConfigError, UsageError

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_SOCKET",
    "Listener",
    "TcpListener",
    "TlsConfig",
    "UnixListener",
    "daemon_listening",
    "parse_address",
]

#: The daemon's socket unless configured otherwise.
DEFAULT_SOCKET = Path("/run/dockyard/dockyardd.sock")
DEFAULT_ADDRESS = f"unix://{DEFAULT_SOCKET}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """Mutual TLS for tcp listeners: the server's certificate and key, and the CA that
    client certificates must chain to."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """The PEM bytes of (cert, key, ca); :class:`ConfigError` naming the key and
        file that cannot be read."""
        out: list[bytes] = []
        for key in ("cert", "key", "ca"):
            path: Path = getattr(self, key)
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(
                    f"grpc.tls.{key}: cannot read {path}: {exc.strerror or exc}"
                ) from exc
        return out[0], out[1], out[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnixListener:
    """A unix socket: created ``mode`` 0660, owned by root and ``group`` (a gid;
    ``None``: root's group)."""

    path: Path
    group: int | None = None
    mode: int = 0o660

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    @property
    def bind_address(self) -> str:
        """The address as grpc takes it (``unix:/run/...``)."""
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpListener:
    """A TCP address; ``tls`` (mutual TLS) is required unless ``host`` is loopback."""

    host: str
    port: int
    tls: TlsConfig | None = None

    @property
    def url(self) -> str:
        return f"tcp://{self.bind_address}"

    @property
    def bind_address(self) -> str:
        """The address as grpc takes it (``host:port``, ``[::1]:port``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        import ipaddress

        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


Listener = UnixListener | TcpListener


def parse_address(
    address: str, *, tls: TlsConfig | None = None, group: int | None = None
) -> Listener:
    """``unix:///path/to.sock`` or ``tcp://host:port`` (``[::1]:port`` for IPv6); a
    :class:`~dockyard.core.UsageError` otherwise. ``tls`` goes to a tcp listener,
    ``group`` to a unix one (neither is part of an address)."""
    text = address.strip()
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise UsageError(f"invalid address {address!r}: a unix socket needs an absolute path")
        return UnixListener(path=Path(path), group=group)
    if text.startswith("tcp://"):
        rest = text[len("tcp://") :].rstrip("/")
        host, sep, port_text = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise UsageError(f"invalid address {address!r}: write an IPv6 host as [::1]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"invalid address {address!r} (expected tcp://HOST:PORT)")
        return TcpListener(host=host, port=int(port_text), tls=tls)
    raise UsageError(f"invalid address {address!r} (expected unix:///PATH or tcp://HOST:PORT)")


def daemon_listening(path: Path = DEFAULT_SOCKET) -> bool:
    """Whether something accepts connections on the unix socket ``path`` (a plain
    connect: no gRPC is loaded to find out)."""
    try:
        if not path.is_socket():
            return False
    except OSError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
