"""Entitlements: privileges a build must be granted explicitly (BuildKit's
``util/entitlements``), parsed at the edge (``--allow``, a daemon's config) and checked
by the LLB solver."""

from __future__ import annotations

import enum

from ._errors import UsageError

__all__ = ["Entitlement"]


class Entitlement(enum.Enum):
    """Privileges a build must be granted explicitly (``--allow``)."""

    NETWORK_HOST = "network.host"
    SECURITY_INSECURE = "security.insecure"

    @classmethod
    def parse(cls, value: str) -> Entitlement:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(e.value for e in cls)
            raise UsageError(f"unknown entitlement {value!r} (known: {known})") from None
