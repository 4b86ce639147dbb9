"""Where a client's builds run: a daemon's address, or the engine embedded in this
process.

The rules (:func:`select_address`), in order:

1. an explicit address (``dockyard --addr``, ``Client.open(address=...)``);
2. ``$DOCKYARD_HOST``;
3. an explicit state directory (``--state-dir``, ``$DOCKYARD_STATE_DIR``) means the
   embedded engine on it — a daemon owns its own state directory, so asking for one
   is asking for the embedded engine;
4. a daemon listening on the default socket (``/run/dockyard/dockyardd.sock``): it is
   used when a plain connect to it succeeds (no gRPC is loaded to find out);
5. otherwise the embedded engine.

Addresses are ``unix:///PATH`` or ``tcp://HOST:PORT``; the special value ``embedded``
forces the embedded engine (``DOCKYARD_HOST=embedded``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dockyard.core import UsageError

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_SOCKET",
    "EMBEDDED",
    "HOST_ENV",
    "check_address",
    "daemon_listening",
    "grpc_target",
    "select_address",
]

HOST_ENV = "DOCKYARD_HOST"
EMBEDDED = "embedded"
# The daemon's default socket (dockyard.core.address.DEFAULT_SOCKET; written here too so
# that an embedded build loads no address values: test_address keeps them equal).
DEFAULT_SOCKET = Path("/run/dockyard/dockyardd.sock")
DEFAULT_ADDRESS = f"unix://{DEFAULT_SOCKET}"


def check_address(address: str) -> str:
    """``address`` normalized (``unix:///PATH``, ``tcp://HOST:PORT`` or ``embedded``);
    a :class:`~dockyard.core.UsageError` for anything else."""
    text = address.strip()
    if text == EMBEDDED:
        return text
    from dockyard.core.address import parse_address

    return parse_address(text).url


def grpc_target(address: str) -> str:
    """The target string grpc dials for a checked address (``unix:/PATH``,
    ``HOST:PORT``)."""
    from dockyard.core.address import parse_address

    return parse_address(address).bind_address


def daemon_listening(path: Path = DEFAULT_SOCKET) -> bool:
    """Whether something accepts connections on the unix socket ``path``
    (:func:`dockyard.core.address.daemon_listening`, loaded only when asked)."""
    from dockyard.core.address import daemon_listening as listening

    return listening(path)


def select_address(
    address: str | None = None,
    *,
    state_dir_given: bool = False,
    environ: Mapping[str, str] | None = None,
    default_socket: Path = DEFAULT_SOCKET,
) -> str | None:
    """The daemon address to use, or ``None`` for the embedded engine (see the module
    docstring for the rules)."""
    env = os.environ if environ is None else environ
    for candidate, where in ((address, "--addr"), (env.get(HOST_ENV), f"${HOST_ENV}")):
        if candidate is None or not candidate.strip():
            continue
        try:
            checked = check_address(candidate)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc.message}") from None
        return None if checked == EMBEDDED else checked
    if state_dir_given:
        return None
    if daemon_listening(default_socket):
        return f"unix://{default_socket}"
    return None
