"""Layer 8 (above the daemon and the engine): the Python client — what ``dockyard
build`` is made of.

:class:`Client` runs builds on an engine embedded in this process or on a
``dockyardd`` daemon, chosen by address (:func:`select_address`):

- ``Client.open(address=None, config=None)`` — ``address`` (``unix:///PATH`` or
  ``tcp://HOST:PORT``; ``embedded`` forces the embedded engine), else
  ``$DOCKYARD_HOST``, else the embedded engine when ``config`` names a state
  directory, else a daemon that listens on the default socket
  (``/run/dockyard/dockyardd.sock``), else the embedded engine;
- ``Client.embedded(config)`` / ``Client.connect(address)``.

``await client.build(BuildOptions(...), reporter)`` builds a Dockerfile the way
``docker buildx build`` does and returns a :class:`BuildResult` (exporter metadata, the
image id, warnings, and what each client directory transferred); ``solve(definition)``
builds an LLB graph; ``du``, ``prune`` and ``info`` look after the cache. Embedded
mode never loads grpc.

The client serves each build's session — context and Dockerfile directories, named
contexts, secrets, SSH agents, registry credentials (docker's config file) and the
destinations of file outputs — in-process for the embedded engine, over the
daemon's session service otherwise. Contexts from a git or http(s) URL are fetched by
the engine (its git and http sources) and exported to the client, which then serves
them like a local directory; ``-`` reads a tarball or a Dockerfile from stdin.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._address import (
    DEFAULT_ADDRESS,
    DEFAULT_SOCKET,
    EMBEDDED,
    HOST_ENV,
    check_address,
    daemon_listening,
    select_address,
)
from ._client import Client
from ._options import BuildOptions, CacheSpec, NetworkName, Subrequest
from ._result import BuildResult, ServerInfo, Transfer, WorkerDevice, WorkerRecord

if TYPE_CHECKING:
    from ._remote import ClientTls


# the daemon backend's module loads only for a daemon (or its TLS files)
__getattr__ = lazy_getattr(__name__, {"ClientTls": "._remote"})


__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_SOCKET",
    "EMBEDDED",
    "HOST_ENV",
    "BuildOptions",
    "BuildResult",
    "CacheSpec",
    "Client",
    "ClientTls",
    "NetworkName",
    "ServerInfo",
    "Subrequest",
    "Transfer",
    "WorkerDevice",
    "WorkerRecord",
    "check_address",
    "daemon_listening",
    "select_address",
]
