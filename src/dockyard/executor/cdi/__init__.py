"""CDI, the Container Device Interface: devices described by the host's spec files
(``/etc/cdi``, ``/var/run/cdi``, ``/etc/buildkit/cdi``) that a build step asks for by
name (``RUN --device=vendor.com/class=name``), as BuildKit 0.20+ has them.

- :class:`DeviceRegistry` (the worker's) reads and checks the spec files
  (:mod:`dockyard.executor.cdi._spec`), lists the devices and resolves requested names
  (the grammar of :mod:`dockyard.core.cdinames`) to :class:`ContainerEdits`;
- the exec request carries those edits (``ProcessSpec.cdi_edits``) and the OCI executor
  makes them to the runtime spec (:func:`apply_edits`): environment, device nodes with
  their cgroup rule, mounts, hooks, supplementary groups, resctrl settings.

Spec files are host configuration and trusted; device names come from build
descriptions and are only compared with the specs' names. Only the requested names
reach an exec's cache key, never what a spec file says. Nothing but the values
(:mod:`dockyard.executor.cdi.types`) loads until a registry is made or edits are made.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from .types import (
    ANNOTATION_AUTO_ALLOW,
    ANNOTATION_CLASS,
    CDI_DISABLED_ENV,
    CDI_SPEC_DIRS_ENV,
    DEFAULT_SPEC_DIRS,
    HOOK_NAMES,
    SPEC_SUFFIXES,
    CdiConfig,
    CdiMount,
    ContainerEdits,
    DeviceInfo,
    DeviceNode,
    DeviceRequest,
    Hook,
    IntelRdt,
    NetDevice,
)

if TYPE_CHECKING:
    from ._apply import apply_edits, destinations
    from ._registry import DeviceRegistry, DeviceView, Resolution
    from ._spec import VERSIONS, CdiDevice, CdiSpec, parse_spec, read_spec

__all__ = [
    "ANNOTATION_AUTO_ALLOW",
    "ANNOTATION_CLASS",
    "CDI_DISABLED_ENV",
    "CDI_SPEC_DIRS_ENV",
    "DEFAULT_SPEC_DIRS",
    "HOOK_NAMES",
    "SPEC_SUFFIXES",
    "VERSIONS",
    "CdiConfig",
    "CdiDevice",
    "CdiMount",
    "CdiSpec",
    "ContainerEdits",
    "DeviceInfo",
    "DeviceNode",
    "DeviceRegistry",
    "DeviceRequest",
    "DeviceView",
    "Hook",
    "IntelRdt",
    "NetDevice",
    "Resolution",
    "apply_edits",
    "destinations",
    "parse_spec",
    "read_spec",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "apply_edits": "._apply",
        "destinations": "._apply",
        "DeviceRegistry": "._registry",
        "DeviceView": "._registry",
        "Resolution": "._registry",
        "VERSIONS": "._spec",
        "CdiDevice": "._spec",
        "CdiSpec": "._spec",
        "parse_spec": "._spec",
        "read_spec": "._spec",
    },
)
