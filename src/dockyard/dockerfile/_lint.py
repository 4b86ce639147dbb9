"""Build checks: BuildKit's Dockerfile lint rules, as a pure function over a parsed file.

:func:`lint` walks the stages like the converter will (ARG scoping, ENV, SHELL, WORKDIR
and stage inheritance) without building anything and returns :class:`BuildWarning`
values named and worded like BuildKit's (``FromAsCasing: 'as' and 'FROM' keywords'
casing do not match (line 1)``), with the rule's URL and the source location.

``# check=skip=<rules>|all;error=true`` is honoured through :class:`CheckConfig`: skipped
rules are not reported, and with ``error=true`` :meth:`LintReport.error` gives the
:class:`FrontendError` that must stop the build.

``CopyIgnoredFile`` needs the build context's ignore patterns (``ignore``): a ``COPY`` or
``ADD`` source from the main context that they exclude is reported.

``UndefinedVar`` needs the environment of base images, which only the converter knows.
Either pass ``base_env`` (then :func:`lint` checks it for stages whose base is known),
or let the converter report it while expanding: :meth:`Linter.undefined_vars` takes the
names an :class:`Expander` could not resolve.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dockyard.core import FrontendError, NotFoundError, Platform
from dockyard.core.pathmatch import PatternError, PatternMatcher

from ._directives import CheckConfig
from ._dockerfile import Dockerfile, Stage
from ._instructions import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    Expander,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    RunInstruction,
    ShellInstruction,
    WorkdirInstruction,
)
from ._mounts import MountError, parse_mount
from ._rules import NON_ENV_ARGS, PLATFORM_ARGS, Linter, LintReport
from ._shell import ShellLex, expansion_budget
from ._text import suggest

__all__ = ["BaseImage", "lint"]


_PLATFORM_PLACEHOLDERS = {
    "BUILDPLATFORM": "linux/amd64",
    "BUILDOS": "linux",
    "BUILDOSVERSION": "",
    "BUILDARCH": "amd64",
    "BUILDVARIANT": "",
    "TARGETPLATFORM": "linux/amd64",
    "TARGETOS": "linux",
    "TARGETOSVERSION": "",
    "TARGETARCH": "amd64",
    "TARGETVARIANT": "",
    "TARGETSTAGE": "",
}
_RESERVED_STAGE_NAMES = frozenset({"context", "scratch"})
_SECRET_RE = re.compile(
    r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)",
    re.IGNORECASE,
)
_SECRET_ALLOW_RE = re.compile(r"(?:_|^)(?:public)(?:_|$)", re.IGNORECASE)
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseImage:
    """What the checks need to know about an external base image."""

    env: Mapping[str, str]
    shell: tuple[str, ...] = ()
    #: ``(actual, expected)`` platforms when the image resolved for the stage is not
    #: for the platform the stage builds for (``InvalidBaseImagePlatform``)
    platform_mismatch: tuple[str, str] | None = None


def lint(
    dockerfile: Dockerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    config: CheckConfig | None = None,
    base_env: Callable[[str], BaseImage | None] | None = None,
    ignore: Iterable[str] = (),
) -> LintReport:
    """Run the build checks over ``dockerfile``.

    ``build_args`` are the ``--build-arg`` values; ``target`` limits the stage checks to
    the stages that target needs (``None``: all stages, as ``--check`` does; for a
    default build pass the last stage's index). ``config`` defaults to the file's
    ``# check=`` directive. ``base_env`` maps an external base image reference (as
    written after expansion) to what is known about it, enabling ``UndefinedVar`` and
    exact ``JSONArgsRecommended`` for stages built on it. ``ignore`` are the build
    context's ``.dockerignore`` patterns (already validated), enabling ``CopyIgnoredFile``.
    """
    linter = Linter(config if config is not None else dockerfile.check)
    checker = _Checker(dockerfile, linter, dict(build_args or {}), target, base_env)
    patterns = tuple(ignore)
    if patterns:
        try:
            checker.ignore = PatternMatcher(patterns)
        except PatternError:
            pass  # the context's own load reports a bad pattern
    with expansion_budget():
        checker.run()
    return linter.report()


class _StageState:
    __slots__ = ("build_args", "env", "env_known", "shell", "workdir_set")

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.env_known = False
        self.build_args: dict[str, None] = {}  # the names declared, in order
        self.shell: tuple[str, ...] = ()
        self.workdir_set = False

    def copy(self) -> _StageState:
        other = _StageState()
        other.env = dict(self.env)
        other.env_known = self.env_known
        other.build_args = dict(self.build_args)
        other.shell = self.shell
        other.workdir_set = self.workdir_set
        return other


class _Checker:
    def __init__(
        self,
        dockerfile: Dockerfile,
        linter: Linter,
        build_args: dict[str, str],
        target: str | None,
        base_env: Callable[[str], BaseImage | None] | None,
    ) -> None:
        self.df = dockerfile
        self.linter = linter
        self.build_args = build_args
        self.target = target
        self.base_env = base_env
        self.ignore: PatternMatcher | None = None
        self.lex = ShellLex(dockerfile.escape)
        self.meta_keys = [d.key for arg in dockerfile.meta_args for d in arg.args]
        self.global_args = self._meta_args(build_args)

    # -- helpers --------------------------------------------------------------------
    def _meta_args(self, build_args: Mapping[str, str]) -> dict[str, str]:
        # Stand-in values: the checks need plausible values, not the real platform.
        env = dict(_PLATFORM_PLACEHOLDERS)
        stages = self.df.stages
        env["TARGETSTAGE"] = self.target or stages[-1].name or ""
        for name in PLATFORM_ARGS:
            if name in build_args:
                env[name] = build_args[name]
        for arg in self.df.meta_args:
            for definition in arg.args:
                if definition.key in build_args:
                    env[definition.key] = build_args[definition.key]
                elif definition.value is not None:
                    try:
                        env[definition.key] = self.lex.process(definition.value, env).value
                    except FrontendError:
                        env[definition.key] = ""
        return env

    def _expand_base(self, stage: Stage) -> str | None:
        try:
            return self.lex.process(stage.base, self.global_args).value
        except FrontendError:
            return None

    # -- the checks -----------------------------------------------------------------
    def run(self) -> None:
        df = self.df
        for warning in df.ast.warnings:
            self.linter.run(
                "NoEmptyContinuation", "Empty continuation line", df.ast.location(warning.line)
            )
        for node_owner in self._all_instructions():
            self._parse_time_checks(node_owner)
        self._stage_names()
        self._casing()
        self._from_args()
        self._stages()

    def _all_instructions(self) -> list[Instruction]:
        out: list[Instruction] = list(self.df.meta_args)
        for stage in self.df.stages:
            out.append(stage.from_)
            out.extend(stage.commands)
        out.sort(key=lambda i: i.line)
        return out

    def _parse_time_checks(self, instruction: Instruction) -> None:
        if isinstance(instruction, FromInstruction):
            written = instruction.stage_name_written
            if written is not None and written != written.lower():
                self.linter.run(
                    "StageNameCasing",
                    f"Stage name '{written}' should be lowercase",
                    instruction.location,
                )
            as_word = instruction.as_word
            if as_word is not None:
                name = instruction.name
                from_lower = name == name.lower()
                from_upper = name == name.upper()
                if (from_lower and as_word != as_word.lower()) or (
                    not from_lower and from_upper and as_word != as_word.upper()
                ):
                    self.linter.run(
                        "FromAsCasing",
                        f"'{as_word}' and '{name}' keywords' casing do not match",
                        instruction.location,
                    )
            if instruction.stage_name:
                self._description("FROM", [instruction.stage_name], instruction)
        elif isinstance(instruction, ArgInstruction):
            self._description("ARG", [d.key for d in instruction.args], instruction)
        elif isinstance(instruction, MaintainerInstruction):
            self.linter.run(
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label",
                instruction.location,
            )
        elif isinstance(instruction, ExposeInstruction):
            for port in instruction.ports:
                _, sep, proto = port.partition("/")
                if sep and proto != proto.lower():
                    self.linter.run(
                        "ExposeProtoCasing",
                        f"Defined protocol '{port}' in EXPOSE instruction should be lowercase",
                        instruction.location,
                    )

    def _description(
        self, keyword: str, keys: list[str], instruction: FromInstruction | ArgInstruction
    ) -> None:
        """``InvalidDefinitionDescription``: the comment right above a named ``FROM`` or
        an ``ARG`` is its description, so it must start with the name it describes."""
        comment = instruction.prev_comment
        if not comment or not keys or comment.split(" ")[0] in keys:
            return
        example = keys[0] if len(keys) == 1 else "<arg_key>"
        self.linter.run(
            "InvalidDefinitionDescription",
            f"Comment for {keyword} should follow the format: `# {example} <description>`",
            instruction.location,
        )

    def _stage_names(self) -> None:
        seen: set[str] = set()
        for stage in self.df.stages:
            name = stage.name
            if not name:
                continue
            if name in _RESERVED_STAGE_NAMES:
                self.linter.run(
                    "ReservedStageName",
                    f'Stage name should not use the same name as reserved stage "{name}"',
                    stage.location,
                )
            if name in seen:
                self.linter.run(
                    "DuplicateStageName",
                    f'Duplicate stage name "{name}", stage names should be unique',
                    stage.location,
                )
            seen.add(name)

    def _casing(self) -> None:
        names: list[Instruction] = []
        for stage in self.df.stages:
            names.append(stage.from_)
            names.extend(stage.commands)
        lower = upper = 0
        for instruction in names:
            name = instruction.name
            if name == name.lower():
                lower += 1
            elif name == name.upper():
                upper += 1
        majority_lower = lower > upper
        for instruction in names:
            name = instruction.name
            wanted = ""
            if majority_lower and name != name.lower():
                wanted = "lowercase"
            elif not majority_lower and name != name.upper():
                wanted = "uppercase"
            if wanted:
                self.linter.run(
                    "ConsistentInstructionCasing",
                    f"Command '{name}' should match the case of the command majority ({wanted})",
                    instruction.location,
                )

    def _from_args(self) -> None:
        known = set(self.meta_keys) | set(self.global_args)
        options = sorted(known)
        defaults = self._meta_args({})
        for stage in self.df.stages:
            words = [stage.base] + ([stage.platform] if stage.platform else [])
            for word in words:
                try:
                    result = self.lex.process(word, self.global_args)
                except FrontendError:
                    continue
                for name in sorted(result.unmatched - known):
                    hint = suggest(name, options, case_sensitive=True)
                    message = f"FROM argument '{name}' is not declared"
                    if hint:
                        message += f" (did you mean {hint}?)"
                    self.linter.run("UndefinedArgInFrom", message, stage.location)
            platform = stage.platform
            if platform:
                self._platform_checks(stage, platform)
            try:
                with_defaults = self.lex.process(stage.base, defaults).value
            except FrontendError:
                continue
            if not _valid_reference(with_defaults):
                self.linter.run(
                    "InvalidDefaultArgInFrom",
                    f"Default value for ARG {stage.base} results in empty or invalid base image name",
                    stage.location,
                )

    def _platform_checks(self, stage: Stage, platform: str) -> None:
        try:
            result = self.lex.process(platform, self.global_args)
        except FrontendError:
            return
        if (
            result.matched == frozenset({"TARGETPLATFORM"})
            and not result.unmatched
            and result.value == self.global_args["TARGETPLATFORM"]
        ):
            self.linter.run(
                "RedundantTargetPlatform",
                f"Setting platform to predefined {platform} in FROM is redundant as this is the "
                "default behavior",
                stage.location,
            )
        if result.matched or result.unmatched:
            return
        try:
            parsed = Platform.parse(result.value)
        except ValueError:
            return
        name = stage.name or ""
        if parsed.os in name or parsed.architecture in name:
            return
        self.linter.run(
            "FromPlatformFlagConstDisallowed",
            f'FROM --platform flag should not use constant value "{result.value}"',
            stage.location,
        )

    # -- per-stage simulation ---------------------------------------------------------
    def _reachable(self) -> set[int]:
        stages = self.df.stages
        if self.target is None:
            return set(range(len(stages)))
        try:
            start = self.df.stage(self.target).index
        except NotFoundError:
            return set()
        by_name: dict[str, int] = {}
        deps: dict[int, set[int]] = {}
        for stage in stages:
            found: set[int] = set()
            base = self._expand_base(stage)
            if base is not None and base.lower() in by_name:
                found.add(by_name[base.lower()])
            deps[stage.index] = found
            if stage.name:
                by_name[stage.name] = stage.index
        for stage in stages:
            for command in stage.commands:
                for ref in _stage_refs(command):
                    if ref.isdigit() and int(ref) < len(stages):
                        deps[stage.index].add(int(ref))
                    elif ref.lower() in by_name:
                        deps[stage.index].add(by_name[ref.lower()])
        seen: set[int] = set()
        todo = [start]
        while todo:
            index = todo.pop()
            if index in seen:
                continue
            seen.add(index)
            todo.extend(deps.get(index, ()))
        return seen

    def _stages(self) -> None:
        reachable = self._reachable()
        bases = {stage.index: self._expand_base(stage) for stage in self.df.stages}
        # how many stages start from each stage's state: the last of them takes it over,
        # the others copy it (a copy per stage of a chain was quadratic)
        children: dict[int, int] = {}
        named: dict[str, int] = {}
        for stage in self.df.stages:
            base = bases[stage.index]
            if base is not None and base.lower() in named:
                parent = named[base.lower()]
                children[parent] = children.get(parent, 0) + 1
            if stage.name:
                named[stage.name] = stage.index
        finished: dict[str, tuple[int, _StageState]] = {}
        for stage in self.df.stages:
            state = self._initial_state(bases[stage.index], finished, children)
            if stage.index in reachable:
                self._base_platform(stage)
                self._run_stage(stage, state)
            else:
                self._simulate_only(stage, state)
            if stage.name:
                finished[stage.name] = (stage.index, state)

    def _initial_state(
        self,
        base: str | None,
        finished: dict[str, tuple[int, _StageState]],
        children: dict[int, int],
    ) -> _StageState:
        if base is not None and base.lower() in finished:
            parent, parent_state = finished[base.lower()]
            children[parent] -= 1
            return parent_state if not children[parent] else parent_state.copy()
        state = _StageState()
        if base is not None and base.lower() == "scratch":
            state.env = {"PATH": _DEFAULT_PATH}
            state.env_known = True
        elif base is not None and self.base_env is not None:
            facts = self.base_env(base)
            if facts is not None:
                state.env = dict(facts.env)
                state.env.setdefault("PATH", _DEFAULT_PATH)
                state.env_known = True
                state.shell = tuple(facts.shell)
        return state

    def _base_platform(self, stage: Stage) -> None:
        base = self._expand_base(stage)
        if base is None or self.base_env is None:
            return
        facts = self.base_env(base)
        if facts is None or facts.platform_mismatch is None:
            return
        actual, expected = facts.platform_mismatch
        self.linter.run(
            "InvalidBaseImagePlatform",
            f'Base image {base} was pulled with platform "{actual}", expected "{expected}" '
            "for current build",
            stage.location,
        )

    def _simulate_only(self, stage: Stage, state: _StageState) -> None:
        saved = self.linter
        self.linter = Linter(CheckConfig(skip_all=True))
        try:
            self._run_stage(stage, state)
        finally:
            self.linter = saved

    def _run_stage(self, stage: Stage, state: _StageState) -> None:
        used: dict[str, Instruction] = {}
        for command in stage.commands:
            self._dispatch(command, state, used)

    def _expand(self, command: Instruction, state: _StageState) -> tuple[Instruction, bool]:
        """Expand like the converter; report UndefinedVar when the env is fully known.
        Returns the expanded instruction and whether every variable was resolved."""
        expander = Expander(state.env, escape=self.df.escape)
        try:
            expanded = command.expand(expander)
        except FrontendError:
            return command, False
        except MountError:
            return command, False
        unresolved = [n for n in expander.unmatched if n not in state.build_args]
        if state.env_known and not isinstance(command, ExposeInstruction):
            self.linter.undefined_vars(
                expander.unmatched,
                build_args=state.build_args,
                env_keys=state.env,
                location=command.location,
            )
        return expanded, not unresolved or state.env_known

    def _dispatch(
        self, command: Instruction, state: _StageState, used: dict[str, Instruction]
    ) -> None:
        if isinstance(command, ArgInstruction):
            self._dispatch_arg(command, state)
            return
        expanded, resolved = self._expand(command, state)
        if isinstance(expanded, EnvInstruction):
            for kv in expanded.env:
                if kv.legacy:
                    self.linter.run(
                        "LegacyKeyValueFormat",
                        f'"{command.name} key=value" should be used instead of legacy '
                        f'"{command.name} key value" format',
                        command.location,
                    )
                self._secret_key("ENV", kv.key, command)
                state.env[kv.key] = kv.value
        elif isinstance(expanded, LabelInstruction):
            for kv in expanded.labels:
                if kv.legacy:
                    self.linter.run(
                        "LegacyKeyValueFormat",
                        f'"{command.name} key=value" should be used instead of legacy '
                        f'"{command.name} key value" format',
                        command.location,
                    )
        elif isinstance(expanded, CmdInstruction | EntrypointInstruction | HealthcheckInstruction):
            key = expanded.keyword
            previous = used.get(key)
            if previous is not None:
                self.linter.run(
                    "MultipleInstructionsDisallowed",
                    f"Multiple {command.name} instructions should not be used in the same stage "
                    "because only the last one will be used",
                    previous.location,
                )
            used[key] = command
            if (
                isinstance(expanded, CmdInstruction | EntrypointInstruction)
                and expanded.shell_form
                and not state.shell
            ):
                self.linter.run(
                    "JSONArgsRecommended",
                    f"JSON arguments recommended for {command.name} to prevent unintended "
                    "behavior related to OS signals",
                    command.location,
                )
        elif isinstance(expanded, ExposeInstruction):
            for port in expanded.ports:
                # [ip:]host-port:container-port, as docker run -p reads it
                parts = port.split(":")
                if len(parts) > 1 and any(parts[:-1]):
                    self.linter.run(
                        "ExposeInvalidFormat",
                        "EXPOSE instruction should not define an IP address or host-port "
                        f"mapping, found '{port}'",
                        command.location,
                    )
        elif isinstance(expanded, CopyInstruction | AddInstruction):
            self._ignored_sources(expanded, command)
        elif isinstance(expanded, ShellInstruction):
            state.shell = expanded.shell
        elif isinstance(expanded, WorkdirInstruction):
            if not state.workdir_set and resolved and not expanded.path.startswith("/"):
                self.linter.run(
                    "WorkdirRelativePath",
                    f'Relative workdir "{expanded.path}" can have unexpected results if the base '
                    "image changes",
                    command.location,
                )
            state.workdir_set = True

    def _ignored_sources(
        self, expanded: CopyInstruction | AddInstruction, command: Instruction
    ) -> None:
        """``CopyIgnoredFile``: a source from the main context that the ignore patterns
        exclude (it is not in the context, so nothing or less than written is copied).
        The context itself (``.``) and a directory the patterns re-include something
        inside of are not reported (BuildKit reports both)."""
        matcher = self.ignore
        if matcher is None or (isinstance(expanded, CopyInstruction) and expanded.from_stage):
            return
        from ._convert_copy import is_remote_source

        verb = "Add" if isinstance(expanded, AddInstruction) else "Copy"
        for src in expanded.sources:
            if isinstance(expanded, AddInstruction) and is_remote_source(src):
                continue
            if not matcher.matches(src):
                continue
            if matcher.may_include_inside(src):
                continue
            self.linter.run(
                "CopyIgnoredFile",
                f'Attempting to {verb} file "{src}" that is excluded by .dockerignore',
                command.location,
            )

    def _dispatch_arg(self, command: ArgInstruction, state: _StageState) -> None:
        for definition in command.args:
            self._secret_key("ARG", definition.key, command)
            value: str | None = definition.value
            if definition.key in self.build_args:
                value = self.build_args[definition.key]
            elif value is not None:
                expander = Expander(state.env, escape=self.df.escape)
                try:
                    value = expander.word(value)
                except FrontendError:
                    value = ""
                if state.env_known:
                    self.linter.undefined_vars(
                        expander.unmatched,
                        build_args=state.build_args,
                        env_keys=state.env,
                        location=command.location,
                    )
            elif definition.key in self.global_args:
                value = self.global_args[definition.key]
            if value is not None and definition.key not in NON_ENV_ARGS:
                state.env[definition.key] = value
            state.build_args[definition.key] = None

    def _secret_key(self, instruction: str, key: str, command: Instruction) -> None:
        if _SECRET_RE.search(key) and not _SECRET_ALLOW_RE.search(key):
            self.linter.run(
                "SecretsUsedInArgOrEnv",
                f'Do not use ARG or ENV instructions for sensitive data ({instruction} "{key}")',
                command.location,
            )


def _stage_refs(command: Instruction) -> list[str]:
    refs: list[str] = []
    if isinstance(command, CopyInstruction) and command.from_stage:
        refs.append(command.from_stage)
    if isinstance(command, RunInstruction):
        for spec in command.mount_specs:
            try:
                mount = parse_mount(spec, lambda word: word)
            except MountError:
                continue
            if mount.source_stage:
                refs.append(mount.source_stage)
    return refs


_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?\Z"
)


def _valid_reference(text: str) -> bool:
    """Whether ``text`` can be a base image reference (a rough ParseNormalizedNamed)."""
    if not text or len(text) > 255 + 140:
        return False
    return _REFERENCE_RE.match(text) is not None
