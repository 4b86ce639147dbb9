"""A serialized LLB graph: loading with validation, lookup, serialization and dumps.

``Definition.load(data)`` accepts BuildKit's ``pb.Definition`` bytes and checks everything
the rest of Dockyard relies on, so that code walking a loaded Definition never meets a
dangling reference:

- the bytes, and each op's bytes, parse (corrupt or truncated input is rejected);
- the last op is the terminal op (no operation, exactly one input: the result), and every
  other op has an operation;
- every input names an op of the Definition by digest, and an output that op has;
- indexes inside ops are in range: exec mount inputs and outputs, file-action inputs,
  merge/diff/build inputs; outputs are numbered 0..n-1 without duplicates;
- file actions do not read each other in a cycle, and neither do ops;
- source locations point at source files that exist.

Each problem raises :class:`InvalidDefinitionError` naming the op by digest. An empty
Definition (no ops at all) is valid: it is what an empty filesystem (``scratch``)
marshals to.

Op digests are sha256 of each op's bytes exactly as received; a loaded Definition keeps
its bytes (``to_bytes()`` returns them unchanged), so digests survive a round trip even
when another serializer orders fields differently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.core import (
    Digest,
    InvalidDefinitionError,
    SourceLocation,
    SourceRange,
    VertexRef,
)

from ._constraints import CUSTOM_NAME

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = ["Definition", "OpInput", "OpNode"]

#: Kinds of op, the names of ``pb.Op``'s ``op`` oneof; ``""`` is the terminal op.
OP_KINDS = ("source", "exec", "file", "build", "merge", "diff")


@dataclass(frozen=True, slots=True)
class OpInput:
    """An edge: output ``index`` of the op with ``digest``."""

    digest: Digest
    index: int


class OpNode:
    """One op of a loaded :class:`Definition`.

    ``op`` is the parsed message (treat it as read-only), ``data`` the exact bytes its
    ``digest`` was computed from, ``kind`` one of ``source``, ``exec``, ``file``,
    ``build``, ``merge``, ``diff``, or ``""`` for the terminal op. ``inputs`` are the
    edges in ``op.inputs`` order, ``outputs`` the number of outputs other ops may read,
    ``metadata`` the op's ``OpMetadata`` (empty if the Definition has none for it) and
    ``locations`` where in the build description the op comes from.
    """

    __slots__ = ("data", "digest", "inputs", "kind", "locations", "metadata", "op", "outputs")

    def __init__(
        self,
        *,
        digest: Digest,
        data: bytes,
        op: pb.Op,
        metadata: pb.OpMetadata,
        outputs: int,
    ) -> None:
        self.digest = digest
        self.data = data
        self.op = op
        self.kind: str = op.WhichOneof("op") or ""
        self.inputs = tuple(OpInput(Digest(i.digest), i.index) for i in op.inputs)
        self.metadata = metadata
        self.outputs = outputs
        self.locations: tuple[SourceLocation, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.kind == ""

    @property
    def custom_name(self) -> str | None:
        name = self.metadata.description.get(CUSTOM_NAME)
        return None if name is None else str(name)

    @property
    def name(self) -> str:
        """The name to show for this op: its custom name, else a short description."""
        custom = self.custom_name
        if custom:
            return custom
        return describe(self.op)

    def ref(self) -> VertexRef:
        return VertexRef(digest=self.digest, name=self.name)

    def __repr__(self) -> str:
        return f"<OpNode {self.kind or 'terminal'} {self.digest.short()} {self.name!r}>"


def describe(op: pb.Op) -> str:
    """A one-line description of ``op`` (what BuildKit shows when an op has no name)."""
    kind = op.WhichOneof("op")
    if kind == "source":
        return op.source.identifier
    if kind == "exec":
        return " ".join(op.exec.meta.args)
    if kind == "file":
        return "; ".join(_describe_action(a) for a in op.file.actions)
    if kind in ("merge", "diff", "build"):
        return str(kind)
    return "result"


def _describe_action(action: pb.FileAction) -> str:
    kind = action.WhichOneof("action")
    if kind == "copy":
        return f"copy {action.copy.src} {action.copy.dest}"
    if kind == "mkfile":
        return f"mkfile {action.mkfile.path}"
    if kind == "mkdir":
        return f"mkdir {action.mkdir.path}"
    if kind == "rm":
        return f"rm {action.rm.path}"
    if kind == "symlink":
        return f"symlink {action.symlink.newpath} -> {action.symlink.oldpath}"
    return "unknown file action"


class Definition:
    """A validated LLB graph, immutable.

    Iterating yields the :class:`OpNode` s in Definition order (inputs before the ops
    that use them when made by ``dockyard.llb`` or BuildKit; the terminal op last).
    ``definition[digest]`` looks an op up; :attr:`head` is the result (``None`` for an
    empty Definition). Build one with ``State.marshal()`` or :meth:`load`.
    """

    __slots__ = ("_by_digest", "_data", "_message", "_nodes")

    _message: pb.Definition
    _nodes: tuple[OpNode, ...]
    _by_digest: dict[Digest, OpNode]
    _data: bytes | None

    def __init__(self) -> None:
        raise TypeError("use Definition.load(), Definition.empty() or State.marshal()")

    # -- construction ---------------------------------------------------------------

    @classmethod
    def _new(cls, message: pb.Definition, nodes: list[OpNode], data: bytes | None) -> Definition:
        self = object.__new__(cls)
        self._message = message
        self._nodes = tuple(nodes)
        self._by_digest = {n.digest: n for n in nodes}
        self._data = data
        return self

    @classmethod
    def empty(cls) -> Definition:
        """The Definition of an empty filesystem: no ops."""
        from dockyard.api import ops as pb

        return cls._new(pb.Definition(), [], None)

    @classmethod
    def load(cls, data: bytes) -> Definition:
        """Parse and validate serialized ``pb.Definition`` bytes (see the module doc)."""
        from google.protobuf.message import DecodeError

        from dockyard.api import ops as pb

        message = pb.Definition()
        try:
            message.ParseFromString(bytes(data))
        except DecodeError as exc:
            raise InvalidDefinitionError(
                f"corrupt or truncated Definition ({len(data)} bytes): {exc}"
            ) from exc
        return cls._from_message(message, bytes(data))

    @classmethod
    def from_pb(cls, message: pb.Definition) -> Definition:
        """Validate a parsed ``pb.Definition`` (it is copied)."""
        from dockyard.api import ops as pb

        copy = pb.Definition()
        copy.CopyFrom(message)
        return cls._from_message(copy, None)

    @classmethod
    def _from_message(cls, message: pb.Definition, data: bytes | None) -> Definition:
        from google.protobuf.message import DecodeError

        from dockyard.api import ops as pb

        ops: list[tuple[bytes, pb.Op]] = []
        for position, raw in enumerate(getattr(message, "def")):
            op = pb.Op()
            try:
                op.ParseFromString(raw)
            except DecodeError as exc:
                digest = Digest.from_bytes(raw)
                raise InvalidDefinitionError(
                    f"op {digest} (#{position}): corrupt or truncated op: {exc}",
                    vertex=VertexRef(digest=digest, name=f"op #{position}"),
                ) from exc
            ops.append((raw, op))
        return cls._validated(message, ops, data)

    @classmethod
    def _build(
        cls,
        ops: list[tuple[bytes, pb.Op]],
        metadata: Mapping[str, pb.OpMetadata],
        source: pb.Source | None,
    ) -> Definition:
        """Assemble and validate a Definition from serialized ops (``State.marshal``)."""
        from dockyard.api import ops as pb

        message = pb.Definition()
        getattr(message, "def").extend(raw for raw, _ in ops)
        for digest, md in metadata.items():
            message.metadata[digest].CopyFrom(md)
        if source is not None:
            message.Source.CopyFrom(source)
        return cls._validated(message, ops, None)

    @classmethod
    def _validated(
        cls, message: pb.Definition, ops: list[tuple[bytes, pb.Op]], data: bytes | None
    ) -> Definition:
        from ._validate import validate

        nodes = validate(message, ops)
        return cls._new(message, nodes, data)

    # -- reading ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[OpNode]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, digest: object) -> bool:
        return digest in self._by_digest

    def __getitem__(self, digest: str) -> OpNode:
        try:
            return self._by_digest[Digest(digest)]
        except KeyError:
            raise KeyError(f"no op {digest} in the Definition") from None

    def get(self, digest: str) -> OpNode | None:
        return self._by_digest.get(Digest(digest))

    @property
    def ops(self) -> tuple[OpNode, ...]:
        """All ops in Definition order, the terminal op last."""
        return self._nodes

    @property
    def terminal(self) -> OpNode | None:
        """The terminal op; ``None`` for an empty Definition."""
        return self._nodes[-1] if self._nodes else None

    @property
    def head(self) -> OpInput | None:
        """The result: the terminal op's input; ``None`` for an empty Definition."""
        terminal = self.terminal
        return terminal.inputs[0] if terminal is not None else None

    @property
    def is_empty(self) -> bool:
        return not self._nodes

    def walk(self) -> list[OpNode]:
        """The ops the result depends on, each after all of its inputs, the terminal op
        last; ops nothing depends on are left out. Unlike iteration, this does not rely on
        the Definition listing inputs first (BuildKit's client does; nothing enforces it).
        """
        terminal = self.terminal
        if terminal is None:
            return []
        order: list[OpNode] = []
        done: set[str] = set()
        stack: list[tuple[OpNode, int]] = [(terminal, 0)]
        while stack:
            node, next_input = stack.pop()
            if next_input < len(node.inputs):
                stack.append((node, next_input + 1))
                target = self._by_digest[node.inputs[next_input].digest]
                if target.digest not in done:
                    done.add(target.digest)
                    stack.append((target, 0))
            else:
                order.append(node)
        return order

    def metadata(self, digest: str) -> pb.OpMetadata:
        """The ``OpMetadata`` of op ``digest`` (empty if none was given)."""
        return self[digest].metadata

    def locations(self, digest: str) -> tuple[SourceLocation, ...]:
        """Where in the build description op ``digest`` comes from."""
        return self[digest].locations

    # -- serializing ------------------------------------------------------------------

    def to_pb(self) -> pb.Definition:
        """A copy of the ``pb.Definition`` message."""
        from dockyard.api import ops as pb

        copy = pb.Definition()
        copy.CopyFrom(self._message)
        return copy

    def to_bytes(self) -> bytes:
        """The serialized Definition: the bytes it was loaded from, or a deterministic
        serialization (map entries sorted) when it was built."""
        if self._data is None:
            from ._wire import serialize

            self._data = serialize(self._message)
        return self._data

    @property
    def digest(self) -> Digest:
        """sha256 of :meth:`to_bytes`."""
        return Digest.from_bytes(self.to_bytes())

    def dump(self) -> list[dict[str, Any]]:
        """One record per op in Definition order, like ``buildctl debug dump-llb``:
        ``Digest``, ``Op`` (protobuf JSON with the proto's field names) and
        ``OpMetadata``."""
        from google.protobuf.json_format import MessageToDict

        return [
            {
                "Op": MessageToDict(node.op, preserving_proto_field_name=True),
                "Digest": str(node.digest),
                "OpMetadata": MessageToDict(node.metadata, preserving_proto_field_name=True),
            }
            for node in self._nodes
        ]

    def dump_json(self) -> str:
        """:meth:`dump` as JSON lines (one object per line, keys sorted)."""
        return "".join(
            json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n" for record in self.dump()
        )

    def __repr__(self) -> str:
        head = self.head
        return f"<Definition {len(self._nodes)} ops head={head.digest.short() if head else None}>"


def source_location(
    info: pb.SourceInfo, ranges: list[pb.Range], data: bytes | None
) -> SourceLocation:
    """A location in ``info``'s file, whose text ``data`` (``info.data or None``) the
    caller reads once for all its locations: each read of a protobuf bytes field is a
    new copy, and a location per op each holding its own copy of a 360 KB Dockerfile
    took 3 GB."""
    return SourceLocation(
        filename=info.filename,
        ranges=tuple(
            SourceRange(r.start.line, r.end.line, r.start.character, r.end.character)
            for r in ranges
        ),
        data=data,
    )
