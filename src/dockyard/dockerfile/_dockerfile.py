"""AST → typed instructions grouped into stages (BuildKit's ``instructions.Parse``).

Every check that does not need variable values happens here, so that a Dockerfile
with a mistake anywhere fails before anything is built, with the line of the mistake:
unknown instructions and flags (with suggestions), argument counts, flag values, mount
options, chmod modes, healthcheck durations, ONBUILD's restrictions, stage names.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from dockyard.core import FrontendError, NotFoundError, SourceLocation, SourceRange

from ._chmod import Chmod, ChmodError, parse_chmod
from ._directives import CheckConfig, Directive, find_directive
from ._flags import FlagError, FlagKind, Flags, parse_flags
from ._instructions import (
    AddInstruction,
    ArgDef,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    InlineSource,
    Instruction,
    KeyValue,
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
from ._mounts import (
    MountError,
    RunMount,
    parse_device,
    parse_mount,
    parse_network,
    parse_security,
)
from ._parser import Ast, Heredoc, Node, parse_ast, parse_heredoc
from ._text import go_trim_space, suggest
from ._values import BadValue, parse_add_checksum, parse_duration, parse_signal

__all__ = [
    "INSTRUCTIONS",
    "Dockerfile",
    "Stage",
    "parse_dockerfile",
    "parse_instruction",
    "parse_onbuild_trigger",
]

INSTRUCTIONS = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)

_STAGE_NAME_RE = re.compile(r"[a-z][a-z0-9-_.]*\Z")
_ONBUILD_PREFIX_RE = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_DRIVE_PATH_RE = re.compile(r'"[a-z]:\\.*')
_MIN_INTERVAL = 1_000_000  # 1ms, Docker's minimum healthcheck duration


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """A build stage: its ``FROM`` and the instructions up to the next ``FROM``."""

    index: int
    from_: FromInstruction
    commands: tuple[Instruction, ...] = ()

    @property
    def name(self) -> str | None:
        """The lower-cased ``AS`` name, or ``None`` for an unnamed stage."""
        return self.from_.stage_name

    @property
    def base(self) -> str:
        """The base image or stage as written (variables not expanded)."""
        return self.from_.base

    @property
    def platform(self) -> str | None:
        return self.from_.platform

    @property
    def location(self) -> SourceLocation:
        return self.from_.location

    @property
    def comment(self) -> str:
        """The stage's doc comment (``# <name> <description>`` right above its ``FROM``)."""
        return self.from_.comment


@dataclass(frozen=True, slots=True, kw_only=True)
class Dockerfile:
    """A Dockerfile as typed instructions.

    ``meta_args`` are the ``ARG`` instructions before the first ``FROM`` (global build
    arguments, usable in ``FROM`` lines); ``stages`` are in file order. ``syntax`` is
    the ``# syntax=`` directive (if any) and ``check`` the ``# check=`` settings.
    """

    ast: Ast
    meta_args: tuple[ArgInstruction, ...]
    stages: tuple[Stage, ...]
    syntax: Directive | None = None
    check: CheckConfig = dataclasses.field(default_factory=CheckConfig)

    @property
    def escape(self) -> str:
        return self.ast.escape

    @property
    def filename(self) -> str:
        return self.ast.filename

    def stage(self, ref: str) -> Stage:
        """A stage by (case-insensitive) name or by index (``"0"``); the last one that
        has that name wins, as in BuildKit."""
        if ref.isdigit():
            index = int(ref)
            if index < len(self.stages):
                return self.stages[index]
            raise NotFoundError(
                f"invalid stage index {index}: the Dockerfile has {len(self.stages)} stage(s)"
            )
        wanted = ref.lower()
        for stage in reversed(self.stages):
            if stage.name == wanted:
                return stage
        names = [s.name for s in self.stages if s.name]
        hint = suggest(ref, names, case_sensitive=False)
        extra = f" (did you mean {hint}?)" if hint else ""
        raise NotFoundError(f"target stage {ref!r} could not be found{extra}")


