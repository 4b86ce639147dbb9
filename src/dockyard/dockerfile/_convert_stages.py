"""The stage graph: which stages (and which images and build contexts) the target needs,
in what order, and what each starts from.

Following BuildKit's ``dockerfile2llb``:

- each ``FROM`` is expanded with the global arguments; a base that names an earlier stage
  (exact, lower-case name) makes that stage its base, anything else is an image, or a
  named build context that replaces it;
- ``COPY --from`` and ``RUN --mount=from=`` name a stage (case-insensitive name, or index)
  or else an image / build context; a stage may only read stages defined above it;
- only stages reachable from the target (through bases and those references) are
  converted; their base images are resolved concurrently;
- ``ONBUILD`` triggers of a base (image config, or ``ONBUILD`` instructions of a base
  stage) run first in the stage that uses it, and may add references of their own.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard import llb, oci
from dockyard.core import (
    ContentError,
    DockyardError,
    FrontendError,
    Platform,
    SourceLocation,
    UsageError,
    first_error,
)
from dockyard.core.applog import AppendLog

from ._convert_image import ImageDraft, empty_image, update_config
from ._convert_options import (
    ConvertOptions,
    ImageMetaResolver,
    NamedContext,
    OnceImageResolver,
)
from ._dockerfile import Dockerfile, Stage, parse_onbuild_trigger
from ._instructions import (
    AddInstruction,
    CopyInstruction,
    Instruction,
    OnbuildInstruction,
    RunInstruction,
    WorkdirInstruction,
)
from ._shell import ShellLex
from ._text import suggest

__all__ = [
    "DOCKERFILE_COMMAND",
    "SCAN_CONTEXT_ARG",
    "SCAN_STAGE_ARG",
    "SCRATCH",
    "Command",
    "Progress",
    "StageGraph",
    "StageNode",
    "build_graph",
    "familiar_name",
    "resolve",
]

SCRATCH = "scratch"
SCAN_CONTEXT_ARG = "BUILDKIT_SBOM_SCAN_CONTEXT"
SCAN_STAGE_ARG = "BUILDKIT_SBOM_SCAN_STAGE"
# Op description key BuildKit stores the instruction's source text under.
DOCKERFILE_COMMAND = "com.docker.dockerfile.v1.command"
_RESERVED_CONTEXTS = frozenset({"scratch", "context"})


@dataclass(frozen=True, slots=True)
class Command:
    """An instruction to run in a stage, with the nodes it reads (``COPY --from``: one;
    ``RUN``: one per mount, ``None`` for mounts without ``from=``)."""

    instruction: Instruction
    sources: tuple[StageNode | None, ...] = ()
    onbuild: bool = False


@dataclass(slots=True)
class Progress:
    """Progress names of a stage's steps, numbered like BuildKit's: ``[build 2/5] RUN
    make`` (``stage`` is empty when the Dockerfile has a single stage; a stage with no
    counted steps names them plainly). ``total`` counts ``FROM`` an image, ``RUN``,
    ``COPY``, ``ADD``, ``WORKDIR`` and inherited ``ONBUILD`` triggers.

    ``platform`` is set in a multi-platform build only: the stage's platform then leads
    the name (``[linux/arm64 build 2/5]``), followed, for a stage of another platform
    whose ``TARGET*`` variables say where its output goes (a cross-compiling stage
    ``FROM --platform=$BUILDPLATFORM``), by ``->arm64`` (``->os/arch`` across operating
    systems), as BuildKit's Dockerfile frontend names them."""

    stage: str = ""
    total: int = 0
    index: int = 0
    platform: Platform | None = None

    def name(
        self, text: str, *, onbuild: bool = False, env: Mapping[str, str] | None = None
    ) -> str:
        """The next step's name (advances the counter); ``env`` is the step's
        environment (for the cross-compilation target of a multi-platform build)."""
        if self.total == 0:
            return text
        self.index += 1
        prefix = ""
        if self.platform is not None:
            prefix = f"{self.platform}{_cross_target(self.platform, env or {})} "
        if self.stage:
            prefix += f"{self.stage} "
        width = len(str(self.total))
        return (
            f"[{prefix}{self.index:>{width}}/{self.total}] "
            + ("ONBUILD " if onbuild else "")
            + text
        )

    def again(
        self, text: str, *, onbuild: bool = False, env: Mapping[str, str] | None = None
    ) -> str:
        """The last step's number for another op of the same step (``COPY --link``)."""
        self.index -= 1
        return self.name(text, onbuild=onbuild, env=env)


