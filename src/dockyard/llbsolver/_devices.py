"""CDI devices of exec ops: who may use them (when the Definition is loaded) and what
they come to (when the exec runs).

The ``device`` entitlement (BuildKit's rules): a build granted ``device`` may use every
device; otherwise each device a request selects must be granted by a
``device=NAME`` grant whose name selects it too, or be auto-allowed by the worker
(``org.mobyproject.buildkit.device.autoallow``, or its configuration). A grant
``device=NAME,alias=ALIAS`` turns a request for ``ALIAS`` into one for ``NAME``, granted.
A request that selects nothing is not an entitlement matter: when the exec runs, a
required one fails and an optional one is skipped with a warning.

The check is made when the Definition is loaded (so that a build fails before anything
runs) and again when the exec runs, on the very specs the devices are then resolved
from: a device that appeared in between (a spec generated at boot, a hot-plugged
device's) is not given to a build that was never granted it.

Only the names in the Definition are part of an exec's cache key; what the host's specs
make of them never is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from dockyard.core import DeviceGrant, Entitlement, Grant, NotFoundError

if TYPE_CHECKING:
    from dockyard.executor.cdi import (
        ContainerEdits,
        DeviceInfo,
        DeviceRegistry,
        DeviceRequest,
        Resolution,
    )
    from dockyard.solver import VertexContext

    from ._common import OpInfo

__all__ = ["DeviceLookup", "authorize_devices", "check_devices", "device_edits"]


class DeviceLookup(Protocol):
    """What the check reads of a worker's devices (a
    :class:`~dockyard.executor.cdi.DeviceRegistry`, or one
    :class:`~dockyard.executor.cdi.DeviceView` of it)."""

    def select(self, name: str) -> tuple[str, ...]: ...

    def device(self, name: str) -> DeviceInfo | None: ...


def authorize_devices(
    requests: Sequence[DeviceRequest],
    grants: frozenset[Grant],
    registry: DeviceLookup | None,
) -> tuple[tuple[DeviceRequest, ...], tuple[str, ...]]:
    """The requests to use (aliases replaced by their devices) and the devices they
    select that the grants do not allow (empty: allowed). Blocking: the registry may
    read its spec directories (only when the build was not granted every device)."""
    if not requests or Entitlement.DEVICE in grants:
        return tuple(requests), ()
    device_grants = [g for g in grants if isinstance(g, DeviceGrant)]
    aliases = {g.alias: g.name for g in device_grants if g.alias}
    used: list[DeviceRequest] = []
    unchecked: list[DeviceRequest] = []
    for request in requests:
        target = aliases.get(request.name)
        if target is not None:
            used.append(replace(request, name=target))  # granted by the alias
        else:
            used.append(request)
            unchecked.append(request)
    if registry is None or not unchecked:
        return tuple(used), ()
    granted: set[str] = set()
    for grant in device_grants:
        if not grant.alias:
            granted.update(registry.select(grant.name))
    forbidden: list[str] = []
    for request in unchecked:
        for name in registry.select(request.name):
            if name in granted or name in forbidden:
                continue
            info = registry.device(name)
            if info is None or not info.auto_allow:
                forbidden.append(name)
    return tuple(used), tuple(forbidden)


def check_devices(
    requests: Sequence[DeviceRequest],
    grants: frozenset[Grant],
    registry: DeviceLookup | None,
    op_name: str,
) -> tuple[DeviceRequest, ...]:
    """The requests to use (see :func:`authorize_devices`); an
    :class:`~dockyard.llbsolver.EntitlementError` naming the op ``op_name`` and the
    devices it was not granted."""
    used, forbidden = authorize_devices(requests, grants, registry)
    if forbidden:
        from ._load import EntitlementError

        listed = ", ".join(forbidden)
        raise EntitlementError(
            f"{op_name!r} asks for device{'s' if len(forbidden) > 1 else ''}"
            f" {listed}, which this build was not granted (allow it with --allow"
            f" device={forbidden[0]}, or every device with --allow device)"
        )
    return used


async def device_edits(
    requests: Sequence[DeviceRequest],
    grants: frozenset[Grant],
    registry: DeviceRegistry | None,
    ctx: VertexContext,
    info: OpInfo,
) -> tuple[ContainerEdits, ...]:
    """The CDI edits of ``requests`` from the worker's registry (read in a thread),
    checked against ``grants`` on the same specs they are resolved from (an
    :class:`~dockyard.llbsolver.EntitlementError` for a device not granted); an optional
    request that selects nothing is a warning of the build, a required one a
    :class:`~dockyard.core.NotFoundError`."""
    if not requests:
        return ()
    if registry is None:
        for request in requests:
            if not request.optional:
                raise NotFoundError(
                    f"required device {request.name!r} is not registered: CDI is disabled"
                    " on this worker"
                )
        for request in requests:
            ctx.warn(
                f"optional device {request.name!r} is not registered (CDI is disabled on"
                " this worker)",
                locations=info.locations,
            )
        return ()

    def resolve() -> Resolution:
        view = registry.view()
        return view.resolve(check_devices(requests, grants, view, info.name))

    resolution = await asyncio.to_thread(resolve)
    for request in resolution.missing:
        ctx.warn(f"optional device {request.name!r} is not registered", locations=info.locations)
    return resolution.edits