def parse_dockerfile(data: bytes | str, *, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile all the way to typed instructions; raises
    :class:`FrontendError` (``Dockerfile:LINE: message``) for any mistake."""
    ast = parse_ast(data, filename=filename)
    text = ast.source.decode("utf-8", "surrogateescape")
    syntax = find_directive(text, "syntax", any_format=True)
    check = CheckConfig.from_directive(find_directive(text, "check"), filename)
    meta_args: list[ArgInstruction] = []
    stages: list[Stage] = []
    commands: list[Instruction] = []
    current: FromInstruction | None = None
    for node in ast.nodes:
        instruction = parse_instruction(node, ast)
        if isinstance(instruction, FromInstruction):
            if current is not None:
                stages.append(Stage(index=len(stages), from_=current, commands=tuple(commands)))
            current = instruction
            commands = []
        elif current is None:
            if isinstance(instruction, ArgInstruction):
                meta_args.append(instruction)
            else:
                raise instruction.error(
                    f"no build stage in current context: {instruction.keyword} must come after "
                    "a FROM instruction (only ARG may precede the first FROM)"
                )
        else:
            commands.append(instruction)
    if current is None:
        raise FrontendError(
            "dockerfile contains no stages to build (add a FROM instruction)",
            locations=(ast.location(ast.start_line, ast.end_line),),
        )
    stages.append(Stage(index=len(stages), from_=current, commands=tuple(commands)))
    return Dockerfile(
        ast=ast, meta_args=tuple(meta_args), stages=tuple(stages), syntax=syntax, check=check
    )


def parse_onbuild_trigger(expression: str, *, location: SourceLocation) -> Instruction:
    """Parse an ``ONBUILD`` trigger stored in a base image's config (``RUN make``,
    heredocs included) into the instruction to run, located at ``location`` (the
    ``FROM`` of the stage that inherits it)."""
    try:
        ast = parse_ast(expression, filename=location.filename)
    except FrontendError as exc:
        raise FrontendError(
            f"invalid ONBUILD trigger {expression!r}: {exc.message}", locations=(location,)
        ) from None
    if len(ast.nodes) != 1:
        raise FrontendError(
            f"onbuild trigger should be a single expression: {expression!r}", locations=(location,)
        )
    node = ast.nodes[0]
    if node.keyword in ("onbuild", "from", "maintainer"):
        raise FrontendError(
            f"{node.instruction.upper()} isn't allowed as an ONBUILD trigger", locations=(location,)
        )
    try:
        instruction = parse_instruction(node, ast)
    except FrontendError as exc:
        raise FrontendError(exc.message, locations=(location,)) from None
    return dataclasses.replace(instruction, location=location)


class _Request:
    """One node being turned into an instruction."""

    __slots__ = ("args", "ast", "location", "name", "node", "original")

    def __init__(self, node: Node, location: SourceLocation, ast: Ast | None) -> None:
        self.ast = ast
        self.node = node
        self.name = node.instruction
        self.location = location
        self.args = _node_args(node)
        self.original = go_trim_space(node.original)

    def fail(self, message: str) -> FrontendError:
        return FrontendError(message, locations=(self.location,))

    def flags(self, accepted: dict[str, FlagKind]) -> Flags:
        try:
            return parse_flags(self.node.flags, accepted, self.node.instruction.upper())
        except FlagError as exc:
            raise self.fail(str(exc)) from None


def _node_args(node: Node) -> tuple[str, ...]:
    if node.sub is not None:
        return (node.sub.instruction, *_node_args(node.sub), *node.args)
    return node.args


def parse_instruction(node: Node, ast: Ast | None = None) -> Instruction:
    """Turn one AST node into its typed instruction (``FROM`` gives a
    :class:`FromInstruction`). ``ast`` supplies the file name for locations."""
    if ast is not None:
        location = ast.location(node.start_line, node.end_line)
    else:
        location = SourceLocation(
            filename="Dockerfile", ranges=(SourceRange(node.start_line, node.end_line),)
        )
    request = _Request(node, location, ast)
    parser = _PARSERS.get(node.keyword)
    if parser is None:
        hint = suggest(node.instruction, list(INSTRUCTIONS), case_sensitive=False)
        extra = f" (did you mean {hint}?)" if hint else ""
        raise request.fail(f"unknown instruction: {node.instruction}{extra}")
    return parser(request)


def _err_at_least_one(keyword: str) -> str:
    return f"{keyword} requires at least one argument"


def _err_exactly_one(keyword: str) -> str:
    return f"{keyword} requires exactly one argument"


def _key_values(req: _Request, keyword: str) -> tuple[KeyValue, ...]:
    args = req.args
    if not args:
        raise req.fail(_err_at_least_one(keyword))
    if len(args) % 3:
        raise req.fail(f"Bad input to {keyword}, too many arguments")
    pairs: list[KeyValue] = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise req.fail(f"{keyword} names can not be blank")
        pairs.append(KeyValue(key=args[i], value=args[i + 1], legacy=args[i + 2] == ""))
    return tuple(pairs)


def _parse_env(req: _Request) -> Instruction:
    req.flags({})
    return EnvInstruction(
        name=req.name, location=req.location, original=req.original, env=_key_values(req, "ENV")
    )


def _parse_label(req: _Request) -> Instruction:
    req.flags({})
    return LabelInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        labels=_key_values(req, "LABEL"),
    )


def _parse_maintainer(req: _Request) -> Instruction:
    if len(req.args) != 1:
        raise req.fail(_err_exactly_one("MAINTAINER"))
    req.flags({})
    return MaintainerInstruction(
        name=req.name, location=req.location, original=req.original, maintainer=req.args[0]
    )


def _check_chmod(req: _Request, keyword: str, chmod: str | None) -> Chmod | None:
    if chmod is None or "$" in chmod:
        return None
    try:
        return parse_chmod(chmod)
    except ChmodError as exc:
        raise req.fail(f"{keyword} --chmod: {exc}") from None


def _sources_and_dest(
    req: _Request, keyword: str
) -> tuple[tuple[str, ...], tuple[InlineSource, ...], str]:
    args = req.args
    if len(args) < 2:
        provided = "only one was provided" if args else "none were provided"
        raise req.fail(
            f"{keyword} requires at least two arguments, but {provided}. "
            "Destination could not be determined"
        )
    dest = args[-1]
    if _heredoc_word(dest) is not None:
        raise req.fail(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc for doc in req.node.heredocs}
    sources: list[str] = []
    contents: list[InlineSource] = []
    for src in args[:-1]:
        doc = _heredoc_word(src)
        if doc is None:
            sources.append(src)
            continue
        found = bodies.get(doc.name)
        data = found.text if found is not None else ""
        contents.append(InlineSource(path=doc.name, data=data, expand=doc.expand))
    return tuple(sources), tuple(contents), dest


def _heredoc_word(word: str) -> Heredoc | None:
    """The heredoc ``word`` opens, ``None`` when it is a plain path (also when it only
    looks like a broken heredoc, as BuildKit's ``MustParseHeredoc``)."""
    try:
        return parse_heredoc(word)
    except FrontendError:
        return None


_COPY_FLAGS = {
    "chown": FlagKind.STRING,
    "chmod": FlagKind.STRING,
    "link": FlagKind.BOOL,
    "exclude": FlagKind.STRINGS,
    "from": FlagKind.STRING,
    "parents": FlagKind.BOOL,
}
_ADD_FLAGS = {
    "chown": FlagKind.STRING,
    "chmod": FlagKind.STRING,
    "link": FlagKind.BOOL,
    "exclude": FlagKind.STRINGS,
    "keep-git-dir": FlagKind.BOOL,
    "checksum": FlagKind.STRING,
    "unpack": FlagKind.BOOL,
}


def _parse_copy(req: _Request) -> Instruction:
    if len(req.args) < 2:
        _sources_and_dest(req, "COPY")
    flags = req.flags(_COPY_FLAGS)
    sources, contents, dest = _sources_and_dest(req, "COPY")
    chmod = flags.string("chmod")
    from_stage = flags.string("from")
    return CopyInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        sources=sources,
        contents=contents,
        dest=dest,
        chown=flags.string("chown"),
        chmod=chmod,
        mode=_check_chmod(req, "COPY", chmod),
        link=flags.boolean("link"),
        excludes=flags.strings("exclude"),
        from_stage=from_stage or None,
        parents=flags.boolean("parents"),
    )


