"""Merge and diff ops: layer filesystems on top of each other, or take the difference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dockyard.core import UsageError

from ._constraints import Constraints, options
from ._state import State
from ._vertex import MarshalContext, Output, Vertex

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = ["DiffOp", "MergeOp", "diff", "merge"]


class MergeOp(Vertex):
    """Its inputs stacked in order, the first at the bottom (like image layers)."""

    __slots__ = ("_inputs",)

    def __init__(self, inputs: Sequence[Output], constraints: Constraints) -> None:
        super().__init__(constraints)
        self._inputs = tuple(inputs)

    def inputs(self) -> tuple[Output, ...]:
        return self._inputs

    def validate(self) -> None:
        if len(self._inputs) < 2:
            raise UsageError("merge needs at least two inputs")

    def build(self, ctx: MarshalContext) -> tuple[pb.Op, Constraints]:
        op, merged = ctx.op_base(self.constraints, with_platform=False)
        # One op input per merge input, duplicates included: the order is the meaning.
        for output in self._inputs:
            op.merge.inputs.add(input=len(op.inputs))
            op.inputs.append(output.to_input(ctx))
        return op, merged


class DiffOp(Vertex):
    """The changes that turn ``lower`` into ``upper`` (``None``: an empty filesystem)."""

    __slots__ = ("_lower", "_upper")

    def __init__(
        self, lower: Output | None, upper: Output | None, constraints: Constraints
    ) -> None:
        super().__init__(constraints)
        self._lower = lower
        self._upper = upper

    def inputs(self) -> tuple[Output, ...]:
        return tuple(o for o in (self._lower, self._upper) if o is not None)

    def build(self, ctx: MarshalContext) -> tuple[pb.Op, Constraints]:
        op, merged = ctx.op_base(self.constraints, with_platform=False)
        diff = op.diff
        for side, output in ((diff.lower, self._lower), (diff.upper, self._upper)):
            side.SetInParent()
            if output is None:
                side.input = -1
            else:
                side.input = len(op.inputs)
                op.inputs.append(output.to_input(ctx))
        return op, merged


def merge(
    states: Sequence[State], *, name: str | None = None, constraints: Constraints | None = None
) -> State:
    """``states`` layered in order, the first at the bottom. Empty states are skipped; a
    merge of one state is that state. The result starts with default settings (like
    BuildKit's ``llb.Merge``)."""
    inputs = [s for s in states if s.output is not None]
    if not inputs:
        return State()
    if len(inputs) == 1:
        return inputs[0]
    c = options(constraints, name).with_caps("mergeop")
    vertex = MergeOp([s.output for s in inputs if s.output is not None], c)
    return State(Output(vertex, 0))


def diff(
    lower: State, upper: State, *, name: str | None = None, constraints: Constraints | None = None
) -> State:
    """The changes from ``lower`` to ``upper``, as a filesystem that :func:`merge` can put
    on another base. Keeps ``lower``'s settings. A diff from an empty ``lower`` is
    ``upper`` itself."""
    if lower.output is None:
        return State() if upper.output is None else upper
    c = options(constraints, name).with_caps("diffop")
    return lower.with_output(Output(DiffOp(lower.output, upper.output, c), 0))