def _cross_target(base: Platform, env: Mapping[str, str]) -> str:
    """``->ARCH`` (``->OS/ARCH``) when the ``TARGET*`` variables of ``env`` name a
    platform other than ``base`` (BuildKit's secondary platform in a step name)."""
    os, arch, variant = "", "", ""
    text = env.get("TARGETPLATFORM")
    if text:
        try:
            parsed = Platform.parse(text)
        except ValueError:
            return ""
        os, arch, variant = parsed.os, parsed.architecture, parsed.variant
    else:
        os = env.get("TARGETOS", "")
        arch = env.get("TARGETARCH", "")
        variant = env.get("TARGETVARIANT", "")
        if not (os or arch or variant):
            return ""
    target = Platform.of(os or base.os, arch or base.architecture, variant)
    if target.os != base.os:
        return f"->{target}"
    if target.architecture != base.architecture:
        return "->" + target.architecture + (f"/{target.variant}" if target.variant else "")
    return ""


@dataclass(eq=False, slots=True, kw_only=True)
class StageNode:
    """A stage of the Dockerfile, or an image / build context that ``COPY --from`` or
    ``RUN --mount=from=`` names (``stage`` is then ``None``).

    Built in three steps: the graph (what the Dockerfile says: base, references,
    commands), resolution (:func:`resolve`: the state and config it starts from) and
    conversion (the dispatcher stores the final state and config, and what child stages
    inherit)."""

    # The graph:
    stage: Stage | None
    base_name: str
    location: SourceLocation
    platform: Platform | None = None
    base: StageNode | None = None
    named: NamedContext | None = None
    replaced: bool = False  # a named context stands for the whole stage
    commands: list[Command] = field(default_factory=list)
    deps: list[StageNode] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    onbuild_done: bool = False
    # Resolution, then conversion:
    resolved: bool = False
    ref: str | None = None  # the image reference used, digest pinned when known
    state: llb.State | None = None
    image: oci.ImageConfig | None = None
    base_image: oci.ImageConfig | None = None
    # a converted stage's config, made into a config when asked for (image_config)
    draft: ImageDraft | None = None
    # a converted stage's variables (its state's env), until a stage based on it takes
    # them over
    env: dict[str, str] | None = None
    env_follows_config: bool = False  # its env ends with its config's Env, in order
    dispatched: bool = False
    build_args: AppendLog[tuple[str, str | None]] = field(default_factory=AppendLog)
    # the last value given to each SBOM scan argument among build_args (read per stage:
    # a walk of build_args per stage was quadratic in a chain of stages)
    scan_args: Mapping[str, str] = field(default_factory=dict)
    workdir_set: bool = False

    @property
    def display_name(self) -> str:
        """The stage's name in progress output (``stage-N`` when unnamed)."""
        return self.progress.stage

    @property
    def index(self) -> int:
        return self.stage.index if self.stage is not None else -1

    def image_config(self) -> oci.ImageConfig | None:
        """The config the node ends with: the converted stage's, else the resolved
        one."""
        if self.draft is not None:
            return self.draft.image()
        return self.image

    @property
    def name(self) -> str | None:
        return self.stage.name if self.stage is not None else None


@dataclass(slots=True, kw_only=True)
class StageGraph:
    """All nodes (stages in file order, then the images/contexts they name) and the
    target."""

    nodes: list[StageNode]
    stages: list[StageNode]
    target: StageNode
    builder: _Builder

    def reachable(self) -> list[StageNode]:
        """The target and everything it needs, in node order."""
        seen: set[int] = set()
        todo = [self.target]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.base is not None:
                todo.append(node.base)
            todo.extend(node.deps)
        return [n for n in self.nodes if id(n) in seen]


def familiar_name(ref: str) -> str:
    """The short form of an image reference (``docker.io/library/alpine:latest`` →
    ``alpine``), which is how named contexts are looked up."""
    try:
        full = llb.normalize_image_ref(ref)
    except UsageError:
        return ref
    name = full
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix) and (prefix == "docker.io/" or "/" not in name[len(prefix) :]):
            name = name[len(prefix) :]
            break
    return name.removesuffix(":latest")


