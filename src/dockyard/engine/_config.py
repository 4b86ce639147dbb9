"""The engine's configuration: one frozen value, made at the edge (CLI flags, the
environment, a daemon's config file)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from dockyard.core import Grant, Platform, UsageError, host_platform, parse_grant
from dockyard.core.statedir import STATE_DIR_ENV, default_state_dir
from dockyard.executor.cdi.types import CdiConfig
from dockyard.executor.types import NetworkMode
from dockyard.registry import RegistryConfig

__all__ = [
    "STATE_DIR_ENV",
    "EngineConfig",
    "RuntimeName",
    "SnapshotterName",
    "default_state_dir",
]

RuntimeName = Literal["crun", "runc"]
SnapshotterName = Literal["auto", "overlayfs", "native"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Everything an :class:`~dockyard.engine.Engine` is built from.

    ``state_dir``: cache records, snapshots, content, metadata (see DESIGN.md); one
    engine process at a time. ``runtime``/``runtime_binary``: the OCI runtime of build
    steps. ``snapshotter``: ``auto`` picks overlayfs where the kernel allows it, else
    the copying ``native`` one. ``max_parallelism``: how many ops may run at once
    (``None``: no limit). ``registry``: mirrors, insecure and loopback hosts, CA files.
    ``entitlements``: the privileges builds may ask for (``--allow``); a build asking
    for another is refused (by name: allowing ``device`` allows ``device=NAME`` too). ``network``: the network of build steps that do not ask for
    one (``host``: the host's, as BuildKit without CNI; ``none``: loopback only).
    ``platform``: what build steps run as (this host's). ``host_paths``: builds may name
    files of this host by path (``oci-layout:///PATH``) — true for the embedded engine,
    whose client is this process; a daemon sets it false (a remote client offers its
    layouts through its session instead). ``cdi``: where CDI device specs are found
    (default: BuildKit's directories, or ``$DOCKYARD_CDI_SPEC_DIRS``; CDI off with
    ``$DOCKYARD_CDI_DISABLED=1``).
    """

    state_dir: Path = field(default_factory=default_state_dir)
    runtime: RuntimeName = "crun"
    runtime_binary: str | None = None
    snapshotter: SnapshotterName = "auto"
    max_parallelism: int | None = None
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    entitlements: frozenset[Grant] = frozenset()
    network: NetworkMode = NetworkMode.HOST
    platform: Platform = field(default_factory=host_platform)
    host_paths: bool = True
    cdi: CdiConfig = field(default_factory=CdiConfig.from_env)

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
    def parse_entitlements(values: Iterable[str]) -> frozenset[Grant]:
        """``network.host``, ``security.insecure``, ``device`` or
        ``device=NAME[,alias=ALIAS]`` (``--allow`` values)."""
        return frozenset(parse_grant(v) for v in values)