def _parse_add(req: _Request) -> Instruction:
    if len(req.args) < 2:
        _sources_and_dest(req, "ADD")
    flags = req.flags(_ADD_FLAGS)
    sources, contents, dest = _sources_and_dest(req, "ADD")
    chmod = flags.string("chmod")
    checksum = flags.string("checksum")
    add = AddInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        sources=sources,
        contents=contents,
        dest=dest,
        chown=flags.string("chown"),
        chmod=chmod,
        mode=_check_chmod(req, "ADD", chmod),
        link=flags.boolean("link"),
        excludes=flags.strings("exclude"),
        keep_git_dir=flags.boolean("keep-git-dir"),
        checksum=checksum or None,
        unpack=flags.optional_bool("unpack"),
    )
    if checksum and "$" not in checksum:
        try:
            parse_add_checksum(checksum)
        except BadValue as exc:
            raise req.fail(f"ADD --checksum: {exc}") from None
        if len(sources) + len(contents) != 1:
            raise req.fail(
                "checksum can't be specified for multiple sources (ADD one URL at a time)"
            )
    return add


def _parse_from(req: _Request) -> Instruction:
    args = req.args
    stage_name: str | None = None
    written: str | None = None
    as_word: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        as_word, written = args[1], args[2]
        stage_name = written.lower()
        if not _STAGE_NAME_RE.match(stage_name):
            raise req.fail(
                f'invalid name for build stage: "{args[2]}", name can\'t start with a number '
                "or contain symbols (use letters, digits, '-', '_' and '.')"
            )
    elif len(args) != 1:
        raise req.fail("FROM requires either one or three arguments (FROM image [AS name])")
    flags = req.flags({"platform": FlagKind.STRING})
    comment = ""
    if stage_name:
        for line in req.node.comments:
            if line.startswith(stage_name + " "):
                comment = line[len(stage_name) + 1 :]
                break
    platform = flags.string("platform")
    return FromInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        base=args[0],
        stage_name=stage_name,
        stage_name_written=written,
        as_word=as_word,
        platform=platform,
        comment=comment,
        prev_comment=req.node.comments[-1] if req.node.comments else "",
    )


