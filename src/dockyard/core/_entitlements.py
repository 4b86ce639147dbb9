"""Entitlements: privileges a build must be granted explicitly (BuildKit's
``util/entitlements``), parsed at the edge (``--allow``, a daemon's config) and checked
by the LLB solver.

A grant is an :class:`Entitlement` (``network.host``, ``security.insecure``, ``device``:
every CDI device) or a :class:`DeviceGrant` (``device=NAME[,alias=ALIAS]``: the
``device`` entitlement for the devices ``NAME`` selects only; with an alias, a build
asking for ``ALIAS`` gets ``NAME``). An engine allows entitlements by name
(:attr:`Grant.entitlement` is what a grant needs allowed)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from ._errors import UsageError

__all__ = ["DeviceGrant", "Entitlement", "Grant", "parse_grant"]


class Entitlement(enum.Enum):
    """Privileges a build must be granted explicitly (``--allow``)."""

    NETWORK_HOST = "network.host"
    SECURITY_INSECURE = "security.insecure"
    DEVICE = "device"

    @property
    def entitlement(self) -> Entitlement:
        """What an engine must allow for this grant: itself."""
        return self

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str) -> Entitlement:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(e.value for e in cls)
            raise UsageError(f"unknown entitlement {value!r} (known: {known})") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceGrant:
    """``device=NAME[,alias=ALIAS]``: the ``device`` entitlement for the CDI devices
    ``name`` selects (a name in the grammar of :mod:`dockyard.core.cdinames`); with
    ``alias``, a build's request for ``alias`` is a request for ``name``."""

    name: str
    alias: str = ""

    @property
    def entitlement(self) -> Entitlement:
        return Entitlement.DEVICE

    def __str__(self) -> str:
        return f"device={self.name}" + (f",alias={self.alias}" if self.alias else "")

    @classmethod
    def parse(cls, value: str) -> DeviceGrant:
        """The part after ``device=``: ``NAME[,alias=ALIAS]``."""
        name, *fields = value.split(",")
        alias = ""
        for field in fields:
            key, sep, item = field.partition("=")
            if not sep:
                raise UsageError(f"invalid device entitlement field {field!r} (expected key=value)")
            if key != "alias":
                raise UsageError(f"unknown device entitlement key {key!r} (expected alias)")
            alias = item
        from .cdinames import parse_selector

        parse_selector(name)
        if alias:
            parse_selector(alias)
        return cls(name=name, alias=alias)


Grant: TypeAlias = Entitlement | DeviceGrant


def parse_grant(value: str) -> Grant:
    """An ``--allow`` value: an entitlement's name, or ``device=NAME[,alias=ALIAS]``."""
    key, sep, rest = value.partition("=")
    if sep and key == Entitlement.DEVICE.value:
        if not rest:
            return Entitlement.DEVICE
        try:
            return DeviceGrant.parse(rest)
        except UsageError as exc:
            raise UsageError(f"invalid entitlement {value!r}: {exc.message}") from None
    return Entitlement.parse(value)