def _named_context(options: ConvertOptions, name: str) -> NamedContext | None:
    if name.lower() in _RESERVED_CONTEXTS or not options.named_contexts:
        return None
    wanted = familiar_name(name)
    for key, context in options.named_contexts.items():
        if key == name or familiar_name(key) == wanted:
            return context
    return None


def _mount_from(spec: str) -> str:
    """The ``from=`` of a ``--mount`` spec as written (variables are not allowed there)."""
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error:
        return ""
    found = ""
    for item in fields:
        key, sep, value = item.partition("=")
        if sep and key.lower() == "from":
            found = value
    return found


class _Builder:
    def __init__(
        self, dockerfile: Dockerfile, options: ConvertOptions, args: Mapping[str, str]
    ) -> None:
        self.df = dockerfile
        self.options = options
        self.args = args
        self.lex = ShellLex(dockerfile.escape)
        self.nodes: list[StageNode] = []
        self.stages: list[StageNode] = []
        self.by_name: dict[str, StageNode] = {}
        self.extra: dict[str, StageNode] = {}

    def stage_nodes(self) -> None:
        for stage in self.df.stages:
            node = StageNode(
                stage=stage,
                base_name=self._expand_base(stage),
                location=stage.location,
                platform=self._platform(stage),
            )
            self.stages.append(node)
            self.nodes.append(node)
            if stage.name is not None:
                node.named = _named_context(self.options, stage.name)
                if node.named is not None:
                    node.replaced = True
                    self.by_name[stage.name] = node
                    node.progress.stage = stage.name
                    continue
            node.progress.stage = stage.name or f"stage-{stage.index}"
            base = self.by_name.get(node.base_name)
            if base is not None:
                node.base = base
            else:
                node.named = _named_context(self.options, node.base_name)
            if stage.name is not None:
                self.by_name[stage.name] = node
            total = 1 if node.base_name != SCRATCH and node.base is None else 0
            for command in stage.commands:
                if isinstance(
                    command, AddInstruction | CopyInstruction | RunInstruction | WorkdirInstruction
                ):
                    total += 1
            node.progress.total = total

    def _expand_base(self, stage: Stage) -> str:
        try:
            value = self.lex.process(stage.base, self.args).value
        except FrontendError as exc:
            raise stage.from_.error(exc.message) from None
        if not value:
            raise stage.from_.error(f"base name ({stage.base}) should not be blank")
        return value

    def _platform(self, stage: Stage) -> Platform | None:
        written = stage.platform
        if written is None:
            return None
        try:
            value = self.lex.process(written, self.args).value
        except FrontendError as exc:
            raise stage.from_.error(
                f"failed to process arguments for platform {written}: {exc.message}"
            ) from None
        if not value:
            raise stage.from_.error(f"empty platform value from expression {written}")
        try:
            return Platform.parse(value)
        except ValueError as exc:
            raise stage.from_.error(f"failed to parse platform {written}: {exc}") from None

    def find(self, ref: str, instruction: Instruction) -> StageNode:
        """The node ``ref`` (``--from`` / ``from=``) names, creating image nodes."""
        if ref.isdigit():
            index = int(ref)
            if index >= len(self.stages):
                raise instruction.error(
                    f"invalid stage index {index}: the Dockerfile has {len(self.stages)} stage(s)"
                )
            return self.stages[index]
        node = self.by_name.get(ref.lower())
        if node is not None:
            return node
        node = self.extra.get(ref)
        if node is None:
            node = StageNode(stage=None, base_name=ref, location=instruction.location)
            node.named = _named_context(self.options, ref)
            self.extra[ref] = node
            self.nodes.append(node)
        return node

    def command(self, instruction: Instruction, *, onbuild: bool = False) -> Command:
        if isinstance(instruction, CopyInstruction) and instruction.from_stage:
            ref = instruction.from_stage
            if self.lex.process(ref, {}).value != ref:
                raise instruction.error(
                    "variable expansion is not supported for --from, define a new stage with "
                    "FROM using ARG from global scope as a workaround"
                )
            return Command(instruction, (self.find(ref, instruction),), onbuild)
        if isinstance(instruction, RunInstruction) and instruction.mount_specs:
            sources: list[StageNode | None] = []
            for spec in instruction.mount_specs:
                ref = _mount_from(spec)
                sources.append(self.find(ref, instruction) if ref else None)
            return Command(instruction, tuple(sources), onbuild)
        return Command(instruction, (), onbuild)

    def commands(self) -> None:
        for node in self.stages:
            if node.replaced or node.stage is None:
                continue
            for instruction in node.stage.commands:
                command = self.command(instruction)
                node.commands.append(command)
                _add_deps(node, command)