def _parse_onbuild(req: _Request) -> Instruction:
    node = req.node
    if node.sub is None:
        raise req.fail(_err_at_least_one("ONBUILD"))
    req.flags({})
    trigger = node.sub.instruction.upper()
    if trigger == "ONBUILD":
        raise req.fail("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise req.fail(f"{trigger} isn't allowed as an ONBUILD trigger")
    # The trigger runs in a later build; check it now so that mistakes show here.
    parse_instruction(dataclasses.replace(node.sub, heredocs=node.heredocs), req.ast)
    expression = _ONBUILD_PREFIX_RE.sub("", node.original, count=1)
    for doc in node.heredocs:
        expression += "\n" + doc.content + doc.name
    return OnbuildInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        expression=expression,
        trigger=node.sub,
    )


def _parse_workdir(req: _Request) -> Instruction:
    if len(req.args) != 1:
        raise req.fail(_err_exactly_one("WORKDIR"))
    req.flags({})
    return WorkdirInstruction(
        name=req.name, location=req.location, original=req.original, path=req.args[0]
    )


def _command(req: _Request) -> tuple[str, ...]:
    args = req.args
    if not args:
        return ()
    if req.node.json:
        return args
    return (" ".join(args),)


_RUN_FLAGS = {
    "mount": FlagKind.STRINGS,
    "network": FlagKind.STRING,
    "security": FlagKind.STRING,
    "device": FlagKind.STRINGS,
}


