"""The checks behind ``Definition.load`` (see ``_definition``'s module docstring)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dockyard.core import Digest, InvalidDefinitionError, VertexRef

from ._definition import OpNode, source_location

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = ["validate"]


class _Problem(Exception):
    """A problem inside one op, turned into an error naming that op."""


def validate(message: pb.Definition, ops: list[tuple[bytes, pb.Op]]) -> list[OpNode]:
    """The checked nodes of ``ops`` (parsed ``message.def``), or InvalidDefinitionError."""
    from dockyard.api import ops as pbmod

    nodes: list[OpNode] = []
    by_digest: dict[Digest, OpNode] = {}
    empty_md = pbmod.OpMetadata()
    for position, (raw, op) in enumerate(ops):
        digest = Digest.from_bytes(raw)
        md = message.metadata.get(digest)
        node = OpNode(
            digest=digest,
            data=raw,
            op=op,
            metadata=md if md is not None else empty_md,
            outputs=0,
        )
        last = position == len(ops) - 1
        if digest in by_digest:
            raise _error(node, position, "the op appears twice in the Definition")
        try:
            node.outputs = _check_op(op, last=last)
        except _Problem as exc:
            label = node.kind or ("terminal" if last else "no operation")
            raise _error(node, position, str(exc), label=label) from None
        nodes.append(node)
        by_digest[digest] = node

    for position, node in enumerate(nodes):
        for i, edge in enumerate(node.inputs):
            try:
                Digest.parse(node.op.inputs[i].digest)  # the wire string, not yet validated
            except ValueError:
                raise _error(
                    node, position, f"input {i} has an invalid digest {edge.digest!r}"
                ) from None
            target = by_digest.get(edge.digest)
            if target is None:
                raise _error(
                    node,
                    position,
                    f"input {i} refers to op {edge.digest}, which is not in the Definition",
                )
            if target.is_terminal:
                raise _error(node, position, f"input {i} refers to the terminal op {edge.digest}")
            if not 0 <= edge.index < target.outputs:
                raise _error(
                    node,
                    position,
                    f"input {i} asks for output {edge.index} of op {edge.digest}, "
                    f"which has {_count(target.outputs, 'output')}",
                )
    _check_acyclic(nodes, by_digest)
    _attach_locations(message, nodes, by_digest)
    return nodes


def _count(n: int, noun: str) -> str:
    """``"no inputs"``, ``"1 input"``, ``"2 inputs"``."""
    if n == 0:
        return f"no {noun}s"
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _a(word: str) -> str:
    """``word`` with its indefinite article (``"an exec"``, ``"a file"``)."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _error(
    node: OpNode, position: int, problem: str, *, label: str | None = None
) -> InvalidDefinitionError:
    kind = label or node.kind or "terminal"
    try:
        name = node.name
    except Exception:  # a name must never hide the real problem
        name = f"op #{position}"
    return InvalidDefinitionError(
        f"invalid Definition: op {node.digest} (#{position}, {kind}): {problem}",
        vertex=VertexRef(digest=node.digest, name=name),
    )


def _in_range(value: int, limit: int, what: str, *, allow_empty: bool = True) -> None:
    low = -1 if allow_empty else 0
    if not low <= value < limit:
        raise _Problem(f"{what} is {value}, but the op has {_count(limit, 'input')}")


def _check_op(op: pb.Op, *, last: bool) -> int:
    """Check the inside of ``op``; return how many outputs it has."""
    kind = op.WhichOneof("op")
    n_inputs = len(op.inputs)
    if last:
        if kind is not None or n_inputs != 1:
            raise _Problem(
                "the last op must be the terminal op: no operation and exactly one input "
                f"(it has {_a(kind) + ' operation' if kind else 'no operation'} and "
                f"{_count(n_inputs, 'input')})"
            )
        return 0
    if kind is None:
        raise _Problem("the op has no operation (only the last, terminal op may be empty)")
    if kind == "exec":
        return _check_exec(op.exec, n_inputs)
    if kind == "file":
        return _check_file(op.file, n_inputs)
    if kind == "merge":
        if not op.merge.inputs:
            raise _Problem("a merge needs inputs")
        for i, m in enumerate(op.merge.inputs):
            _in_range(m.input, n_inputs, f"merge input {i}", allow_empty=False)
    elif kind == "diff":
        _in_range(op.diff.lower.input, n_inputs, "diff lower input")
        _in_range(op.diff.upper.input, n_inputs, "diff upper input")
    elif kind == "build":
        _in_range(op.build.builder, n_inputs, "build builder input")
        for key, build_input in op.build.inputs.items():
            _in_range(build_input.input, n_inputs, f"build input {key!r}", allow_empty=False)
    elif kind == "source" and not op.source.identifier:
        raise _Problem("a source needs an identifier")
    return 1