def _add_deps(node: StageNode, command: Command) -> bool:
    added = False
    for source in command.sources:
        if source is not None and source not in node.deps:
            node.deps.append(source)
            added = True
    return added


def _check_cycles(nodes: list[StageNode]) -> None:
    state: dict[int, int] = {}  # 1: on the path, 2: done
    for start in nodes:
        if state.get(id(start)):
            continue
        stack: list[tuple[StageNode, int]] = [(start, 0)]
        state[id(start)] = 1
        while stack:
            node, position = stack.pop()
            edges = ([node.base] if node.base is not None else []) + node.deps
            if position < len(edges):
                stack.append((node, position + 1))
                nxt = edges[position]
                mark = state.get(id(nxt))
                if mark == 1:
                    raise FrontendError(
                        f"circular dependency detected on stage: {nxt.display_name or nxt.base_name}",
                        locations=(nxt.location,),
                    )
                if not mark:
                    state[id(nxt)] = 1
                    stack.append((nxt, 0))
            else:
                state[id(node)] = 2


def build_graph(
    dockerfile: Dockerfile, options: ConvertOptions, args: Mapping[str, str]
) -> StageGraph:
    """The stage graph of ``dockerfile`` for ``options.target`` (nothing resolved yet)."""
    builder = _Builder(dockerfile, options, args)
    builder.stage_nodes()
    target = _target(builder, options.target)
    builder.commands()
    _check_cycles(builder.nodes)
    if len(builder.nodes) == 1:
        builder.nodes[0].progress.stage = ""
    return StageGraph(nodes=builder.nodes, stages=builder.stages, target=target, builder=builder)


def _target(builder: _Builder, target: str | None) -> StageNode:
    if not target:
        return builder.stages[-1]
    if target.isdigit() and int(target) < len(builder.stages):
        return builder.stages[int(target)]
    node = builder.by_name.get(target.lower())
    if node is None:
        names = [n.name for n in builder.stages if n.name]
        hint = suggest(target, names, case_sensitive=False)
        extra = f" (did you mean {hint}?)" if hint else ""
        raise UsageError(f"target stage {target!r} could not be found{extra}")
    return node


async def resolve(
    graph: StageGraph,
    options: ConvertOptions,
    resolver: ImageMetaResolver,
    source_map: llb.SourceMap,
) -> list[StageNode]:
    """Resolve the bases of every node the target needs (concurrently), run the
    ``ONBUILD`` setup, and return the reachable nodes in order."""
    builder = graph.builder
    target_platform = options.target_platform or options.build_platform
    resolver = OnceImageResolver(resolver)
    while True:
        reachable = graph.reachable()
        pending = [n for n in reachable if n.base is None and not n.resolved and not _is_scratch(n)]
        for node in reachable:
            if node.base is None and not node.resolved and _is_scratch(node):
                node.platform = node.platform or target_platform
                node.state = llb.scratch()
                node.image = empty_image(node.platform)
                node.resolved = True
                node.dispatched = node.stage is None
        if pending:
            failed: dict[int, str] = {}
            try:
                async with asyncio.TaskGroup() as group:
                    for node in pending:
                        group.create_task(
                            _resolve_base(
                                node, options, resolver, target_platform, source_map, failed
                            )
                        )
            except BaseExceptionGroup as group_error:
                error = first_error(group_error)
                base_name = failed.get(id(error))
                if base_name is not None and isinstance(error, DockyardError):
                    # only for the error shown: a thousand stages on one missing image
                    # fail together, and suggesting for each against every stage name
                    # was quadratic (4000 stages: 45 s)
                    match = suggest(base_name, _suggestible_names(graph), case_sensitive=True)
                    if match is not None:
                        message = f"{error.message} (did you mean {match}?)"
                        raise type(error)(message, locations=error.locations) from None
                raise error from None
        new_deps = False
        for node in reachable:
            if _init_onbuild(node, builder):
                new_deps = True
        if not new_deps:
            _check_cycles(graph.nodes)
            return reachable


def _is_scratch(node: StageNode) -> bool:
    return node.base_name == SCRATCH and node.named is None