def _parse_run(req: _Request) -> Instruction:
    flags = req.flags(_RUN_FLAGS)
    specs = flags.strings("mount")
    mounts: list[RunMount] | None = []
    try:
        for spec in specs:
            parse_mount(spec)  # what can be checked before expansion
            if "$" in spec:
                mounts = None  # known only once expanded
            elif mounts is not None:
                mounts.append(parse_mount(spec, lambda word: word))
        network = flags.string("network")
        security = flags.string("security")
        network_mode = parse_network(network) if network is not None else None
        security_mode = parse_security(security) if security is not None else None
        devices = tuple(parse_device(spec) for spec in flags.strings("device"))
    except MountError as exc:
        raise req.fail(f"RUN: {exc}") from None
    return RunInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        command=_command(req),
        shell_form=not req.node.json,
        heredocs=req.node.heredocs,
        mount_specs=specs,
        mounts=tuple(mounts) if mounts is not None else None,
        network=network_mode,
        security=security_mode,
        devices=devices,
        flags_used=flags.used,
    )


def _parse_cmd(req: _Request) -> Instruction:
    req.flags({})
    return CmdInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        command=_command(req),
        shell_form=not req.node.json,
    )


def _parse_entrypoint(req: _Request) -> Instruction:
    req.flags({})
    return EntrypointInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        command=_command(req),
        shell_form=not req.node.json,
    )


def _duration(req: _Request, flags: Flags, name: str) -> int:
    text = flags.string(name)
    if not text:
        return 0
    try:
        value = parse_duration(text)
    except BadValue as exc:
        raise req.fail(f"HEALTHCHECK --{name}: {exc}") from None
    if value == 0:
        return 0
    if value < _MIN_INTERVAL:
        raise req.fail(f'HEALTHCHECK: Interval "{name}" cannot be less than 1ms')
    return value


_HEALTH_FLAGS = {
    "interval": FlagKind.STRING,
    "timeout": FlagKind.STRING,
    "start-period": FlagKind.STRING,
    "start-interval": FlagKind.STRING,
    "retries": FlagKind.STRING,
}


