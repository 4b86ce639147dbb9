"""Vertices of a graph under construction, and the context that serializes them.

A :class:`Vertex` is one op being built (exec, file, source, merge, diff); an
:class:`Output` names one of its outputs. Both are immutable. Serializing happens in one
pass over the graph (see ``_marshal``) with a :class:`MarshalContext` that remembers each
vertex's bytes and digest, so inputs are always serialized before the ops that use them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from dockyard.core import Digest, InternalError, Platform, UsageError

from ._constraints import Constraints, SourceLocation
from ._wire import serialize

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = ["MarshalContext", "MarshaledOp", "Output", "Vertex"]


@dataclass(frozen=True, slots=True, eq=False)
class Output:
    """Output ``index`` of ``vertex``; ``platform`` is carried onto states built on it.

    ``error`` marks an output that exists but cannot be used as an input (a tmpfs mount);
    using it raises :class:`UsageError` when the graph is serialized.
    """

    vertex: Vertex
    index: int = 0
    platform: Platform | None = None
    error: str | None = None

    def to_input(self, ctx: MarshalContext) -> pb.Input:
        from dockyard.api import ops as pb

        if self.error is not None:
            raise UsageError(self.error)
        return pb.Input(digest=ctx.digest(self.vertex), index=self.index)


class MarshaledOp(NamedTuple):
    """A serialized vertex: its digest, bytes, the message they encode, metadata and
    source locations."""

    digest: Digest
    data: bytes
    op: pb.Op
    metadata: pb.OpMetadata
    locations: tuple[SourceLocation, ...]


class Vertex(ABC):
    """One op of a graph under construction. Immutable; identity is object identity
    (two equal vertices serialize to the same bytes and are merged by digest)."""

    __slots__ = ("constraints",)

    def __init__(self, constraints: Constraints) -> None:
        self.constraints = constraints

    @abstractmethod
    def inputs(self) -> tuple[Output, ...]:
        """The outputs this vertex reads, in the order BuildKit's client visits them
        (which fixes the order of ops in a Definition)."""

    @abstractmethod
    def build(self, ctx: MarshalContext) -> tuple[pb.Op, Constraints]:
        """The op message and its effective constraints; inputs are already serialized,
        so ``output.to_input(ctx)`` works for every input."""

    def validate(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`UsageError` if the vertex cannot be serialized."""


@dataclass(slots=True, kw_only=True)
class MarshalContext:
    """Serialization defaults for a graph, plus the memo of serialized vertices.

    ``platform`` is the default platform of platform-specific ops, ``constraints`` are
    defaults merged under every op's own, ``local_unique_id`` (when set) is written to
    ``local://`` sources without a session, like BuildKit's ``LocalUniqueID``.
    """

    platform: Platform
    constraints: Constraints = field(default_factory=Constraints)
    local_unique_id: str | None = None
    _done: dict[int, tuple[Vertex, MarshaledOp]] = field(default_factory=dict)

    def digest(self, vertex: Vertex) -> Digest:
        return self.marshaled(vertex).digest

    def marshaled(self, vertex: Vertex) -> MarshaledOp:
        entry = self._done.get(id(vertex))
        if entry is None:
            raise InternalError(f"{type(vertex).__name__} used before its inputs were serialized")
        return entry[1]

    def is_done(self, vertex: Vertex) -> bool:
        return id(vertex) in self._done

    def marshal(self, vertex: Vertex) -> MarshaledOp:
        """Serialize ``vertex`` (its inputs must already be done)."""
        entry = self._done.get(id(vertex))
        if entry is not None:
            return entry[1]
        vertex.validate()
        op, constraints = vertex.build(self)
        data = serialize(op)
        result = MarshaledOp(
            digest=Digest.from_bytes(data),
            data=data,
            op=op,
            metadata=metadata_pb(constraints),
            locations=constraints.locations,
        )
        self._done[id(vertex)] = (vertex, result)
        return result

    def op_base(
        self, constraints: Constraints, *, with_platform: bool
    ) -> tuple[pb.Op, Constraints]:
        """A new op with platform and worker constraints filled in (BuildKit's
        ``MarshalConstraints``), and the merged constraints for its metadata.

        The op platform is the op's own, else the context's default constraints', else
        the context default platform.
        """
        from dockyard.api import ops as pb

        merged = self.constraints.merged(constraints)
        op = pb.Op()
        if with_platform:
            chosen = constraints.platform or self.constraints.platform or self.platform
            set_platform(op.platform, chosen)
        op.constraints.SetInParent()
        op.constraints.filter.extend(merged.worker_constraints)
        return op, merged


def set_platform(message: pb.Platform, platform: Platform) -> None:
    message.Architecture = platform.architecture
    message.OS = platform.os
    message.Variant = platform.variant
    message.OSVersion = platform.os_version
    message.OSFeatures.extend(platform.os_features)


def metadata_pb(constraints: Constraints) -> pb.OpMetadata:
    from dockyard.api import ops as pb

    md = pb.OpMetadata(ignore_cache=constraints.ignore_cache)
    md.description.update(constraints.full_description())
    if constraints.export_cache is not None:
        md.export_cache.Value = constraints.export_cache
    for cap in constraints.caps:
        md.caps[cap] = True
    if constraints.progress_group is not None:
        group = constraints.progress_group
        md.progress_group.id = group.id
        md.progress_group.name = group.name
        md.progress_group.weak = group.weak
    return md