def _check_exec(exec_op: pb.ExecOp, n_inputs: int) -> int:
    from dockyard.api import ops as pb

    if not exec_op.meta.args:
        raise _Problem("an exec needs arguments")
    if not any(m.dest == pb.ROOT_MOUNT for m in exec_op.mounts):
        raise _Problem("an exec needs a root mount (/)")
    outputs: list[int] = []
    for m in exec_op.mounts:
        _in_range(m.input, n_inputs, f"mount {m.dest} input")
        if m.mountType == pb.MountType.BIND and m.output != pb.SKIP_OUTPUT:
            outputs.append(m.output)
    _check_outputs(outputs, "mount")
    return len(outputs)


def _check_outputs(outputs: Iterable[int], what: str) -> None:
    numbers = sorted(outputs)
    if numbers != list(range(len(numbers))):
        raise _Problem(
            f"{what} outputs must be numbered 0..n-1 without gaps or repeats, got {numbers}"
        )


def _check_file(file_op: pb.FileOp, n_inputs: int) -> int:
    actions = file_op.actions
    if not actions:
        raise _Problem("a file op needs actions")
    limit = n_inputs + len(actions)
    outputs: list[int] = []
    for i, action in enumerate(actions):
        kind = action.WhichOneof("action")
        if kind is None:
            raise _Problem(f"file action {i} has no action")
        _in_file_range(action.input, limit, n_inputs, f"file action {i} input")
        _in_file_range(action.secondaryInput, limit, n_inputs, f"file action {i} secondary input")
        for owner_input in _named_owner_inputs(action):
            _in_file_range(owner_input, limit, n_inputs, f"file action {i} owner input")
        if action.output != -1:
            outputs.append(action.output)
    _check_outputs(outputs, "file action")
    # Actions read op inputs (index < n_inputs) or other actions' results; those
    # references must not loop.
    state = [0] * len(actions)  # 0 new, 1 on the current path, 2 done
    for start in range(len(actions)):
        if state[start]:
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            index, next_ref = stack.pop()
            refs = [r - n_inputs for r in _action_refs(actions[index]) if r >= n_inputs]
            if next_ref < len(refs):
                stack.append((index, next_ref + 1))
                target = refs[next_ref]
                if state[target] == 1:
                    raise _Problem(f"file actions {target} and {index} read each other in a cycle")
                if state[target] == 0:
                    state[target] = 1
                    stack.append((target, 0))
            else:
                state[index] = 2
    return len(outputs)


def _in_file_range(value: int, limit: int, n_inputs: int, what: str) -> None:
    if not -1 <= value < limit:
        raise _Problem(
            f"{what} is {value}, but the op has {_count(n_inputs, 'input')} "
            f"and {_count(limit - n_inputs, 'action')}"
        )


def _named_owner_inputs(action: pb.FileAction) -> list[int]:
    kind = action.WhichOneof("action")
    if kind is None or kind == "rm":
        return []
    body = getattr(action, kind)
    if not body.HasField("owner"):
        return []
    out = []
    for user in (body.owner.user, body.owner.group):
        if user.WhichOneof("user") == "byName":
            out.append(user.byName.input)
    return out


def _action_refs(action: pb.FileAction) -> list[int]:
    return [action.input, action.secondaryInput, *_named_owner_inputs(action)]


def _check_acyclic(nodes: list[OpNode], by_digest: dict[Digest, OpNode]) -> None:
    """Ops may not depend on themselves. With digests computed from the bytes this cannot
    happen by accident, but the check is cheap and keeps graph walks safe."""
    state: dict[Digest, int] = {}
    position = {n.digest: i for i, n in enumerate(nodes)}
    for node in nodes:
        if node.digest in state:
            continue
        stack: list[tuple[OpNode, int]] = [(node, 0)]
        state[node.digest] = 1
        while stack:
            current, next_input = stack.pop()
            if next_input < len(current.inputs):
                stack.append((current, next_input + 1))
                target = by_digest[current.inputs[next_input].digest]
                mark = state.get(target.digest, 0)
                if mark == 1:
                    raise _error(
                        target,
                        position[target.digest],
                        f"ops depend on each other in a cycle through {current.digest}",
                    )
                if mark == 0:
                    state[target.digest] = 1
                    stack.append((target, 0))
            else:
                state[current.digest] = 2


def _attach_locations(
    message: pb.Definition, nodes: list[OpNode], by_digest: dict[Digest, OpNode]
) -> None:
    if not message.HasField("Source"):
        return
    infos = message.Source.infos
    # each file's text once, shared by all its locations
    texts: dict[int, bytes | None] = {}
    position = {n.digest: i for i, n in enumerate(nodes)}
    for digest, locations in message.Source.locations.items():
        node = by_digest.get(Digest(digest))
        if node is None:
            continue
        found = []
        for location in locations.locations:
            if not 0 <= location.sourceIndex < len(infos):
                raise _error(
                    node,
                    position[node.digest],
                    f"a source location refers to source file {location.sourceIndex}, "
                    f"but the Definition has {_count(len(infos), 'source file')}",
                )
            index = location.sourceIndex
            if index not in texts:
                texts[index] = infos[index].data or None
            found.append(source_location(infos[index], list(location.ranges), texts[index]))
        node.locations = tuple(found)
