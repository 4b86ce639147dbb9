"""The Dockerfile frontend's subrequests, answered from the parsed file alone (nothing is
resolved, pulled or built): BuildKit's ``frontend.targets`` (:func:`list_targets`, every
stage) and ``frontend.outline`` (:func:`outline_target`, the parameters one target
takes). ``docker buildx build --call=targets|outline`` asks for them.

Each result renders as BuildKit's JSON document (:meth:`TargetList.to_json`,
:meth:`Outline.to_json`: ``targets.List`` and ``outline.Outline``, the field names and
``omitempty`` rules of the Go structs, indented by two spaces) and as the text tables
buildx prints (``to_text``).

Which build arguments an outline lists, following BuildKit's ``dockerfile2llb``: the
global ``ARG`` s a needed stage's ``FROM`` uses (its base name or ``--platform``, and
the global ``ARG`` s their defaults use), and every ``ARG`` declared inside the target
and the stages it needs (its base stage, ``COPY --from`` and ``RUN --mount=from=``
stages); an ``ARG NAME`` without default in a stage stands for the global one. Each
name is listed once (the target's side first), ordered by line. Values are the
``--build-arg`` override or the expanded default. Secrets and SSH ids come from the
``RUN --mount=type=secret|ssh`` of those stages.
"""

from __future__ import annotations

import base64
import bisect
import posixpath
from collections import ChainMap
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.core import FrontendError, Platform, SourceLocation, UsageError

from ._convert_args import platform_args
from ._dockerfile import Dockerfile, Stage
from ._gojson import dumps, location_json, put
from ._instructions import (
    ArgInstruction,
    CopyInstruction,
    EnvInstruction,
    Expander,
    Instruction,
    RunInstruction,
)
from ._mounts import MountError, MountType, RunMount, parse_mount
from ._shell import ShellLex, expansion_budget, expansion_exhausted
from ._text import suggest

__all__ = [
    "SUBREQUEST_VERSION",
    "Outline",
    "OutlineArg",
    "OutlineMount",
    "Target",
    "TargetList",
    "list_targets",
    "outline_target",
]

