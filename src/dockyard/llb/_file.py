"""File ops: a chain (in general a small graph) of file actions run as one vertex.

A :class:`FileAction` is an immutable, unbound list of actions: ``mkdir(...)`` starts
one, and each method appends an action that works on the result of the previous one.
``State.file(action)`` binds the chain to a state (the filesystem the first action
changes, and the directory relative paths resolve against) and makes the op.

A copy can read from another state or from the result of another action chain bound to
a state with :meth:`FileAction.with_state`; such chains become part of the same op, and
their actions' results are addressed by index (``len(op.inputs) + action number``), which
is how one action reads an earlier action's output. Only the last action produces the
op's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from dockyard.core import UsageError

from . import _paths
from ._constraints import Constraints
from ._state import State
from ._vertex import MarshalContext, Output, Vertex

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = [
    "Chown",
    "CopyInput",
    "FileAction",
    "FileOp",
    "copy",
    "mkdir",
    "mkfile",
    "rm",
    "symlink",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Chown:
    """Owner for created or copied files: ``user`` and ``group`` each a numeric id or a
    name (names are looked up in the target filesystem's ``/etc/passwd``/``/etc/group``).
    """

    user: int | str
    group: int | str | None = None

    @classmethod
    def parse(cls, spec: str) -> Chown:
        """``user[:group]`` as in ``COPY --chown``: numbers are ids, ``root`` is 0. An
        empty part is id 0, as BuildKit's ``llb.WithUser`` marshals an empty name:
        ``:staff`` is ``0:staff`` and ``app:`` is ``app:0`` (not app's primary group)."""
        user, sep, group = spec.partition(":")
        return cls(
            _id_or_name(user) if user else 0,
            (_id_or_name(group) if group else 0) if sep else None,
        )

    def to_pb(self, message: pb.ChownOpt, base: int) -> None:
        _user_pb(message.user, self.user, base)
        if self.group is not None:
            _user_pb(message.group, self.group, base)


def _id_or_name(value: str) -> int | str:
    if value == "root":
        return 0
    try:
        number = int(value, 10)
    except ValueError:
        return value
    if not 0 <= number < 2**32:
        raise UsageError(f"invalid user or group id {value!r}")
    return number


def _user_pb(message: pb.UserOpt, value: int | str, base: int) -> None:
    if isinstance(value, str):
        message.byName.name = value
        message.byName.input = base
    else:
        message.byID = value


Owner = Chown | str | int | None


def _owner(value: Owner) -> Chown | None:
    if value is None or isinstance(value, Chown):
        return value
    if isinstance(value, int):
        return Chown(value, value)
    return Chown.parse(value)


def _timestamp(value: datetime | None) -> int:
    """Unix nanoseconds, -1 for "not set" (BuildKit's ``marshalTime``)."""
    if value is None:
        return -1
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1) * 1000


# -- actions ----------------------------------------------------------------------------


class _Mkdir(NamedTuple):
    path: str
    mode: int
    parents: bool
    owner: Chown | None
    created: datetime | None

    def to_pb(self, action: pb.FileAction, cwd: str, base: int) -> None:
        mkdir = action.mkdir
        mkdir.path = _paths.normalize(cwd, self.path)
        mkdir.mode = self.mode & 0o777
        mkdir.makeParents = self.parents
        if self.owner is not None:
            self.owner.to_pb(mkdir.owner, base)
        mkdir.timestamp = _timestamp(self.created)
        mkdir.SetInParent()


class _Mkfile(NamedTuple):
    path: str
    mode: int
    data: bytes
    owner: Chown | None
    created: datetime | None

    def to_pb(self, action: pb.FileAction, cwd: str, base: int) -> None:
        mkfile = action.mkfile
        mkfile.path = _paths.normalize(cwd, self.path)
        mkfile.mode = self.mode & 0o777
        mkfile.data = self.data
        if self.owner is not None:
            self.owner.to_pb(mkfile.owner, base)
        mkfile.timestamp = _timestamp(self.created)
        mkfile.SetInParent()


class _Rm(NamedTuple):
    path: str
    allow_not_found: bool
    allow_wildcard: bool

    def to_pb(self, action: pb.FileAction, cwd: str, base: int) -> None:
        rm = action.rm
        rm.path = _paths.normalize(cwd, self.path)
        rm.allowNotFound = self.allow_not_found
        rm.allowWildcard = self.allow_wildcard
        rm.SetInParent()


class _Symlink(NamedTuple):
    oldpath: str
    newpath: str
    owner: Chown | None
    created: datetime | None

    def to_pb(self, action: pb.FileAction, cwd: str, base: int) -> None:
        link = action.symlink
        link.oldpath = self.oldpath
        link.newpath = self.newpath
        if self.owner is not None:
            self.owner.to_pb(link.owner, base)
        link.timestamp = _timestamp(self.created)
        link.SetInParent()


class _Copy(NamedTuple):
    source: State | CopyInput
    src: str
    dest: str
    owner: Chown | None
    mode: int | str | None
    follow_symlinks: bool
    dir_contents_only: bool
    include_patterns: tuple[str, ...]
    exclude_patterns: tuple[str, ...]
    required_paths: tuple[str, ...]
    attempt_unpack: bool
    create_dest_path: bool
    allow_wildcard: bool
    allow_empty_wildcard: bool
    replace_existing: bool
    created: datetime | None

    def source_path(self) -> str:
        path = _paths.clean(self.src)
        directory = "/"
        if not path.startswith("/"):
            state = self.source if isinstance(self.source, State) else self.source.state
            directory = state.cwd
        return _paths.join(directory, path)

    def caps(self) -> tuple[str, ...]:
        caps: list[str] = []
        if self.include_patterns or self.exclude_patterns:
            caps.append("file.copy.includeexcludepatterns")
        if self.replace_existing:
            caps.append("file.copy.alwaysreplaceexistingdestpaths")
        return tuple(caps)

    def to_pb(self, action: pb.FileAction, cwd: str, base: int) -> None:
        copy = action.copy
        copy.src = self.source_path()
        copy.dest = _paths.normalize(cwd, self.dest, keep_slash=True)
        if self.owner is not None:
            self.owner.to_pb(copy.owner, base)
        copy.include_patterns.extend(self.include_patterns)
        copy.exclude_patterns.extend(self.exclude_patterns)
        copy.required_paths.extend(self.required_paths)
        copy.allowWildcard = self.allow_wildcard
        copy.allowEmptyWildcard = self.allow_empty_wildcard
        copy.followSymlink = self.follow_symlinks
        copy.dirCopyContents = self.dir_contents_only
        copy.attemptUnpackDockerCompatibility = self.attempt_unpack
        copy.createDestPath = self.create_dest_path
        copy.timestamp = _timestamp(self.created)
        copy.alwaysReplaceExistingDestPaths = self.replace_existing
        if isinstance(self.mode, str):
            copy.modeStr = self.mode
        elif self.mode is not None:
            copy.mode = self.mode
        else:
            copy.mode = -1
        copy.SetInParent()


_Action = _Mkdir | _Mkfile | _Rm | _Symlink | _Copy


class FileAction:
    """An immutable chain of file actions; each method returns a longer chain.

    Paths of ``mkdir``, ``mkfile``, ``rm`` and a copy's ``dest`` are relative to the
    working directory of the state the chain is applied to; a copy's ``src`` to that of
    the state it copies from. ``mode`` arguments are permission bits (``0o755``).
    """

    __slots__ = ("_action", "_prev")

    def __init__(self, action: _Action, prev: FileAction | None = None) -> None:
        self._action = action
        self._prev = prev

    def _then(self, action: FileAction) -> FileAction:
        return FileAction(action._action, self)

    def mkdir(
        self,
        path: str,
        mode: int = 0o755,
        *,
        parents: bool = False,
        owner: Owner = None,
        created: datetime | None = None,
    ) -> FileAction:
        """Create directory ``path`` (and missing parents with ``parents``)."""
        return self._then(mkdir(path, mode, parents=parents, owner=owner, created=created))

    def mkfile(
        self,
        path: str,
        mode: int,
        data: bytes | str,
        *,
        owner: Owner = None,
        created: datetime | None = None,
    ) -> FileAction:
        """Create file ``path`` with ``data`` (``str`` is written as UTF-8)."""
        return self._then(mkfile(path, mode, data, owner=owner, created=created))

    def rm(
        self, path: str, *, allow_not_found: bool = False, allow_wildcard: bool = False
    ) -> FileAction:
        """Remove ``path`` (recursively)."""
        return self._then(rm(path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard))

    def symlink(
        self, oldpath: str, newpath: str, *, owner: Owner = None, created: datetime | None = None
    ) -> FileAction:
        """Create a symbolic link at ``newpath`` whose target is ``oldpath`` (both taken
        as given, not resolved against the working directory)."""
        return self._then(symlink(oldpath, newpath, owner=owner, created=created))

    def copy(
        self,
        source: State | CopyInput,
        src: str,
        dest: str,
        *,
        owner: Owner = None,
        mode: int | str | None = None,
        follow_symlinks: bool = False,
        dir_contents_only: bool = False,
        include_patterns: tuple[str, ...] | list[str] = (),
        exclude_patterns: tuple[str, ...] | list[str] = (),
        required_paths: tuple[str, ...] | list[str] = (),
        attempt_unpack: bool = False,
        create_dest_path: bool = False,
        allow_wildcard: bool = False,
        allow_empty_wildcard: bool = False,
        replace_existing: bool = False,
        created: datetime | None = None,
    ) -> FileAction:
        """Copy ``src`` from ``source`` to ``dest``; see :func:`copy`."""
        return self._then(
            copy(
                source,
                src,
                dest,
                owner=owner,
                mode=mode,
                follow_symlinks=follow_symlinks,
                dir_contents_only=dir_contents_only,
                include_patterns=include_patterns,
                exclude_patterns=exclude_patterns,
                required_paths=required_paths,
                attempt_unpack=attempt_unpack,
                create_dest_path=create_dest_path,
                allow_wildcard=allow_wildcard,
                allow_empty_wildcard=allow_empty_wildcard,
                replace_existing=replace_existing,
                created=created,
            )
        )

    def with_state(self, state: State) -> CopyInput:
        """This chain applied to ``state``, usable as the source of a copy: the copy reads
        the chain's result inside the same file op, without a vertex of its own."""
        return CopyInput(self, state)

    def actions(self) -> tuple[_Action, ...]:
        """The actions of the chain, first to last."""
        out: list[_Action] = []
        node: FileAction | None = self
        while node is not None:
            out.append(node._action)
            node = node._prev
        return tuple(reversed(out))

    def __repr__(self) -> str:
        return f"<FileAction {' -> '.join(type(a).__name__.lstrip('_').lower() for a in self.actions())}>"


class CopyInput:
    """A file-action chain bound to a state (:meth:`FileAction.with_state`), used as the
    source of a copy."""

    __slots__ = ("_bound", "action", "state")

    def __init__(self, action: FileAction, state: State) -> None:
        self.action = action
        self.state = state
        self._bound: _Bound | None = None

    def bound(self) -> _Bound:
        # One binding per CopyInput, so copying twice from the same input reuses its
        # actions instead of repeating them (BuildKit binds the chain once, too).
        if self._bound is None:
            self._bound = _bind(self.action, self.state)
        return self._bound


def mkdir(
    path: str,
    mode: int = 0o755,
    *,
    parents: bool = False,
    owner: Owner = None,
    created: datetime | None = None,
) -> FileAction:
    """A chain that creates directory ``path`` (with missing parents if ``parents``)."""
    return FileAction(
        _Mkdir(path=path, mode=mode, parents=parents, owner=_owner(owner), created=created)
    )


def mkfile(
    path: str,
    mode: int,
    data: bytes | str,
    *,
    owner: Owner = None,
    created: datetime | None = None,
) -> FileAction:
    """A chain that creates file ``path`` containing ``data``."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return FileAction(_Mkfile(path=path, mode=mode, data=raw, owner=_owner(owner), created=created))


def rm(path: str, *, allow_not_found: bool = False, allow_wildcard: bool = False) -> FileAction:
    """A chain that removes ``path``; ``allow_wildcard`` lets it match a glob."""
    return FileAction(
        _Rm(path=path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard)
    )


def symlink(
    oldpath: str, newpath: str, *, owner: Owner = None, created: datetime | None = None
) -> FileAction:
    """A chain that creates a symbolic link at ``newpath`` pointing to ``oldpath``."""
    return FileAction(
        _Symlink(oldpath=oldpath, newpath=newpath, owner=_owner(owner), created=created)
    )


def copy(
    source: State | CopyInput,
    src: str,
    dest: str,
    *,
    owner: Owner = None,
    mode: int | str | None = None,
    follow_symlinks: bool = False,
    dir_contents_only: bool = False,
    include_patterns: tuple[str, ...] | list[str] = (),
    exclude_patterns: tuple[str, ...] | list[str] = (),
    required_paths: tuple[str, ...] | list[str] = (),
    attempt_unpack: bool = False,
    create_dest_path: bool = False,
    allow_wildcard: bool = False,
    allow_empty_wildcard: bool = False,
    replace_existing: bool = False,
    created: datetime | None = None,
) -> FileAction:
    """A chain that copies ``src`` of ``source`` to ``dest``.

    ``source`` is a state or a bound chain (:meth:`FileAction.with_state`). Options, as in
    BuildKit's ``CopyInfo``: ``owner`` (``Chown``, ``"user:group"`` or an id),
    ``mode`` (permission bits, or a string such as ``"u+x"`` or ``"0755"`` applied as
    ``chmod`` would; ``None`` keeps the source's), ``follow_symlinks`` (resolve ``src``
    if it is a link), ``dir_contents_only`` (copy a directory's contents, not the
    directory), ``include_patterns``/``exclude_patterns`` (filter what is copied),
    ``required_paths`` (paths that must exist in the source, ``COPY --parents``),
    ``attempt_unpack`` (extract archives, ``ADD``), ``create_dest_path`` (create missing
    parents of ``dest``), ``allow_wildcard``/``allow_empty_wildcard`` (``src`` is a glob
    that may match nothing), ``replace_existing`` (replace a destination of another type)
    and ``created`` (modification time).
    """
    if not isinstance(source, State | CopyInput):
        raise UsageError(
            f"copy: the source must be a State or FileAction.with_state(...), not {type(source).__name__}"
        )
    return FileAction(
        _Copy(
            source=source,
            src=src,
            dest=dest,
            owner=_owner(owner),
            mode=mode,
            follow_symlinks=follow_symlinks,
            dir_contents_only=dir_contents_only,
            include_patterns=tuple(include_patterns),
            exclude_patterns=tuple(exclude_patterns),
            required_paths=tuple(required_paths),
            attempt_unpack=attempt_unpack,
            create_dest_path=create_dest_path,
            allow_wildcard=allow_wildcard,
            allow_empty_wildcard=allow_empty_wildcard,
            replace_existing=replace_existing,
            created=created,
        )
    )


# -- binding and the vertex -------------------------------------------------------------


class _Bound:
    """One action of a chain bound to a state. Bound nodes are compared by identity."""

    __slots__ = ("action", "prev", "state")

    def __init__(self, action: _Action, prev: _Bound | None, state: State) -> None:
        self.action = action
        self.prev = prev
        self.state = state


def _bind(chain: FileAction, state: State) -> _Bound:
    bound: _Bound | None = None
    for action in chain.actions():
        bound = _Bound(action, bound, state)
    assert bound is not None
    return bound


class FileOp(Vertex):
    """The file-op vertex: a bound action chain. Built by :meth:`State.file`."""

    __slots__ = ("_last",)

    def __init__(self, last: _Bound, constraints: Constraints) -> None:
        super().__init__(constraints)
        self._last = last

    def inputs(self) -> tuple[Output, ...]:
        seen: list[Output] = []

        def add(output: Output | None) -> None:
            if output is not None and not any(o is output for o in seen):
                seen.append(output)

        visited: set[int] = set()
        stack: list[_Bound] = [self._last]
        # BuildKit's order: the action's own state, its copy source (recursively), then
        # the previous action.
        while stack:
            node = stack.pop()
            if id(node) in visited:
                continue
            visited.add(id(node))
            add(node.state.output)
            pending: list[_Bound] = []
            if isinstance(node.action, _Copy):
                if isinstance(node.action.source, State):
                    add(node.action.source.output)
                else:
                    pending.append(node.action.source.bound())
            if node.prev is not None:
                pending.append(node.prev)
            stack.extend(reversed(pending))
        return tuple(seen)

    def build(self, ctx: MarshalContext) -> tuple[pb.Op, Constraints]:
        caps = {"file.base"}
        for node in _walk(self._last):
            if isinstance(node.action, _Copy):
                caps.update(node.action.caps())
        op, merged = ctx.op_base(self.constraints.with_caps(*caps), with_platform=False)
        plan = _Plan(op, ctx)
        plan.add(self._last)
        n_inputs = len(op.inputs)
        file_op = op.file
        for i, step in enumerate(plan.steps):
            action = file_op.actions.add()
            action.input = step.index(step.input, step.input_rel, n_inputs)
            action.secondaryInput = step.index(step.input2, step.input2_rel, n_inputs)
            action.output = 0 if i == len(plan.steps) - 1 else -1
            step.node.action.to_pb(action, step.node.state.cwd, step.base)
        file_op.SetInParent()
        return op, merged


def _walk(last: _Bound) -> list[_Bound]:
    out: list[_Bound] = []
    visited: set[int] = set()
    stack = [last]
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        out.append(node)
        if node.prev is not None:
            stack.append(node.prev)
        if isinstance(node.action, _Copy) and not isinstance(node.action.source, State):
            stack.append(node.action.source.bound())
    return out


class _Step:
    __slots__ = ("base", "input", "input2", "input2_rel", "input_rel", "node", "target")

    def __init__(self, node: _Bound) -> None:
        self.node = node
        self.base = -1
        self.input = -1
        self.input2 = -1
        self.input_rel: _Step | None = None
        self.input2_rel: _Step | None = None
        self.target = -1

    @staticmethod
    def index(absolute: int, relative: _Step | None, n_inputs: int) -> int:
        return n_inputs + relative.target if relative is not None else absolute


class _Plan:
    """Assigns op inputs and action numbers (BuildKit's ``marshalState``): an action is
    numbered after the actions it reads, and each op input is added once."""

    def __init__(self, op: pb.Op, ctx: MarshalContext) -> None:
        self.op = op
        self.ctx = ctx
        self.steps: list[_Step] = []
        self._done: dict[int, _Step] = {}

    def _input(self, output: Output) -> int:
        inp = output.to_input(self.ctx)
        for i, existing in enumerate(self.op.inputs):
            if existing.digest == inp.digest and existing.index == inp.index:
                return i
        self.op.inputs.append(inp)
        return len(self.op.inputs) - 1

    def add(self, node: _Bound) -> _Step:
        """Number ``node`` and everything it reads, in BuildKit's order: the previous
        action first, then this action's base input, then its copy source."""
        # An explicit stack instead of recursion: chains can be long, and copies nest.
        # Phase 0: visit the previous action; 1: take inputs, visit the copy chain;
        # 2: number the action.
        stack: list[tuple[_Bound, int, _Step | None]] = [(node, 0, None)]
        while stack:
            current, phase, step = stack.pop()
            if phase == 0:
                if id(current) in self._done:
                    continue
                stack.append((current, 1, None))
                if current.prev is not None:
                    stack.append((current.prev, 0, None))
            elif phase == 1:
                step = self._start(current)
                chain = _copy_chain(current.action)
                stack.append((current, 2, step))
                if chain is not None:
                    stack.append((chain, 0, None))
            else:
                assert step is not None
                chain = _copy_chain(current.action)
                if chain is not None:
                    step.input2_rel = self._done[id(chain)]
                step.target = len(self.steps)
                self._done[id(current)] = step
                self.steps.append(step)
        return self._done[id(node)]

    def _start(self, node: _Bound) -> _Step:
        step = _Step(node)
        if node.state.output is not None:
            step.base = self._input(node.state.output)
        if node.prev is None:
            step.input = step.base
        else:
            step.input_rel = self._done[id(node.prev)]
        action = node.action
        if (
            isinstance(action, _Copy)
            and isinstance(action.source, State)
            and action.source.output is not None
        ):
            step.input2 = self._input(action.source.output)
        return step


def _copy_chain(action: _Action) -> _Bound | None:
    if isinstance(action, _Copy) and isinstance(action.source, CopyInput):
        return action.source.bound()
    return None


def new_file_op(state: State, action: FileAction, constraints: Constraints) -> State:
    if not isinstance(action, FileAction):
        raise UsageError(f"file: expected a FileAction, not {type(action).__name__}")
    vertex = FileOp(_bind(action, state), constraints)
    return state.with_output(Output(vertex, 0))