def _parse_healthcheck(req: _Request) -> Instruction:
    args = req.args
    if not args:
        raise req.fail(_err_at_least_one("HEALTHCHECK") + " (NONE or CMD <command>)")
    kind = args[0].upper()
    rest = args[1:]
    if kind == "NONE":
        if rest:
            raise req.fail("HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(
            name=req.name, location=req.location, original=req.original, test=("NONE",)
        )
    flags = req.flags(_HEALTH_FLAGS)
    if kind != "CMD":
        raise req.fail(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    command = rest if req.node.json else ((" ".join(rest),) if rest else ())
    if not command:
        raise req.fail("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *command) if req.node.json else ("CMD-SHELL", *command)
    retries = 0
    retries_text = flags.string("retries")
    if retries_text:
        try:
            retries = int(retries_text, 10)
        except ValueError:
            raise req.fail(
                f"HEALTHCHECK --retries: invalid number {retries_text!r} (use a whole number)"
            ) from None
        if retries < 0:
            raise req.fail(f"--retries cannot be negative ({retries})")
        if retries >= 1 << 31:
            raise req.fail(f"HEALTHCHECK --retries: value out of range: {retries_text}")
    return HealthcheckInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        test=test,
        interval=_duration(req, flags, "interval"),
        timeout=_duration(req, flags, "timeout"),
        start_period=_duration(req, flags, "start-period"),
        start_interval=_duration(req, flags, "start-interval"),
        retries=retries,
    )


def _parse_expose(req: _Request) -> Instruction:
    if not req.args:
        raise req.fail(_err_at_least_one("EXPOSE"))
    req.flags({})
    return ExposeInstruction(
        name=req.name, location=req.location, original=req.original, ports=tuple(sorted(req.args))
    )


def _parse_user(req: _Request) -> Instruction:
    if len(req.args) != 1:
        raise req.fail(_err_exactly_one("USER"))
    req.flags({})
    return UserInstruction(
        name=req.name, location=req.location, original=req.original, user=req.args[0]
    )


def _parse_volume(req: _Request) -> Instruction:
    if not req.args:
        raise req.fail(_err_at_least_one("VOLUME"))
    req.flags({})
    volumes = []
    for volume in req.args:
        volume = go_trim_space(volume)
        if not volume:
            raise req.fail("VOLUME specified can not be an empty string")
        volumes.append(volume)
    return VolumeInstruction(
        name=req.name, location=req.location, original=req.original, volumes=tuple(volumes)
    )


def _parse_stopsignal(req: _Request) -> Instruction:
    if len(req.args) != 1:
        raise req.fail(_err_exactly_one("STOPSIGNAL"))
    req.flags({})
    signal = req.args[0]
    if "$" not in signal:
        try:
            parse_signal(signal)
        except BadValue as exc:
            raise req.fail(f"STOPSIGNAL: {exc}") from None
    return StopsignalInstruction(
        name=req.name, location=req.location, original=req.original, signal=signal
    )


def _parse_arg(req: _Request) -> Instruction:
    if not req.args:
        raise req.fail(_err_at_least_one("ARG"))
    req.flags({})
    defs: list[ArgDef] = []
    for arg in req.args:
        key, sep, value = arg.partition("=")
        if sep and not key:
            raise req.fail("ARG names can not be blank")
        defs.append(ArgDef(key=key, value=value if sep else None))
    return ArgInstruction(
        name=req.name,
        location=req.location,
        original=req.original,
        args=tuple(defs),
        prev_comment=req.node.comments[-1] if req.node.comments else "",
    )


def _parse_shell(req: _Request) -> Instruction:
    req.flags({})
    if not req.args:
        raise req.fail(_err_at_least_one("SHELL"))
    if not req.node.json:
        extra = ""
        lowered = req.original.lower().replace("shell ", "")
        if (
            _DRIVE_PATH_RE.search(lowered)
            and "\\\\" not in lowered
            and "[" in lowered
            and "]" in lowered
        ):
            extra = (
                f". It looks like '{lowered}' includes a file path without an escaped back-slash. "
                'JSON requires back-slashes to be escaped such as ["c:\\\\path\\\\to\\\\file.exe", '
                '"/parameter"]'
            )
        raise req.fail(
            f'SHELL requires the arguments to be in JSON form (SHELL ["executable", "param"]){extra}'
        )
    return ShellInstruction(
        name=req.name, location=req.location, original=req.original, shell=req.args
    )


_PARSERS = {
    "add": _parse_add,
    "arg": _parse_arg,
    "cmd": _parse_cmd,
    "copy": _parse_copy,
    "entrypoint": _parse_entrypoint,
    "env": _parse_env,
    "expose": _parse_expose,
    "from": _parse_from,
    "healthcheck": _parse_healthcheck,
    "label": _parse_label,
    "maintainer": _parse_maintainer,
    "onbuild": _parse_onbuild,
    "run": _parse_run,
    "shell": _parse_shell,
    "stopsignal": _parse_stopsignal,
    "user": _parse_user,
    "volume": _parse_volume,
    "workdir": _parse_workdir,
}
