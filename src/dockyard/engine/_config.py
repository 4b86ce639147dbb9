"""The engine's configuration: one frozen value, made at the edge (CLI flags, the
environment, a daemon's config file)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from dockyard.core import Entitlement, Platform, UsageError, host_platform
from dockyard.executor.types import NetworkMode
from dockyard.registry import RegistryConfig

__all__ = [
    "STATE_DIR_ENV",
    "EngineConfig",
    "RuntimeName",
    "SnapshotterName",
    "default_state_dir",
]

STATE_DIR_ENV = "DOCKYARD_STATE_DIR"
RuntimeName = Literal["crun", "runc"]
SnapshotterName = Literal["auto", "overlayfs", "native"]


def default_state_dir(environ: Mapping[str, str] | None = None, *, uid: int | None = None) -> Path:
    """Where the engine keeps its state unless told otherwise: ``$DOCKYARD_STATE_DIR``;
    else ``/var/lib/dockyard`` as root and ``$XDG_DATA_HOME/dockyard`` (default
    ``~/.local/share/dockyard``) for other users."""
    env = os.environ if environ is None else environ
    explicit = env.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    if (os.geteuid() if uid is None else uid) == 0:
        return Path("/var/lib/dockyard")
    data_home = env.get("XDG_DATA_HOME") or str(
        Path(env.get("HOME") or "~").expanduser() / ".local/share"
    )
    return Path(data_home) / "dockyard"


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Everything an :class:`~dockyard.engine.Engine` is built from.

    ``state_dir``: cache records, snapshots, content, metadata (see DESIGN.md); one
    engine process at a time. ``runtime``/``runtime_binary``: the OCI runtime of build
    steps. ``snapshotter``: ``auto`` picks overlayfs where the kernel allows it, else
    the copying ``native`` one. ``max_parallelism``: how many ops may run at once
    (``None``: no limit). ``registry``: mirrors, insecure and loopback hosts, CA files.
    ``entitlements``: the privileges builds may ask for (``--allow``); a build asking
    for another is refused. ``network``: the network of build steps that do not ask for
    one (``host``: the host's, as BuildKit without CNI; ``none``: loopback only).
    ``platform``: what build steps run as (this host's).
    """

    state_dir: Path = field(default_factory=default_state_dir)
    runtime: RuntimeName = "crun"
    runtime_binary: str | None = None
    snapshotter: SnapshotterName = "auto"
    max_parallelism: int | None = None
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    entitlements: frozenset[Entitlement] = frozenset()
    network: NetworkMode = NetworkMode.HOST
    platform: Platform = field(default_factory=host_platform)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        if self.runtime not in get_args(RuntimeName):
            raise UsageError(f"unknown OCI runtime {self.runtime!r} (expected crun or runc)")
        if self.snapshotter not in get_args(SnapshotterName):
            raise UsageError(
                f"unknown snapshotter {self.snapshotter!r} (expected auto, overlayfs or native)"
            )
        if self.max_parallelism is not None and self.max_parallelism < 1:
            raise UsageError(f"max parallelism must be at least 1, not {self.max_parallelism}")
        object.__setattr__(self, "entitlements", frozenset(self.entitlements))

    @staticmethod
    def parse_entitlements(values: Iterable[str]) -> frozenset[Entitlement]:
        """``network.host``, ``security.insecure`` (``--allow`` values)."""
        return frozenset(Entitlement.parse(v) for v in values)
