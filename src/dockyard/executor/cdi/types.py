"""The values of CDI support: what a build asks for (:class:`DeviceRequest`), what the
host's spec files tell the runtime to do (:class:`ContainerEdits` and its parts), what a
worker lists (:class:`DeviceInfo`) and how it is configured (:class:`CdiConfig`).

Importing this module is cheap (dataclasses and paths only): an exec request carries
these values whether or not it asks for a device.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.core import UsageError

__all__ = [
    "ANNOTATION_AUTO_ALLOW",
    "ANNOTATION_CLASS",
    "CDI_DISABLED_ENV",
    "CDI_SPEC_DIRS_ENV",
    "DEFAULT_SPEC_DIRS",
    "HOOK_NAMES",
    "SPEC_SUFFIXES",
    "CdiConfig",
    "CdiMount",
    "ContainerEdits",
    "DeviceInfo",
    "DeviceNode",
    "DeviceRequest",
    "Hook",
    "IntelRdt",
    "NetDevice",
]

DEFAULT_SPEC_DIRS: tuple[Path, ...] = (
    Path("/etc/cdi"),
    Path("/var/run/cdi"),
    Path("/etc/buildkit/cdi"),
)
"""Where spec files are looked for (BuildKit's defaults); a later directory's device
replaces an earlier one's of the same name."""

ANNOTATION_AUTO_ALLOW = "org.mobyproject.buildkit.device.autoallow"
"""A spec or device annotation: ``true`` lets builds use the device without the
``device`` entitlement."""

ANNOTATION_CLASS = "org.mobyproject.buildkit.device.class"
"""A device annotation: the class a build may ask for by name (``RUN --device=CLASS``)."""

HOOK_NAMES = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
"""The OCI hooks a spec may add (``prestart`` is deprecated by OCI but still valid)."""

SPEC_SUFFIXES = (".json", ".yaml", ".yml")
"""The spec files of a directory: ``.json`` and ``.yaml`` as the reference reads them,
and ``.yml`` as BuildKit's documentation writes them."""

CDI_SPEC_DIRS_ENV = "DOCKYARD_CDI_SPEC_DIRS"
CDI_DISABLED_ENV = "DOCKYARD_CDI_DISABLED"


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiConfig:
    """How a worker finds CDI devices (``[cdi]`` of the daemon's config file; for the
    embedded engine, :meth:`from_env`).

    ``disabled``: no device is known and a build that requires one fails. ``spec_dirs``:
    the directories whose ``*.json``, ``*.yaml`` and ``*.yml`` files are read, in
    increasing priority. ``auto_allowed``: device names or kinds builds may use without
    the ``device`` entitlement (besides those annotated so).
    """

    disabled: bool = False
    spec_dirs: tuple[Path, ...] = DEFAULT_SPEC_DIRS
    auto_allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        dirs = tuple(Path(d) for d in self.spec_dirs)
        for d in dirs:
            if not d.is_absolute():
                raise UsageError(f"CDI spec directory {str(d)!r} must be an absolute path")
        object.__setattr__(self, "spec_dirs", dirs)
        object.__setattr__(self, "auto_allowed", tuple(self.auto_allowed))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CdiConfig:
        """The embedded engine's: ``$DOCKYARD_CDI_SPEC_DIRS`` (directories separated by
        ``:``; replaces the defaults) and ``$DOCKYARD_CDI_DISABLED`` (``1``/``true``)."""
        env = os.environ if environ is None else environ
        disabled = env.get(CDI_DISABLED_ENV, "").strip().lower()
        if disabled not in ("", "0", "false", "1", "true"):
            raise UsageError(f"${CDI_DISABLED_ENV}: expected 1/true or 0/false, not {disabled!r}")
        dirs = env.get(CDI_SPEC_DIRS_ENV)
        spec_dirs: tuple[Path, ...] = DEFAULT_SPEC_DIRS
        if dirs is not None:
            spec_dirs = tuple(Path(d) for d in dirs.split(os.pathsep) if d)
        try:
            return cls(disabled=disabled in ("1", "true"), spec_dirs=spec_dirs)
        except UsageError as exc:
            raise UsageError(f"${CDI_SPEC_DIRS_ENV}: {exc.message}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRequest:
    """A device an exec asks for (LLB's ``CDIDevice``): a name in the grammar of
    :mod:`dockyard.core.cdinames`; unless ``optional``, the exec fails when the name
    selects no device."""

    name: str
    optional: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceNode:
    """A device node to create at ``path`` in the container. ``host_path`` (default:
    ``path``) is the host's node whose type and numbers are used when ``type`` or
    ``major`` are not given (``type``: ``c``, ``b``, ``u`` or ``p``). ``permissions``
    (``r``, ``w``, ``m``; default ``rwm``) go into the device cgroup rule; ``uid`` and
    ``gid`` own the node (default: the process's user)."""

    path: str
    host_path: str = ""
    type: str = ""
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    permissions: str = ""
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiMount:
    """A host path mounted at ``container_path`` (an OCI mount: ``type`` and
    ``options`` as the runtime takes them, e.g. ``options=("rbind", "ro")``)."""

    host_path: str
    container_path: str
    type: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook:
    """An OCI hook (one of :data:`HOOK_NAMES`) the runtime runs on the host."""

    hook_name: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IntelRdt:
    """Linux resctrl settings (the OCI spec's ``linux.intelRdt``)."""

    clos_id: str = ""
    l3_cache_schema: str = ""
    mem_bw_schema: str = ""
    schemata: tuple[str, ...] = ()
    enable_cmt: bool = False
    enable_mbm: bool = False
    enable_monitoring: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NetDevice:
    """A host network interface moved into the container (CDI 1.1)."""

    host_interface_name: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerEdits:
    """Edits a spec file asks for, at spec level (made once when any of its devices is
    used) or for one device; ``origin`` names which (``vendor/class`` or
    ``vendor/class=name``) and the file, for messages."""

    origin: str = ""
    env: tuple[str, ...] = ()
    device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[CdiMount, ...] = ()
    hooks: tuple[Hook, ...] = ()
    additional_gids: tuple[int, ...] = ()
    intel_rdt: IntelRdt | None = None
    net_devices: tuple[NetDevice, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.env
            or self.device_nodes
            or self.mounts
            or self.hooks
            or self.additional_gids
            or self.intel_rdt is not None
            or self.net_devices
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """A device the worker knows: its qualified name, whether builds may use it without
    the ``device`` entitlement, its annotations (the spec's, then the device's) and the
    spec file it comes from."""

    name: str
    auto_allow: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec_file: Path | None = None

    @property
    def kind(self) -> str:
        return self.name.partition("=")[0]