#: The version both subrequests report (BuildKit's ``targets``/``outline`` 1.0.0).
SUBREQUEST_VERSION = "1.0.0"


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One stage as ``--call=targets`` lists it: ``name`` (``""``: unnamed), the
    ``description`` of its ``# name description`` comment, its ``base`` and
    ``platform`` as written (variables not expanded), whether it is the ``default``
    (last) stage, and its ``FROM`` line."""

    name: str = ""
    description: str = ""
    base: str = ""
    platform: str = ""
    default: bool = False
    location: SourceLocation | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        put(out, "name", self.name)
        put(out, "default", self.default)
        put(out, "description", self.description)
        put(out, "base", self.base)
        put(out, "platform", self.platform)
        put(out, "location", location_json(self.location))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetList:
    """Every stage of a Dockerfile, in order, and the Dockerfile itself (``source``)."""

    targets: tuple[Target, ...] = ()
    source: bytes = b""

    def to_json(self) -> str:
        """BuildKit's ``targets.List`` document."""
        return dumps(
            {
                "targets": [t.as_json() for t in self.targets],
                "sources": [base64.b64encode(self.source).decode("ascii")],
            }
        )

    def to_text(self) -> str:
        """buildx's table: ``TARGET``/``DESCRIPTION``, the last stage marked
        ``(default)``."""
        rows = [("TARGET", "DESCRIPTION")]
        for target in self.targets:
            name = target.name
            if target.default:
                name = f"{name} (default)" if name else "(default)"
            rows.append((name, target.description))
        return _table(rows, padding=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlineArg:
    """A build argument of an outline: its ``value`` (``--build-arg`` or the expanded
    default, ``""``: none), ``description`` (the ``# NAME description`` comment above
    its ``ARG``) and the ``ARG`` that declares it."""

    name: str
    value: str = ""
    description: str = ""
    location: SourceLocation | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        put(out, "description", self.description)
        put(out, "value", self.value)
        put(out, "location", location_json(self.location))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlineMount:
    """A secret or SSH id a ``RUN --mount`` uses; ``required`` as the mount says."""

    name: str
    required: bool = False
    location: SourceLocation | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        put(out, "required", self.required)
        put(out, "location", location_json(self.location))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Outline:
    """What building one target takes (see the module docstring)."""

    name: str = ""
    description: str = ""
    args: tuple[OutlineArg, ...] = ()
    secrets: tuple[OutlineMount, ...] = ()
    ssh: tuple[OutlineMount, ...] = ()
    source: bytes = b""

    def to_json(self) -> str:
        """BuildKit's ``outline.Outline`` document."""
        out: dict[str, Any] = {}
        put(out, "name", self.name)
        put(out, "description", self.description)
        put(out, "args", [a.as_json() for a in self.args])
        put(out, "secrets", [s.as_json() for s in self.secrets])
        put(out, "ssh", [s.as_json() for s in self.ssh])
        put(out, "sources", [base64.b64encode(self.source).decode("ascii")])
        return dumps(out)

    def to_text(self) -> str:
        """buildx's tables: the target, its build arguments, secrets and SSH ids, each
        followed by an empty line (a table with no rows is left out)."""
        parts: list[str] = []
        if self.name or self.description:
            rows = [("TARGET:", self.name or "(default)")]
            if self.description:
                rows.append(("DESCRIPTION:", self.description))
            parts.append(_table(rows, padding=1) + "\n")
        if self.args:
            rows3 = [("BUILD ARG", "VALUE", "DESCRIPTION")]
            rows3 += [(a.name, a.value, a.description) for a in self.args]
            parts.append(_table(rows3, padding=3) + "\n")
        for title, mounts in (("SECRET", self.secrets), ("SSH", self.ssh)):
            if mounts:
                rows = [(title, "REQUIRED")]
                rows += [(m.name, "true" if m.required else "") for m in mounts]
                parts.append(_table(rows, padding=3) + "\n")
        return "".join(parts)


# -- targets -------------------------------------------------------------------------------


def list_targets(dockerfile: Dockerfile) -> TargetList:
    """Every stage of ``dockerfile`` in file order (the last one is the default)."""
    last = len(dockerfile.stages) - 1
    return TargetList(
        targets=tuple(
            Target(
                name=stage.name or "",
                description=stage.comment,
                base=stage.base,
                platform=stage.platform or "",
                default=stage.index == last,
                location=stage.location,
            )
            for stage in dockerfile.stages
        ),
        source=dockerfile.ast.source,
    )


# -- outline -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Capture:
    """One stage's part of an outline (BuildKit's ``outlineCapture``): the arguments
    it knows (global ones, then its own ``ARG`` s), those it uses, its mounts, and the
    stages it reads."""

    known: MutableMapping[str, _ArgInfo]
    used: dict[str, None] = field(default_factory=dict)
    secrets: dict[str, OutlineMount] = field(default_factory=dict)
    ssh: dict[str, OutlineMount] = field(default_factory=dict)
    base: Stage | None = None
    deps: dict[int, Stage] = field(default_factory=dict)  # by index, in order


@dataclass(frozen=True, slots=True)
class _ArgInfo:
    arg: OutlineArg
    deps: tuple[str, ...] = ()


def outline_target(
    dockerfile: Dockerfile,
    *,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    build_platform: Platform,
    target_platform: Platform | None = None,
) -> Outline:
    """The outline of ``target`` (a stage name or index; default: the last stage).

    Raises :class:`~dockyard.core.UsageError` for a target that does not exist and
    :class:`~dockyard.core.FrontendError` (at its line) for a ``FROM`` or ``ARG`` that
    cannot be expanded, or once substitutions produce more than a build's conversion
    may (:func:`~dockyard.dockerfile.expansion_budget`)."""
    with expansion_budget():
        return _outline(dockerfile, target, dict(build_args or {}), build_platform, target_platform)


def _outline(
    dockerfile: Dockerfile,
    target: str | None,
    build_args: dict[str, str],
    build_platform: Platform,
    target_platform: Platform | None,
) -> Outline:
    stage = _find_target(dockerfile, target)
    lex = ShellLex(dockerfile.escape)
    comments = {node.start_line: node.comments for node in dockerfile.ast.nodes}
    env = platform_args(
        build_platform,
        target_platform or build_platform,
        target or dockerfile.stages[-1].name or "",
        build_args,
    )
    known: dict[str, _ArgInfo] = {}
    for instruction in dockerfile.meta_args:
        for definition in instruction.args:
            value = build_args.get(definition.key)
            deps: tuple[str, ...] = ()
            if value is None and definition.value is not None:
                result = _expand(lex, instruction, definition.value, env)
                value, deps = result.value, tuple(sorted(result.matched))
            if value is not None:
                env[definition.key] = value
            known[definition.key] = _ArgInfo(
                _arg(definition.key, value, instruction, comments), deps
            )
    by_name: dict[str, Stage] = {}
    named: dict[str, list[int]] = {}  # the indices of the stages of each name
    for candidate in dockerfile.stages:
        if candidate.name is not None:
            by_name[candidate.name] = candidate
            named.setdefault(candidate.name, []).append(candidate.index)
    captures: dict[int, _Capture] = {}
    todo = [stage]
    order: list[Stage] = []
    while todo:  # the target, then what it needs (depth first, as BuildKit walks them)
        current = todo.pop()
        if current.index in captures:
            continue
        capture = _capture(
            current, dockerfile, lex, env, known, build_args, by_name, named, comments
        )
        captures[current.index] = capture
        order.append(current)
        todo.extend(reversed([s for s in (capture.base, *capture.deps.values()) if s is not None]))
    args: dict[str, OutlineArg] = {}
    secrets: dict[str, OutlineMount] = {}
    ssh: dict[str, OutlineMount] = {}
    for current in order:
        capture = captures[current.index]
        for name in _with_deps(capture.used, capture.known):
            info = capture.known.get(name)
            if info is not None and name not in args:
                args[name] = info.arg
        for name, mount in capture.secrets.items():
            secrets.setdefault(name, mount)
        for name, mount in capture.ssh.items():
            ssh.setdefault(name, mount)
    return Outline(
        name=stage.name or "",
        description=stage.comment,
        args=tuple(sorted(args.values(), key=lambda a: _line(a.location))),
        secrets=tuple(sorted(secrets.values(), key=lambda m: _line(m.location))),
        ssh=tuple(sorted(ssh.values(), key=lambda m: _line(m.location))),
        source=dockerfile.ast.source,
    )


def _find_target(dockerfile: Dockerfile, target: str | None) -> Stage:
    if not target:
        return dockerfile.stages[-1]
    if target.isdigit() and int(target) < len(dockerfile.stages):
        return dockerfile.stages[int(target)]
    wanted = target.lower()
    for stage in reversed(dockerfile.stages):
        if stage.name == wanted:
            return stage
    names = [s.name for s in dockerfile.stages if s.name]
    hint = suggest(target, names, case_sensitive=False)
    extra = f" (did you mean {hint}?)" if hint else ""
    raise UsageError(f"target stage {target!r} could not be found{extra}")


def _capture(
    stage: Stage,
    dockerfile: Dockerfile,
    lex: ShellLex,
    global_env: dict[str, str],
    known: dict[str, _ArgInfo],
    build_args: Mapping[str, str],
    by_name: Mapping[str, Stage],
    named: Mapping[str, list[int]],
    comments: Mapping[int, tuple[str, ...]],
) -> _Capture:
    # the stage's own ARGs over the global ones, without a copy of those per stage
    capture = _Capture(known=ChainMap({}, known))
    base = _expand(lex, stage.from_, stage.base, global_env)
    used = set(base.matched)
    if stage.platform:
        used |= _expand(lex, stage.from_, stage.platform, global_env).matched
    capture.used = dict.fromkeys(sorted(used))
    # the last stage of that name above this one
    indices = named.get(base.value, [])
    position = bisect.bisect_left(indices, stage.index)
    capture.base = dockerfile.stages[indices[position - 1]] if position else None
    env: dict[str, str] = {}  # the stage's own ARG and ENV values (image ENV unknown)
    # what the stage's words see: its own values over the global ones (a merged copy
    # per instruction was quadratic)
    merged = ChainMap(env, global_env)
    for instruction in stage.commands:
        if isinstance(instruction, ArgInstruction):
            for definition in instruction.args:
                value = build_args.get(definition.key)
                inherited = (
                    value is None and definition.value is None and definition.key in global_env
                )
                if inherited:
                    value = global_env[definition.key]
                elif value is None and definition.value is not None:
                    value = _expand(lex, instruction, definition.value, merged).value
                if not inherited:
                    capture.known[definition.key] = _ArgInfo(
                        _arg(definition.key, value, instruction, comments)
                    )
                capture.used.setdefault(definition.key)
                if value is not None:
                    env[definition.key] = value
        elif isinstance(instruction, EnvInstruction):
            expander = Expander(merged, escape=dockerfile.escape)
            try:
                expanded = instruction.expand(expander)
            except FrontendError as exc:
                if expansion_exhausted():
                    raise instruction.error(exc.message) from None
                continue  # the build reports it; an outline does not need the value
            for pair in expanded.env:
                env[pair.key] = pair.value
        elif isinstance(instruction, CopyInstruction) and instruction.from_stage:
            _depend(capture, _stage_ref(dockerfile, by_name, instruction.from_stage))
        elif isinstance(instruction, RunInstruction):
            for mount in _mounts(instruction, merged, dockerfile.escape):
                if mount.source_stage:
                    _depend(capture, _stage_ref(dockerfile, by_name, mount.source_stage))
                if mount.type is MountType.SECRET:
                    name = mount.id or mount.source or posixpath.basename(mount.target or "")
                    capture.secrets[name] = OutlineMount(
                        name=name, required=mount.required, location=instruction.location
                    )
                elif mount.type is MountType.SSH:
                    name = mount.id or "default"
                    capture.ssh[name] = OutlineMount(
                        name=name, required=mount.required, location=instruction.location
                    )
    return capture


def _mounts(
    instruction: RunInstruction, env: Mapping[str, str], escape: str
) -> tuple[RunMount, ...]:
    if instruction.mounts is not None:
        return instruction.mounts
    expander = Expander(env, escape=escape)
    try:
        return tuple(parse_mount(spec, expander.word) for spec in instruction.mount_specs)
    except (MountError, FrontendError) as exc:
        if expansion_exhausted():
            message = exc.message if isinstance(exc, FrontendError) else str(exc)
            raise instruction.error(message) from None
        return ()  # the build reports it; an outline lists what it can read


def _stage_ref(dockerfile: Dockerfile, by_name: Mapping[str, Stage], ref: str) -> Stage | None:
    if ref.isdigit():
        index = int(ref)
        return dockerfile.stages[index] if index < len(dockerfile.stages) else None
    return by_name.get(ref.lower())  # else an image or a build context


def _depend(capture: _Capture, stage: Stage | None) -> None:
    if stage is not None:
        capture.deps.setdefault(stage.index, stage)


def _with_deps(used: Mapping[str, None], known: Mapping[str, _ArgInfo]) -> list[str]:
    """``used`` and, transitively, the arguments their defaults use (BuildKit's
    ``markAllUsed``)."""
    out: dict[str, None] = {}
    todo: list[str] = list(used)[::-1]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = None
        info = known.get(name)
        if info is not None:
            todo.extend(reversed(info.deps))
    return list(out)


def _expand(
    lex: ShellLex, instruction: Instruction, word: str, env: Mapping[str, str]
) -> _Expansion:
    try:
        result = lex.process(word, env)
    except FrontendError as exc:
        raise instruction.error(exc.message) from None
    return _Expansion(result.value, result.matched)


@dataclass(frozen=True, slots=True)
class _Expansion:
    value: str
    matched: frozenset[str]


def _arg(
    key: str,
    value: str | None,
    instruction: ArgInstruction,
    comments: Mapping[int, tuple[str, ...]],
) -> OutlineArg:
    description = ""
    for line in comments.get(instruction.line, ()):
        if line.startswith(key + " "):
            description = line[len(key) + 1 :]
            break
    return OutlineArg(
        name=key, value=value or "", description=description, location=instruction.location
    )


def _line(location: SourceLocation | None) -> int:
    return location.ranges[0].start if location is not None and location.ranges else 0


# -- rendering -----------------------------------------------------------------------------


def _table(rows: Sequence[tuple[str, ...]], *, padding: int) -> str:
    """Rows as Go's ``tabwriter`` aligns tab-separated cells: every column but the last
    as wide as its widest cell plus ``padding``; each row ends with a newline."""
    widths = [max(len(row[i]) for row in rows) + padding for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("".join(cells) + row[-1] + "\n")
    return "".join(lines)
