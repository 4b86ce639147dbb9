"""From a loaded :class:`dockyard.llb.Definition` to :class:`dockyard.solver.Vertex` objects.

Each op becomes a vertex whose digest is the op's digest, whose name is the op's custom
name (``llb.customname``) or BuildKit's default for its kind, and whose op is the
implementation for its kind. ``OpMetadata`` carries over: ``ignore_cache``, the
description, the progress group. Errors found here (an unknown source scheme, an exec
that needs an entitlement the job does not have, an op Dockyard cannot run) name the op
and point at its source locations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.core import (
    DockyardError,
    InvalidDefinitionError,
    Platform,
    UsageError,
)
from dockyard.llb import Definition, OpNode
from dockyard.solver import Edge, Vertex, VertexOptions

from ._common import OpInfo
from ._devices import check_devices
from ._exec import ExecOp
from ._fileop import FileOp, steps_from_pb
from ._merge import DiffOp, MergeOp
from ._source import SourceOp
from .types import Grant, SourceRequest, Worker

if TYPE_CHECKING:
    from dockyard.api import ops as pb
    from dockyard.solver import Op

__all__ = ["EntitlementError", "load"]


class EntitlementError(UsageError):
    """An op needs a privilege the build was not granted."""


def _platform(op: pb.Op) -> Platform | None:
    if not op.HasField("platform"):
        return None
    p = op.platform
    if not p.OS and not p.Architecture:
        return None
    return Platform.of(p.OS, p.Architecture, p.Variant)


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(node: OpNode, vertices: dict[str, Vertex]) -> str:
    custom = node.custom_name
    if custom:
        return custom
    op = node.op
    if node.kind == "merge":
        names = [_quoted(vertices[str(i.digest)].name) for i in node.inputs]
        return "merge " + " + ".join(names)
    if node.kind == "diff":

        def side(index: int) -> str:
            if index < 0:
                return "scratch"
            return _quoted(vertices[str(node.inputs[index].digest)].name)

        return f"diff {side(int(op.diff.lower.input))} -> {side(int(op.diff.upper.input))}"
    if node.kind == "source":
        include = op.source.attrs.get("local.includepattern")
        if op.source.identifier.startswith("local://") and include:
            return f"{op.source.identifier} ({include})"
    return node.name


def load(
    definition: Definition,
    worker: Worker,
    *,
    entitlements: frozenset[Grant] = frozenset(),
) -> Edge | None:
    """The result edge of ``definition`` with every op made a vertex; ``None`` for an
    empty Definition (the empty filesystem). Raises :class:`InvalidDefinitionError` for
    an op Dockyard cannot run and :class:`EntitlementError` for a privilege not
    granted, both naming the op. An exec asking for CDI devices without the build
    being granted every device reads the worker's CDI specs (blocking; see
    :mod:`dockyard.llbsolver._devices`)."""
    head = definition.head
    if head is None:
        return None
    vertices: dict[str, Vertex] = {}
    stack: list[tuple[OpNode, bool]] = [(definition[head.digest], False)]
    while stack:
        node, expanded = stack.pop()
        digest = str(node.digest)
        if digest in vertices:
            continue
        if not expanded:
            stack.append((node, True))
            stack.extend(
                (definition[i.digest], False) for i in node.inputs if str(i.digest) not in vertices
            )
            continue
        vertices[digest] = _vertex(node, vertices, worker, entitlements)
    return Edge(vertex=vertices[str(head.digest)], index=head.index)


def _vertex(
    node: OpNode,
    vertices: dict[str, Vertex],
    worker: Worker,
    entitlements: frozenset[Grant],
) -> Vertex:
    name = _name(node, vertices)
    info = OpInfo(
        digest=str(node.digest), name=name, locations=node.locations, platform=_platform(node.op)
    )
    try:
        op = _op(node, info, worker, entitlements, vertices)
    except DockyardError as exc:
        raise info.located(exc.with_vertex(info.ref())) from None
    md = node.metadata
    options = VertexOptions(
        ignore_cache=md.ignore_cache,
        description=tuple(sorted((str(k), str(v)) for k, v in md.description.items())),
        progress_group=md.progress_group.id or None,
    )
    inputs = tuple(Edge(vertex=vertices[str(i.digest)], index=i.index) for i in node.inputs)
    return Vertex(digest=str(node.digest), name=name, inputs=inputs, op=op, options=options)


def _copy_source(vertex: Vertex) -> str:
    """How a file op's error names the input it copies from: a local directory the
    client sends by its name (``the build context`` for ``local://context``, mentioning
    its ignore patterns when it has some), anything else as ``the copy source``."""
    op = vertex.op
    if not isinstance(op, SourceOp) or op.request.scheme != "local":
        return "the copy source"
    name = op.request.path
    where = "the build context" if name == "context" else f"the local source {name!r}"
    excluded = op.request.attrs.get("local.excludepatterns", "")
    if excluded and excluded != "[]":
        where += " or excluded by .dockerignore"
    return where


def _op(
    node: OpNode,
    info: OpInfo,
    worker: Worker,
    entitlements: frozenset[Grant],
    vertices: dict[str, Vertex],
) -> Op:
    op = node.op
    kind = node.kind
    n_inputs = len(node.inputs)
    if kind == "source":
        try:
            request = SourceRequest.parse(
                op.source.identifier,
                attrs=dict(op.source.attrs),
                platform=info.platform,
                vertex=info.ref(),
            )
        except UsageError as exc:
            raise InvalidDefinitionError(exc.message) from exc
        return SourceOp.create(info=info, request=request, sources=worker.sources)
    if kind == "exec":
        exec_op = ExecOp(info=info, worker=worker, exec_op=op.exec, n_inputs=n_inputs)
        missing = exec_op.required_entitlements() - entitlements
        if missing:
            names = ", ".join(sorted(e.value for e in missing))
            raise EntitlementError(
                f"{info.name!r} needs the {names} entitlement, which this build was not"
                f" granted (allow it with --allow {names.split(', ')[0]})"
            )
        if exec_op.devices:
            # checked now (nothing runs for a build that may not), and again on the
            # specs the devices are resolved from when the exec runs
            check_devices(exec_op.devices, entitlements, worker.devices, info.name)
            exec_op.device_grants = entitlements
        return exec_op
    if kind == "file":
        return FileOp(
            info=info,
            refs=worker.refs,
            steps=steps_from_pb(op.file),
            mount_dir=worker.mount_dir,
            n_inputs=n_inputs,
            payload=op.file.SerializeToString(deterministic=True),
            sources=tuple(_copy_source(vertices[str(i.digest)]) for i in node.inputs),
        )
    if kind == "merge":
        return MergeOp(
            info=info,
            refs=worker.refs,
            inputs=tuple(int(i.input) for i in op.merge.inputs),
            n_inputs=n_inputs,
        )
    if kind == "diff":
        return DiffOp(
            info=info,
            refs=worker.refs,
            lower=int(op.diff.lower.input),
            upper=int(op.diff.upper.input),
        )
    if kind == "build":
        raise InvalidDefinitionError("nested build ops are not supported")
    raise InvalidDefinitionError(f"unknown op kind {kind!r}")
