"""The file op: a small graph of file actions run as one vertex.

Action inputs index a combined space (``pb.FileOp``): ``0..n-1`` are the op's inputs,
``n+i`` is the result of action ``i``, ``-1`` an empty tree. Each action changes a
writable ref made from its ``input``; a linear chain (each result read once, by the next
action) works on one writable ref and commits once at the end, as BuildKit does. An
action result that is read twice, read as a copy source, or is an op output is
committed and read from there.

Cache map: the digest covers the actions (not the inputs' digests). An op input that is
read only as a copy source (or to look up owner names) is a *content* dependency: its
key part is the checksum of exactly the paths the copies read, so that a change
elsewhere in a build context does not invalidate the copy. Inputs that an action
changes are plain dependencies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.core import InternalError, InvalidDefinitionError, NotFoundError, PathEscapeError
from dockyard.solver import CacheMap, Dep, Result, VertexContext

from . import _fsops
from ._actions import (
    CopyAction,
    FileActionValue,
    MkdirAction,
    MkfileAction,
    RmAction,
    SymlinkAction,
)
from ._common import OpInfo, cache_digest, local_dir, run_blocking
from ._copy import copy, link_deferred
from ._glob import contains_wildcards
from ._owner import Owner, resolve_owner
from .types import (
    ContentSelector,
    CopyHistory,
    ImmutableRef,
    MutableRef,
    PreviousCopy,
    RefStore,
)

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = ["FileOp", "FileStep"]

_ETC_SELECTORS = (
    ContentSelector(path="/etc/passwd", follow_links=True),
    ContentSelector(path="/etc/group", follow_links=True),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileStep:
    """One action and where it reads and writes (indexes in the combined space)."""

    action: FileActionValue
    input: int
    secondary: int = -1
    output: int = -1


def steps_from_pb(file_op: pb.FileOp) -> tuple[FileStep, ...]:
    """The actions of ``file_op`` as values; raises :class:`InvalidDefinitionError`
    naming the action."""
    from ._actions import parse_action

    steps: list[FileStep] = []
    for i, a in enumerate(file_op.actions):
        try:
            action = parse_action(a)
        except (InvalidDefinitionError, PathEscapeError) as exc:
            raise type(exc)(f"file action {i}: {exc.message}") from exc
        steps.append(
            FileStep(
                action=action,
                input=int(a.input),
                secondary=int(a.secondaryInput),
                output=int(a.output),
            )
        )
    return tuple(steps)


def _owner_inputs(action: FileActionValue) -> tuple[int, ...]:
    owner = getattr(action, "owner", None)
    return owner.lookup_inputs() if owner is not None else ()


class FileOp:
    """:class:`dockyard.solver.Op` of an LLB file op."""

    def __init__(
        self,
        *,
        info: OpInfo,
        refs: RefStore,
        steps: tuple[FileStep, ...],
        mount_dir: Path | None = None,
        n_inputs: int,
        payload: bytes,
        sources: tuple[str, ...] = (),
    ) -> None:
        self.info = info
        self.sources = sources  # how errors name each input ("the build context")
        self.refs = refs
        self.mount_dir = mount_dir
        self.steps = steps
        self.n_inputs = n_inputs
        self._digest = cache_digest("file", hashlib.sha256(payload).hexdigest(), None)
        self.n_outputs = max((s.output for s in steps), default=-1) + 1
        self._deps = self._make_deps()

    # -- cache map ------------------------------------------------------------------

    def _make_deps(self) -> tuple[Dep, ...]:
        modified: set[int] = set()
        selectors: dict[int, list[ContentSelector]] = {}
        for step in self.steps:
            modified.add(step.input)
            action = step.action
            if isinstance(action, CopyAction) and 0 <= step.secondary < self.n_inputs:
                selectors.setdefault(step.secondary, []).append(
                    ContentSelector(
                        path=action.src,
                        follow_links=action.follow_symlinks or action.unpack,
                        wildcard=action.allow_wildcard,
                        include_patterns=action.include_patterns,
                        exclude_patterns=action.exclude_patterns,
                    )
                )
            for index in _owner_inputs(action):
                if 0 <= index < self.n_inputs:
                    selectors.setdefault(index, []).extend(_ETC_SELECTORS)
        deps: list[Dep] = []
        for index in range(self.n_inputs):
            sels = selectors.get(index)
            if index in modified or not sels:
                deps.append(Dep())
                continue
            unique = tuple(dict.fromkeys(sels))
            encoded = json.dumps(
                [s.to_json() for s in unique], sort_keys=True, separators=(",", ":")
            )
            deps.append(
                Dep(
                    selector="sha256:" + hashlib.sha256(encoded.encode()).hexdigest(),
                    compute_digest=self._content_digest(unique, self._source_name(index)),
                )
            )
        return tuple(deps)

    def _source_name(self, index: int) -> str:
        return self.sources[index] if index < len(self.sources) else "the copy source"

    def _content_digest(self, selectors: tuple[ContentSelector, ...], where: str) -> Any:
        refs = self.refs
        info = self.info

        async def compute(result: Result, ctx: VertexContext) -> str:
            ref = _immutable(result)
            sums: list[str] = []
            async with info.errors():
                for sel in selectors:
                    try:
                        sums.append(await refs.checksum(ref, sel))
                    except NotFoundError as exc:
                        if sel in _ETC_SELECTORS:
                            sums.append("missing")  # a lookup there will fail at exec
                            continue
                        how = " (symlinks resolved inside it)" if sel.follow_links else ""
                        raise NotFoundError(
                            f"{sel.path!r} not found in {where}{how}",
                            vertex=info.ref(),
                        ) from exc
            record = [[sel.to_json(), digest] for sel, digest in zip(selectors, sums, strict=True)]
            data = json.dumps(record, sort_keys=True, separators=(",", ":"))
            return "sha256:" + hashlib.sha256(data.encode()).hexdigest()

        return compute

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        return CacheMap(digest=self._digest, deps=self._deps)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    # -- exec -----------------------------------------------------------------------

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        if len(inputs) != self.n_inputs:
            raise InternalError(f"file op got {len(inputs)} inputs, expected {self.n_inputs}")
        refs = [_immutable(r) for r in inputs]
        run = _Run(self, refs, ctx)
        async with self.info.errors():
            try:
                history = self._history(refs)
                if history is None:
                    return await run.outputs()
                base, source, action = history
                store = self.refs
                assert isinstance(store, CopyHistory)
                async with store.previous_copy(self._digest, base, source, action.src) as prev:
                    run.previous = prev
                    results = await run.outputs()
                await store.remember_copy(
                    self._digest, base=base, source=source, result=_immutable(results[0])
                )
                return results
            finally:
                await run.cleanup()

    def _history(
        self, inputs: list[ImmutableRef]
    ) -> tuple[ImmutableRef | None, ImmutableRef, CopyAction] | None:
        """``(base, source, action)`` when this op is one plain copy whose earlier result
        can be reused file by file (see :class:`CopyHistory`)."""
        if not isinstance(self.refs, CopyHistory) or len(self.steps) != 1:
            return None
        step = self.steps[0]
        action = step.action
        if (
            not isinstance(action, CopyAction)
            or step.output != 0
            or action.unpack
            or (action.allow_wildcard and contains_wildcards(action.src))
            or not 0 <= step.secondary < self.n_inputs
            or step.input >= self.n_inputs
        ):
            return None
        base = inputs[step.input] if step.input >= 0 else None
        return base, inputs[step.secondary], action


def _immutable(result: Result) -> ImmutableRef:
    if not isinstance(result, ImmutableRef):
        raise InternalError(f"file op input {result!r} is not a snapshot ref")
    return result


class _Run:
    """One execution of a file op: action results, who reads them, and cleanup."""

    def __init__(self, op: FileOp, inputs: list[ImmutableRef], ctx: VertexContext) -> None:
        self.op = op
        self.inputs = inputs
        self.ctx = ctx
        n = op.n_inputs
        self.readers = [0] * len(op.steps)
        for i, step in enumerate(op.steps):
            for index in _reads(step):
                if index >= n:
                    self.readers[index - n] += 1
            if step.output >= 0:
                self.readers[i] += 1
        self.mutables: dict[int, MutableRef] = {}
        self.committed: dict[int, ImmutableRef] = {}
        self.returned: set[int] = set()
        self.previous: PreviousCopy | None = None  # of the op's one copy, if known
        # earlier files the op's copies linked into their destinations (see copy())
        self.link_claims: dict[tuple[int, int], object] = {}

    def order(self) -> list[int]:
        """Actions in an order where each comes after those it reads (Definitions are
        validated to have no cycles)."""
        n = self.op.n_inputs
        steps = self.op.steps
        done: set[int] = set()
        out: list[int] = []
        for first in range(len(steps)):
            stack = [(first, False)]
            while stack:
                i, expanded = stack.pop()
                if i in done:
                    continue
                if expanded:
                    done.add(i)
                    out.append(i)
                    continue
                stack.append((i, True))
                stack.extend((index - n, False) for index in _reads(steps[i]) if index >= n)
        return out

    async def outputs(self) -> list[Result]:
        op = self.op
        for index in self.order():
            await self.run(index)
        by_output = {step.output: i for i, step in enumerate(op.steps) if step.output >= 0}
        results: list[Result] = []
        actions: list[int] = []
        for out in range(op.n_outputs):
            action = by_output.get(out)
            if action is None:
                raise InternalError(f"file op has no action for output {out}")
            ref = await self.readable(op.n_inputs + action)
            assert ref is not None
            results.append(ref)
            actions.append(action)
        self.returned.update(actions)  # only now: on failure cleanup releases them all
        return results

    async def cleanup(self) -> None:
        for mutable in self.mutables.values():
            with contextlib.suppress(Exception):
                await mutable.release()
        self.mutables.clear()
        for i, ref in self.committed.items():
            if i not in self.returned:
                with contextlib.suppress(Exception):
                    await ref.release()
        self.committed.clear()

    # -- results by index

    async def readable(self, index: int) -> ImmutableRef | None:
        """The tree at ``index`` for reading (committing an action result if needed)."""
        n = self.op.n_inputs
        if index < 0:
            return None
        if index < n:
            return self.inputs[index]
        action = index - n
        ref = self.committed.get(action)
        if ref is None:
            mutable = self.mutables.pop(action)
            ref = await mutable.commit()
            self.committed[action] = ref
        return ref

    async def writable(self, index: int) -> MutableRef:
        """A writable tree starting as ``index``; an action result read only here is
        taken over without a commit."""
        n = self.op.n_inputs
        if index >= n and self.readers[index - n] == 1 and index - n in self.mutables:
            return self.mutables.pop(index - n)
        parent = await self.readable(index)
        return await self.op.refs.new_mutable(parent, description=self.op.info.name)

    async def run(self, index: int) -> None:
        step = self.op.steps[index]
        target = await self.writable(step.input)
        try:
            source: ImmutableRef | None = None
            if isinstance(step.action, CopyAction):
                source = await self.readable(step.secondary)
            owner_roots: dict[int, ImmutableRef | None] = {}
            for i in _owner_inputs(step.action):
                if i != step.input:
                    owner_roots[i] = await self.readable(i)
            await self._apply(step, target, source, owner_roots)
        except BaseException:
            await target.release()
            raise
        self.mutables[index] = target

    async def _apply(
        self,
        step: FileStep,
        target: MutableRef,
        source: ImmutableRef | None,
        owner_roots: dict[int, ImmutableRef | None],
    ) -> None:
        target_mounts = await target.mounts()
        source_mounts = await source.mounts() if source is not None else None
        owner_mounts = {
            i: (await ref.mounts() if ref is not None else None) for i, ref in owner_roots.items()
        }
        action = step.action
        previous = self.previous if isinstance(action, CopyAction) else None
        store = self.op.refs
        source_layer: Path | None = None
        if isinstance(action, CopyAction) and source is not None and isinstance(store, CopyHistory):
            source_layer = await store.layer_path(source)  # its files may be linked
        deferred: list[tuple[str, str]] | None = None
        layer: Path | None = None
        if previous is not None or source_layer is not None:
            assert isinstance(store, CopyHistory)
            own, is_layer = await store.own_path(target)
            if is_layer:  # the copy writes through a mount: links come after it
                layer, deferred = own, []

        def work(stop: threading.Event) -> None:
            with contextlib.ExitStack() as stack:
                dest = stack.enter_context(local_dir(target_mounts, parent=self.op.mount_dir))
                roots: dict[int, Path | None] = {step.input: dest}
                for i, mounts in owner_mounts.items():
                    roots[i] = (
                        stack.enter_context(local_dir(mounts, parent=self.op.mount_dir))
                        if mounts is not None
                        else None
                    )
                owner = _resolve(action, roots)
                if isinstance(action, CopyAction):
                    if source_mounts is None:
                        src = Path(
                            stack.enter_context(
                                tempfile.TemporaryDirectory(prefix="dockyard-empty-")
                            )
                        )
                    else:
                        src = stack.enter_context(
                            local_dir(source_mounts, parent=self.op.mount_dir)
                        )
                    copy(
                        src,
                        dest,
                        action,
                        owner,
                        cancelled=stop,
                        previous=previous,
                        source_layer=source_layer,
                        deferred=deferred,
                        claims=self.link_claims,
                    )
                elif isinstance(action, MkdirAction):
                    _fsops.mkdir(dest, action, owner)
                elif isinstance(action, MkfileAction):
                    _fsops.mkfile(dest, action, owner)
                elif isinstance(action, RmAction):
                    _fsops.rm(dest, action)
                elif isinstance(action, SymlinkAction):
                    _fsops.symlink(dest, action, owner)
                else:  # pragma: no cover - parse_action returns only these
                    raise InternalError(f"unknown file action {action!r}")

        await run_blocking(work)
        if deferred:
            assert layer is not None
            links = deferred
            await run_blocking(lambda stop: link_deferred(layer, links))


def _reads(step: FileStep) -> list[int]:
    """Every index ``step`` reads: its input, a copy's source, owner lookups elsewhere."""
    reads = [step.input]
    if isinstance(step.action, CopyAction):
        reads.append(step.secondary)
    reads.extend(i for i in _owner_inputs(step.action) if i != step.input)
    return [i for i in reads if i >= 0]


def _resolve(action: FileActionValue, roots: dict[int, Path | None]) -> Owner | None:
    owner = getattr(action, "owner", None)
    if owner is None:
        return None
    return resolve_owner(owner, lambda i: roots.get(i))
