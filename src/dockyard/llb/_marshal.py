"""Serializing a graph: ``State.marshal()``.

Ops are emitted in the order BuildKit's Go client emits them — a depth-first walk from the
result that writes each op after its inputs, inputs visited in the vertex's order — and
identical ops (same digest) once. The last op is the terminal op, whose only input is the
result. Metadata of ops with equal digests is merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.core import Digest, InvalidDefinitionError, Platform, UsageError, host_platform

from ._constraints import Constraints, SourceLocation, SourceMap
from ._vertex import MarshalContext, MarshaledOp, Vertex
from ._wire import serialize

if TYPE_CHECKING:
    from dockyard.api import ops as pb

    from ._definition import Definition
    from ._state import State

__all__ = ["MAX_DEFINITION_BYTES", "marshal"]

_TERMINAL_CAPS = ("constraints", "platform")

MAX_DEFINITION_BYTES = 64 << 20
"""The most bytes of ops a definition may hold: the daemon's message limit, so nothing
serializes a definition no client could send. A frontend's graph can be much larger
than its input (a Dockerfile's 1 MiB ENV variable is in the op of every RUN after it:
1.4 KB of Dockerfile made a gigabyte of ops), so the total is checked op by op."""


def marshal(
    state: State,
    *,
    platform: Platform | str | None = None,
    constraints: Constraints | None = None,
    local_unique_id: str | None = None,
) -> Definition:
    from dockyard.api import ops as pb

    from ._definition import Definition

    if isinstance(platform, str):
        try:
            platform = Platform.parse(platform)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    ctx = MarshalContext(
        platform=platform or host_platform(),
        constraints=constraints or Constraints(),
        local_unique_id=local_unique_id,
    )
    output = state.output
    if output is None:
        return Definition.empty()

    ops: list[tuple[bytes, pb.Op]] = []
    seen: set[Digest] = set()
    metadata: dict[str, pb.OpMetadata] = {}
    locations = _LocationCollector()

    total = 0
    for vertex in _post_order(output.vertex):
        result = ctx.marshal(vertex)
        _merge_metadata(metadata, result)
        locations.add(result.digest, result.locations)
        if result.digest not in seen:
            seen.add(result.digest)
            total += len(result.data)
            if total > MAX_DEFINITION_BYTES:
                raise InvalidDefinitionError(
                    f"the build definition is larger than {MAX_DEFINITION_BYTES >> 20} MiB"
                    f" (op {len(ops) + 1}, {type(vertex).__name__} {result.digest}, holds"
                    f" {len(result.data)} bytes)"
                )
            ops.append((result.data, result.op))

    terminal = pb.Op()
    terminal.inputs.append(output.to_input(ctx))
    data = serialize(terminal)
    digest = Digest.from_bytes(data)
    md = pb.OpMetadata()
    md.CopyFrom(metadata.get(digest, pb.OpMetadata()))
    md.caps.clear()
    for cap in _TERMINAL_CAPS:
        md.caps[cap] = True
    for other in metadata.values():
        if other.ignore_cache:
            md.caps["meta.ignorecache"] = True
        if other.description:
            md.caps["meta.description"] = True
        if other.HasField("export_cache"):
            md.caps["meta.exportcache"] = True
    metadata[digest] = md
    if digest not in seen:
        ops.append((data, terminal))

    return Definition._build(ops, metadata, locations.to_pb())


def _post_order(root: Vertex) -> list[Vertex]:
    """Vertices reachable from ``root``, each after its inputs (iterative: graphs can be
    deeper than Python's recursion limit)."""
    order: list[Vertex] = []
    visited: set[int] = set()
    stack: list[tuple[Vertex, bool]] = [(root, False)]
    while stack:
        vertex, expanded = stack.pop()
        if expanded:
            order.append(vertex)
            continue
        if id(vertex) in visited:
            continue
        visited.add(id(vertex))
        stack.append((vertex, True))
        for output in reversed(vertex.inputs()):
            if id(output.vertex) not in visited:
                stack.append((output.vertex, False))
    return order


def _merge_metadata(metadata: dict[str, pb.OpMetadata], result: MarshaledOp) -> None:
    existing = metadata.get(result.digest)
    if existing is None:
        metadata[result.digest] = result.metadata
        return
    new = result.metadata
    if new.ignore_cache:
        existing.ignore_cache = True
    existing.description.update(new.description)
    if new.HasField("export_cache"):
        existing.export_cache.CopyFrom(new.export_cache)
    for cap in new.caps:
        existing.caps[cap] = True
    if new.HasField("progress_group"):
        existing.progress_group.CopyFrom(new.progress_group)


class _LocationCollector:
    """Source maps in first-use order, and for each the ranges of each op digest."""

    def __init__(self) -> None:
        self._maps: list[SourceMap] = []
        self._ranges: list[dict[str, SourceLocation]] = []

    def add(self, digest: str, locations: tuple[SourceLocation, ...]) -> None:
        for location in locations:
            try:
                index = self._maps.index(location.source)
            except ValueError:
                index = len(self._maps)
                self._maps.append(location.source)
                self._ranges.append({})
            self._ranges[index][digest] = location

    def to_pb(self) -> pb.Source | None:
        from dockyard.api import ops as pb

        if not self._maps:
            return None
        source = pb.Source()
        for index, (source_map, by_digest) in enumerate(zip(self._maps, self._ranges, strict=True)):
            info = source.infos.add(
                filename=source_map.filename, data=source_map.data, language=source_map.language
            )
            if source_map.definition is not None:
                info.definition.CopyFrom(source_map.definition.to_pb())
            for digest, location in by_digest.items():
                entry = source.locations[digest].locations.add(sourceIndex=index)
                for rng in location.ranges:
                    pb_range = entry.ranges.add()
                    pb_range.start.line = rng.start
                    pb_range.start.character = rng.start_column
                    pb_range.end.line = rng.end
                    pb_range.end.character = rng.end_column
                    pb_range.start.SetInParent()
                    pb_range.end.SetInParent()
        return source
