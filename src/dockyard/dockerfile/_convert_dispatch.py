"""Converting one stage: its instructions in order, each updating the stage's LLB state
(filesystem, environment, working directory, user) and its image config.

Expansion timing follows BuildKit: every instruction but ``ARG`` is expanded with the
stage's environment at that point — the base image's ``ENV``, then ``ENV`` and ``ARG``
instructions in order (a later one of the same name wins, so ``ENV`` after ``ARG`` wins,
and an ``ARG`` after an inherited ``ENV`` wins). Global arguments are not visible in a
stage unless it declares them with ``ARG``. The values of declared arguments are in the
environment of ``RUN`` and recorded in its history line (``RUN |1 V=2 …``); they never
enter the image config.

``RUN`` lives in :mod:`._convert_run`, ``COPY``/``ADD`` in :mod:`._convert_copy`; this
module handles the rest and the state they share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime

from dockyard import llb, oci
from dockyard.core import DockyardError, FrontendError, Platform, UsageError
from dockyard.core.applog import AppendLog

from ._convert_copy import dispatch_copy
from ._convert_image import (
    DEFAULT_PATH,
    ImageDraft,
    env_dict,
    format_healthcheck,
    healthcheck_config,
    list_text,
    quoted_list,
    update_config,
)
from ._convert_options import ConvertOptions
from ._convert_paths import normalize_path
from ._convert_run import dispatch_run
from ._convert_stages import SCAN_CONTEXT_ARG, SCAN_STAGE_ARG, Command, StageNode
from ._instructions import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    Expander,
    ExposeInstruction,
    HealthcheckInstruction,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
)
from ._mounts import MountError, NetworkMode
from ._rules import NON_ENV_ARGS
from ._shell import ShellLex, charge_config_copy
from ._values import BadValue, parse_ports, parse_signal

__all__ = ["ConvertContext", "StageDispatcher", "uppercase_command"]

_NETWORKS = {
    NetworkMode.DEFAULT: llb.NetMode.SANDBOX,
    NetworkMode.NONE: llb.NetMode.NONE,
    NetworkMode.HOST: llb.NetMode.HOST,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConvertContext:
    """What every stage's conversion shares: the options, the Dockerfile's source map and
    escape character, the global arguments, the build context, proxy settings, the epoch
    and the set of build-context paths ``COPY``/``ADD``/bind mounts read (filled in while
    converting)."""

    options: ConvertOptions
    source_map: llb.SourceMap
    escape: str
    global_args: Mapping[str, str]
    build_args: Mapping[str, str]
    build_context: llb.State
    proxy: llb.ProxyEnv | None
    epoch: int | None
    target_platform: Platform
    context_paths: set[str]

    @property
    def created(self) -> datetime | None:
        """The epoch as a timestamp for files the build creates."""
        if self.epoch is None:
            return None
        return datetime.fromtimestamp(self.epoch, UTC)


def _unknown_image(platform: Platform) -> oci.ImageConfig:
    """The config of a base whose config is not known (a build context without one)."""
    return oci.ImageConfig(
        architecture=platform.architecture, os=platform.os, variant=platform.variant
    )


def env_applied(base: StageNode) -> bool:
    """Whether a stage based on ``base`` may skip applying the config's ``Env`` to the
    environment it starts with: ``base`` is a converted stage whose environment ends
    with it, in order (applying it, O(variables) per stage, was quadratic in a chain of
    stages with an ``ENV`` each)."""
    return base.draft is not None and base.env_follows_config


def uppercase_command(text: str) -> str:
    head, sep, rest = text.partition(" ")
    return head.upper() + sep + rest


class StageDispatcher:
    """Converts the instructions of one stage (a :class:`StageNode`) in order."""

    __slots__ = (
        "build_args",
        "cmd_set",
        "ctx",
        "draft",
        "env",
        "env_follows_config",
        "node",
        "platform",
        "scan_args",
        "state",
        "workdir_set",
    )

    def __init__(self, node: StageNode, ctx: ConvertContext) -> None:
        self.node = node
        self.ctx = ctx
        self.cmd_set = False
        base = node.base
        if base is not None:
            assert base.state is not None
            self.state: llb.State = base.state
            self.platform: Platform = base.platform or ctx.target_platform
            # ONBUILD triggers of a base stage ran here already; they do not carry over.
            if base.draft is not None:
                try:
                    charge_config_copy(base.draft.copied_entries())
                except ValueError as exc:
                    raise FrontendError(str(exc), locations=(node.location,)) from None
                draft = base.draft.child()
            else:  # a named context stands for the base stage
                image = base.image or _unknown_image(self.platform)
                if image.config.on_build:
                    image = update_config(image, on_build=())
                draft = ImageDraft(image)
            node.base_image = base.base_image
            # the base's variables: the first stage based on it takes its dict over
            env = base.env if base.env is not None else base.state.env
            base.env = None
            self.build_args: AppendLog[tuple[str, str | None]] = base.build_args.branch()
            self.scan_args: dict[str, str] = dict(base.scan_args)
            self.workdir_set = base.workdir_set
        else:
            assert node.state is not None
            self.state = node.state
            self.platform = node.platform or ctx.target_platform
            draft = ImageDraft(node.image or _unknown_image(self.platform))
            env = self.state.env
            self.build_args = AppendLog()
            self.scan_args = {}
            self.workdir_set = False
        if ctx.options.multi_platform:
            node.progress.platform = self.platform
        self._init_from_image(draft, env, applied=base is not None and env_applied(base))

    def _init_from_image(self, draft: ImageDraft, env: dict[str, str], *, applied: bool) -> None:
        # the state's environment, kept here as well for lookups (reading the state's
        # built a dict per instruction; callers do not change it)
        self.env = env
        if applied:
            self.env_follows_config = True
        else:
            values = env_dict(draft.env)
            if "PATH" not in values and self.platform.os != "windows":
                draft.set_envs((("PATH", DEFAULT_PATH),))
                values["PATH"] = DEFAULT_PATH
            # whether the environment ends with the config's Env, in order: applying it
            # again in a stage based on this one changes nothing then
            self.env_follows_config = len(values) == len(draft.env) and "" not in values
            values.pop("", None)
            self.set_env(values)
        state = self.state
        options = self.ctx.options
        if options.hostname:
            state = state.with_hostname(options.hostname)
        config = draft.scalars.config
        if config.working_dir:
            workdir = normalize_path(config.working_dir, config.working_dir)
            if workdir != config.working_dir:
                draft.update(working_dir=workdir)
            state = state.with_cwd(workdir)
        if config.user:
            state = state.with_user(config.user)
        self.state = state.with_network(_NETWORKS[options.network])
        self.draft = draft

    # -- helpers shared with RUN and COPY --------------------------------------------

    def set_env(self, env: Mapping[str, str]) -> None:
        """Set variables in the state's environment (a name set again moves to the
        end)."""
        self.state = self.state.with_envs(env)
        for key, value in env.items():
            self.env.pop(key, None)
            self.env[key] = value

    @property
    def ignore_cache(self) -> bool:
        return self.ctx.options.ignores_cache(self.node.name)

    def location(self, instruction: Instruction) -> llb.SourceLocation:
        return self.ctx.source_map.location(*instruction.location.ranges)

    def constraints(
        self,
        instruction: Instruction,
        name: str | None,
        *,
        description: Mapping[str, str] | None = None,
        progress_group: llb.ProgressGroup | None = None,
    ) -> llb.Constraints:
        return llb.Constraints(
            custom_name=name,
            description=description or {},
            ignore_cache=self.ignore_cache,
            progress_group=progress_group,
            locations=(self.location(instruction),),
        )

    def display(self, text: str, env: Mapping[str, str], *, raw: bool = False) -> str:
        """``text`` (an instruction's source) with variables replaced, keyword upper-cased,
        for progress names; unchanged if it does not expand."""
        lex = ShellLex(self.ctx.escape, raw_quotes=raw, skip_unset_env=raw)
        try:
            text = lex.process(text, env).value
        except FrontendError:
            pass
        return uppercase_command(text)

    def commit(self, created_by: str, *, layer: bool = False, marker: bool | None = None) -> None:
        self.draft.add_history(created_by, layer=layer, epoch=self.ctx.epoch, marker=marker)

    def with_shell(self, args: tuple[str, ...]) -> tuple[str, ...]:
        """A shell-form command as the argument list the stage's shell runs it with."""
        scalars = self.draft.scalars
        shell = scalars.config.shell
        if not shell:
            shell = ("cmd", "/S", "/C") if scalars.os == "windows" else ("/bin/sh", "-c")
        return (*shell, " ".join(args))

    # -- dispatch ---------------------------------------------------------------------

    def run(self) -> None:
        for command in self.node.commands:
            instruction = command.instruction
            try:
                self.dispatch(command)
            except FrontendError as exc:
                if not exc.locations:
                    exc.locations = (instruction.location,)
                raise
            except DockyardError as exc:
                raise FrontendError(exc.message, locations=(instruction.location,)) from exc
        node = self.node
        node.state = self.state
        node.draft = self.draft
        node.env = self.env
        node.env_follows_config = self.env_follows_config
        node.platform = self.platform
        node.build_args = self.build_args
        node.scan_args = self.scan_args
        node.workdir_set = self.workdir_set
        node.dispatched = True

    def dispatch(self, command: Command) -> None:
        instruction = command.instruction
        if isinstance(instruction, ArgInstruction):
            self._arg(instruction)
            return
        try:
            expanded = instruction.expand(Expander(self.env, escape=self.ctx.escape))
        except MountError as exc:
            raise instruction.error(f"RUN --mount: {exc}") from None
        if isinstance(expanded, RunInstruction):
            dispatch_run(self, expanded, command)
        elif isinstance(expanded, AddInstruction | CopyInstruction):
            dispatch_copy(self, expanded, command)
        elif isinstance(expanded, WorkdirInstruction):
            self._workdir(expanded, command.onbuild)
        else:
            self._config(expanded)

    def _arg(self, instruction: ArgInstruction) -> None:
        parts: list[str] = []
        build_args = self.ctx.build_args
        for definition in instruction.args:
            key = definition.key
            value = definition.value
            if key in build_args:
                value = build_args[key]
            elif value is not None:
                try:
                    value = Expander(self.env, escape=self.ctx.escape).word(value)
                except FrontendError as exc:
                    raise instruction.error(exc.message) from None
            elif key in self.ctx.global_args:
                value = self.ctx.global_args[key]
            if value is not None and key not in NON_ENV_ARGS:
                self.set_env({key: value})
                self.env_follows_config = False
            self.build_args.append((key, value))
            if value is not None and key in (SCAN_CONTEXT_ARG, SCAN_STAGE_ARG):
                self.scan_args[key] = value
            parts.append(key if value is None else f"{key}={value}")
        self.commit("ARG " + " ".join(parts))

    def _workdir(self, instruction: WorkdirInstruction, onbuild: bool) -> None:
        self.workdir_set = True
        if not instruction.path:
            raise instruction.error("WORKDIR cannot be empty")
        draft = self.draft
        workdir = normalize_path(draft.scalars.config.working_dir, instruction.path)
        draft.update(working_dir=workdir)
        self.state = self.state.with_cwd(workdir)
        layer = workdir != "/"
        if layer:
            name = self.node.progress.name(
                self.display(instruction.original, self.env), onbuild=onbuild, env=self.env
            )
            try:
                action = llb.mkdir(
                    workdir,
                    0o755,
                    parents=True,
                    owner=draft.scalars.config.user or None,
                    created=self.ctx.created,
                )
            except UsageError as exc:
                raise instruction.error(f"WORKDIR: {exc.message}") from None
            self.state = self.state.file(
                action,
                constraints=llb.Constraints(
                    custom_name=name, locations=(self.location(instruction),)
                ),
            )
        self.commit("WORKDIR " + workdir, layer=layer, marker=False)

    def _config(self, instruction: Instruction) -> None:
        """Instructions that change only the image config (and the state's env/user)."""
        draft = self.draft
        if isinstance(instruction, EnvInstruction):
            pairs = [(kv.key, kv.value) for kv in instruction.env]
            ordered: dict[str, str] = {}
            for key, value in pairs:
                ordered.pop(key, None)  # a name set twice moves to the end, as one by one
                ordered[key] = value
            if self.env_follows_config and not draft.appends_env(key for key, _ in pairs):
                self.env_follows_config = False
            self.set_env(ordered)
            draft.set_envs(pairs)
            self.commit("ENV " + " ".join(str(kv) for kv in instruction.env))
        elif isinstance(instruction, LabelInstruction):
            draft.add_labels({kv.key: kv.value for kv in instruction.labels})
            self.commit("LABEL " + " ".join(str(kv) for kv in instruction.labels))
        elif isinstance(instruction, UserInstruction):
            self.state = self.state.with_user(instruction.user)
            draft.update(user=instruction.user)
            self.commit(f"USER {instruction.user}")
        elif isinstance(instruction, ExposeInstruction):
            try:
                ports = parse_ports(instruction.ports)
            except BadValue as exc:
                raise instruction.error(f"EXPOSE: {exc}") from None
            draft.add_ports(ports)
            self.commit(f"EXPOSE {list_text(ports)}")
        elif isinstance(instruction, VolumeInstruction):
            draft.add_volumes(instruction.volumes)
            self.commit(f"VOLUME {list_text(instruction.volumes)}")
        elif isinstance(instruction, StopsignalInstruction):
            try:
                parse_signal(instruction.signal)
            except BadValue as exc:
                raise instruction.error(f"STOPSIGNAL: {exc}") from None
            draft.update(stop_signal=instruction.signal)
            self.commit(f"STOPSIGNAL {instruction.signal}")
        elif isinstance(instruction, ShellInstruction):
            draft.update(shell=instruction.shell)
            self.commit(f"SHELL {list_text(instruction.shell)}")
        elif isinstance(instruction, CmdInstruction):
            args = (
                self.with_shell(instruction.command)
                if instruction.shell_form
                else instruction.command
            )
            draft.update(cmd=args, args_escaped=True)
            self.cmd_set = True
            self.commit(f"CMD {quoted_list(args)}")
        elif isinstance(instruction, EntrypointInstruction):
            args = (
                self.with_shell(instruction.command)
                if instruction.shell_form
                else instruction.command
            )
            draft.update(entrypoint=args)
            if not self.cmd_set:
                draft.update(cmd=())
            self.commit(f"ENTRYPOINT {quoted_list(args)}")
        elif isinstance(instruction, HealthcheckInstruction):
            check = healthcheck_config(instruction)
            draft.update(healthcheck=check)
            self.commit(f"HEALTHCHECK {format_healthcheck(check)}")
        elif isinstance(instruction, MaintainerInstruction):
            draft.set_author(instruction.maintainer)
            self.commit(f"MAINTAINER {instruction.maintainer}")
        elif isinstance(instruction, OnbuildInstruction):
            draft.add_on_build(instruction.expression)
        else:  # pragma: no cover - every instruction type is handled above
            raise instruction.error(f"{instruction.keyword} cannot be converted")