def _init_onbuild(node: StageNode, builder: _Builder) -> bool:
    """Prepend the ``ONBUILD`` triggers ``node`` inherits; true if they add references."""
    if node.onbuild_done or node.replaced or node.stage is None:
        return False
    node.onbuild_done = True
    triggers: list[str] = []
    if node.base is None:
        if node.image is not None and node.image.config.on_build:
            triggers.extend(node.image.config.on_build)
            # the triggers run in this stage: its image does not pass them on
            node.image = update_config(node.image, on_build=())
    else:
        for command in node.base.commands:
            if isinstance(command.instruction, OnbuildInstruction) and not command.onbuild:
                triggers.append(command.instruction.expression)
    if not triggers:
        return False
    commands = []
    added = False
    for expression in triggers:
        instruction = parse_onbuild_trigger(expression, location=node.location)
        command = builder.command(instruction, onbuild=True)
        commands.append(command)
        if _add_deps(node, command):
            added = True
    node.commands[:0] = commands
    node.progress.total += len(commands)
    return added


async def _resolve_base(
    node: StageNode,
    options: ConvertOptions,
    resolver: ImageMetaResolver,
    target_platform: Platform,
    source_map: llb.SourceMap,
    failed: dict[int, str],
) -> None:
    try:
        await _resolve_base_inner(node, options, resolver, target_platform, source_map)
    except FrontendError:
        raise
    except DockyardError as exc:
        error = type(exc)(f"{node.base_name}: {exc.message}", locations=(node.location,))
        # a mistyped stage name is resolved as an image: resolve() says which stage was
        # meant, for the error it reports
        failed[id(error)] = node.base_name
        raise error from exc


_COMMON_IMAGES = ("alpine", "busybox", "centos", "debian", "golang", "ubuntu", "fedora")


def _suggestible_names(graph: StageGraph) -> tuple[str, ...]:
    """What a base or ``--from`` name that fails to resolve may have meant: the
    Dockerfile's stage names and a few common images (as BuildKit suggests them)."""
    stages = [node.name for node in graph.stages if node.name]
    images = [
        form
        for name in _COMMON_IMAGES
        for form in (name, f"docker.io/library/{name}", f"{name}:latest")
    ]
    return (*stages, *images)


async def _resolve_base_inner(
    node: StageNode,
    options: ConvertOptions,
    resolver: ImageMetaResolver,
    target_platform: Platform,
    source_map: llb.SourceMap,
) -> None:
    platform = node.platform or target_platform
    node.resolved = True
    node.dispatched = node.replaced or node.stage is None
    named = node.named
    if node.replaced and named is not None:
        node.state = named.state
        node.image = _without_created(named.config) if named.config is not None else None
        if node.image is not None and node.image.os and node.image.architecture:
            node.platform = node.image.platform
        else:
            node.platform = platform
        return
    try:
        ref = llb.normalize_image_ref(node.base_name)
    except UsageError as exc:
        raise FrontendError(
            f"failed to parse stage name {node.base_name!r}: {exc.message}",
            locations=(node.location,),
        ) from None
    node.platform = platform
    if options.multi_platform:
        node.progress.platform = platform
    if named is not None:
        image = named.config if named.config is not None else empty_image(platform)
        node.base_image = image
        node.image = _without_created(image)
        node.state = named.state.with_platform(platform)
        return
    found = await resolver.resolve(ref, platform=platform, resolve_mode=options.resolve_mode)
    name = found.ref
    if found.digest:
        name = name.split("@", 1)[0] + "@" + found.digest
    scratch = False
    if found.config is not None:
        try:
            image = oci.ImageConfig.parse(found.config)
        except ContentError as exc:
            raise FrontendError(
                f"failed to parse image config of {name}: {exc.message}",
                locations=(node.location,),
            ) from None
        node.base_image = image
        node.image = _without_created(image)
        scratch = not image.diff_ids and all(h.empty_layer for h in image.history)
    else:
        node.image = oci.ImageConfig(
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
        )
    if scratch:
        node.state = llb.scratch()
        return
    node.ref = name
    description = {}
    if node.stage is not None:
        description[DOCKERFILE_COMMAND] = node.stage.from_.original
    node.state = llb.image(
        name,
        platform=platform,
        resolve_mode=options.resolve_mode,
        constraints=llb.Constraints(
            custom_name=node.progress.name(f"FROM {name}"),
            description=description,
            locations=(source_map.location(*node.location.ranges),),
        ),
    )


def _without_created(image: oci.ImageConfig) -> oci.ImageConfig:
    return dataclasses.replace(image, created=None)
