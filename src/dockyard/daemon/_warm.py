"""Loading a build's modules before the first build asks for them.

Every part of the engine loads when a build first uses it, which keeps ``dockyard
--version`` and an embedded build light. A daemon is long-running: its first build should
not pay for what it will import anyway (the Dockerfile converter, the registry client
and httpx, the image exporter: ~0.1–0.2 s on this VM) or compute anyway (the seccomp
filter of a ``RUN``, ~15 ms). :func:`warm` does both in a thread right after the daemon
starts serving; a build that arrives meanwhile simply
waits on the same imports (Python's per-module import locks).
"""

from __future__ import annotations

import importlib
import logging

__all__ = ["WARM_MODULES", "warm"]

log = logging.getLogger("dockyard.daemon")

#: What a Dockerfile build through the daemon imports that the daemon's start does not
#: (measured by comparing ``sys.modules`` before and after a fresh daemon's first build:
#: a pull, a multi-stage build with RUN steps, a push with zstd; a test keeps each
#: importable).
WARM_MODULES: tuple[str, ...] = (
    "dockyard.api.ops",
    "dockyard.dockerfile._convert",
    "dockyard.dockerfile._convert_args",
    "dockyard.dockerfile._convert_context",
    "dockyard.dockerfile._convert_dispatch",
    "dockyard.dockerfile._dockerignore",
    "dockyard.dockerfile._lint",
    "dockyard.engine._caches",
    "dockyard.engine._exports",
    "dockyard.engine._frontend_ctx",
    "dockyard.executor._oci",
    "dockyard.executor._watchdog",
    "dockyard.exporter._exporters",
    "dockyard.exporter._image",
    "dockyard.frontend._dockerfile",
    "dockyard.llb._marshal",
    "dockyard.llb._validate",
    "dockyard.registry._blobs",
    "dockyard.registry._client",
    "dockyard.registry._download",
    "dockyard.registry._network",
    "dockyard.registry._proxy",
    "dockyard.registry._proxyenv",
    "dockyard.registry._upload",
    "dockyard.remotecache._options",
    "encodings.ascii",
    "encodings.idna",
    "google.protobuf.descriptor_pb2",
    "httpx",
    "anyio.lowlevel",
    "anyio._backends._asyncio",
    "anyio._core._sockets",
    "anyio._core._streams",
    "anyio._core._tasks",
    "resource",
    "tarfile",
)


def warm(modules: tuple[str, ...] = WARM_MODULES) -> int:
    """Import ``modules`` (one that fails is logged and skipped: the build that needs it
    reports the error properly); how many are loaded."""
    loaded = 0
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.debug("warming up: cannot import %s: %s", name, exc)
            continue
        loaded += 1
    _prepare_executor()
    return loaded


def _prepare_executor() -> None:
    """What the first ``RUN`` would compute: its seccomp filter."""
    try:
        from dockyard.executor import prepare_seccomp

        prepare_seccomp()
    except Exception as exc:  # the first RUN computes it and reports what fails
        log.debug("warming up: seccomp filter not prepared: %s", exc)
