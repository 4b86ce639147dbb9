"""``/etc/hosts`` and ``/etc/resolv.conf`` for a sandbox, generated on the host and
bind-mounted read-only (the root filesystem's own files are never touched)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .types import HostEntry, NetworkMode

__all__ = ["hosts_file", "resolv_conf"]

HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def hosts_file(hostname: str, extra: Sequence[HostEntry]) -> bytes:
    """localhost (v4 and v6) and the sandbox's hostname, then the extra hosts in order."""
    lines = [
        f"127.0.0.1\tlocalhost {hostname}",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    lines += [f"{h.ip}\t{h.name}" for h in extra]
    return ("\n".join(lines) + "\n").encode()


def resolv_conf(network: NetworkMode, host_file: Path = HOST_RESOLV_CONF) -> bytes:
    """The host's resolver configuration for ``host`` networking.

    With ``none`` no name server is reachable (the namespace has loopback only, and a
    loopback resolver of the host is not there), so only ``search``/``domain``/``options``
    lines are kept.
    """
    try:
        data = host_file.read_bytes()
    except OSError:
        data = b""
    if network is NetworkMode.HOST:
        return data
    kept = [
        line
        for line in data.splitlines()
        if line.split(maxsplit=1)[:1] in ([b"search"], [b"domain"], [b"options"])
    ]
    return b"".join(line + b"\n" for line in kept)
