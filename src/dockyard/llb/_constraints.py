"""Per-op options that are not the op itself: platform, worker constraints, metadata
(name, cache control, progress group, capabilities) and source locations."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from dockyard.core import Platform, SourceRange

if TYPE_CHECKING:
    from dockyard.llb._definition import Definition

__all__ = [
    "CUSTOM_NAME",
    "CacheSharing",
    "Constraints",
    "ContentCache",
    "NetMode",
    "ProgressGroup",
    "SecurityMode",
    "SourceLocation",
    "SourceMap",
]

#: ``OpMetadata.description`` key of the name shown for an op in progress output.
CUSTOM_NAME = "llb.customname"


class NetMode(enum.IntEnum):
    """Network of an exec (``pb.NetMode``)."""

    SANDBOX = 0  # pb UNSET: its own network namespace with the default network
    HOST = 1
    NONE = 2


class SecurityMode(enum.IntEnum):
    """Privileges of an exec (``pb.SecurityMode``)."""

    SANDBOX = 0
    INSECURE = 1


class CacheSharing(enum.IntEnum):
    """What a second concurrent user of a cache mount gets (``pb.CacheSharingOpt``)."""

    SHARED = 0
    PRIVATE = 1
    LOCKED = 2


class ContentCache(enum.IntEnum):
    """Whether a bind mount's content may be used for content-based caching
    (``pb.MountContentCache``)."""

    DEFAULT = 0
    ON = 1
    OFF = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressGroup:
    """Groups ops under one entry in progress output (``pb.ProgressGroup``)."""

    id: str
    name: str = ""
    weak: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceMap:
    """A build description file that ops can point into (``pb.SourceInfo``).

    ``definition`` optionally carries the graph that produced the file.
    """

    filename: str
    data: bytes = field(default=b"", repr=False)
    language: str = ""
    definition: Definition | None = field(default=None, compare=False, repr=False)

    def location(self, *ranges: SourceRange) -> SourceLocation:
        """A location in this file covering ``ranges`` (1-based lines)."""
        return SourceLocation(source=self, ranges=tuple(ranges))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLocation:
    """Lines of a :class:`SourceMap` that an op comes from."""

    source: SourceMap
    ranges: tuple[SourceRange, ...] = ()


def _frozen_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraints:
    """Options for one op (or, passed to ``marshal``, defaults for every op).

    Mirrors BuildKit's ``llb.Constraints``: ``platform`` (the op's platform; sources and
    execs only), ``worker_constraints`` (containerd-style filters) and the op metadata
    that does not enter the op digest — ``custom_name`` (shown in progress; stored as
    ``description["llb.customname"]``), free-form ``description``, ``ignore_cache``,
    ``export_cache`` (``None``: the build's default), ``progress_group`` and ``caps`` —
    plus ``locations`` in build description files.

    Combine with :meth:`merged`: the later value wins for scalars, descriptions and caps
    accumulate.
    """

    platform: Platform | None = None
    worker_constraints: tuple[str, ...] = ()
    custom_name: str | None = None
    description: Mapping[str, str] = field(default_factory=dict)
    ignore_cache: bool = False
    export_cache: bool | None = None
    progress_group: ProgressGroup | None = None
    caps: frozenset[str] = frozenset()
    locations: tuple[SourceLocation, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "description", _frozen_map(self.description))
        object.__setattr__(self, "worker_constraints", tuple(self.worker_constraints))
        object.__setattr__(self, "caps", frozenset(self.caps))
        object.__setattr__(self, "locations", tuple(self.locations))

    def merged(self, other: Constraints | None) -> Constraints:
        """``self`` overridden by ``other`` (BuildKit's ``mergeMetadata`` rules)."""
        if other is None:
            return self
        return Constraints(
            platform=other.platform or self.platform,
            worker_constraints=self.worker_constraints + other.worker_constraints,
            custom_name=other.custom_name if other.custom_name is not None else self.custom_name,
            description={**self.description, **other.description},
            ignore_cache=self.ignore_cache or other.ignore_cache,
            export_cache=other.export_cache
            if other.export_cache is not None
            else self.export_cache,
            progress_group=other.progress_group or self.progress_group,
            caps=self.caps | other.caps,
            locations=self.locations + other.locations,
        )

    def with_caps(self, *caps: str) -> Constraints:
        """The same constraints requiring ``caps`` as well."""
        return self.merged(Constraints(caps=frozenset(caps)))

    def full_description(self) -> dict[str, str]:
        """``description`` with the custom name folded in."""
        out = dict(self.description)
        if self.custom_name is not None:
            out[CUSTOM_NAME] = self.custom_name
        return out


def options(constraints: Constraints | None, name: str | None) -> Constraints:
    """The constraints of a builder call: ``constraints`` plus the ``name`` shortcut."""
    base = constraints if constraints is not None else Constraints()
    if name is not None:
        base = base.merged(Constraints(custom_name=name))
    return base
