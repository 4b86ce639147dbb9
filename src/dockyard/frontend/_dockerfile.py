"""The ``dockerfile.v0`` frontend: a Dockerfile from the client's session → LLB + image
config, through :func:`dockyard.dockerfile.convert`.

What it reads, as BuildKit's Dockerfile frontend does: the Dockerfile (``filename``) and
``<filename>.dockerignore`` from the client directory ``dockerfile``, and
``.dockerignore`` from the client directory ``context`` (the first ignore file found
applies to the build context). Named contexts (``--build-context``) come as BuildKit's
``context:NAME`` values: ``docker-image://REF``, ``oci-layout://PATH[:TAG|@DIGEST]``, a git
or http(s) URL, or ``local:DIR`` — a directory the client serves as ``DIR`` (its own
``.dockerignore`` applies to it).

Build checks run on every build; their warnings go to the reporter. In ``check`` mode
(BuildKit's ``requestid`` ``frontend.lint``, what ``--check`` asks) only the checks run:
nothing is converted or built, the result has no definition, and its metadata holds
BuildKit's lint document (``result.json``: the warnings, the Dockerfile, and as
``buildError`` a Dockerfile that does not parse or ``# check=error=true`` with warnings,
which fail the checks rather than the request), ``result.statuscode`` and ``version``.

A ``subrequest`` (BuildKit's ``requestid`` ``frontend.targets`` or ``frontend.outline``,
what ``--call=targets|outline`` asks) answers from the parsed Dockerfile alone: no
definition, and the answer in the result's metadata as BuildKit puts it —
``result.json`` (the JSON document), ``result.txt`` (the text buildx prints) and
``version``.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from dockyard.core import (
    BuildWarning,
    FrontendError,
    NotFoundError,
    Platform,
    UsageError,
    normalize_platforms,
)
from dockyard.core.csvfields import csv_fields
from dockyard.dockerfile import NetworkMode

from ._names import DOCKERFILE_FRONTEND
from ._progress import internal_step
from .types import FrontendContext, FrontendResult, PlatformResult

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.dockerfile import Dockerfile, ImageMetaResolver, LintResults, NamedContext
    from dockyard.exporter import SbomOptions

# The parser and the converter (and LLB) load when a build runs, not with the options a
# client makes (imports inside the functions below).
__all__ = ["DockerfileFrontend", "DockerfileOptions"]

Subrequest = Literal["outline", "targets"]

_CHECK_ARG = "BUILDKIT_DOCKERFILE_CHECK"
_LINT_REQUEST = "frontend.lint"
#: The subrequests this frontend answers, by their BuildKit ``requestid``.
_SUBREQUESTS: dict[str, Subrequest] = {
    "frontend.outline": "outline",
    "frontend.targets": "targets",
}
_LOCAL_PREFIX = "local:"


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerfileOptions:
    """Options of one Dockerfile build (``docker build`` flags, parsed).

    ``filename`` is the Dockerfile's path inside the client directory
    ``dockerfile_dir``; ``context_dir`` names the client directory of the build context.
    ``named_contexts`` map a name to a BuildKit ``context:NAME`` value (see the module
    docstring). ``platform`` is the target platform (``None``: the build platform);
    ``platforms`` the targets of a multi-platform build (two or more: each gets its own
    conversion, ``platform`` is then ``None``; one is moved to ``platform``).
    :attr:`target_platforms` is whichever is set.
    ``check``: run the build checks only. ``subrequest``: answer ``outline`` or
    ``targets`` instead of building (see the module docstring). ``no_cache`` ignores the cache for every stage,
    ``no_cache_stages`` for the named ones. ``pull``: always resolve base images from
    their registry. ``network``, ``hostname``, ``extra_hosts`` (``--add-host``),
    ``ulimits`` (``--ulimit``), ``shm_size`` (bytes, ``--shm-size``) and
    ``cgroup_parent`` (``--cgroup-parent``) apply to every ``RUN``. ``sbom``: make SBOM
    attestations of the result (BuildKit's ``attest:sbom``; see :mod:`._sbom`).
    """

    filename: str = "Dockerfile"
    dockerfile_dir: str = "dockerfile"
    context_dir: str = "context"
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    platforms: tuple[Platform, ...] = ()
    named_contexts: Mapping[str, str] = field(default_factory=dict)
    check: bool = False
    subrequest: Subrequest | None = None
    no_cache: bool = False
    no_cache_stages: frozenset[str] = frozenset()
    pull: bool = False
    network: NetworkMode = NetworkMode.DEFAULT
    hostname: str | None = None
    extra_hosts: tuple[llb.HostIP, ...] = ()
    ulimits: tuple[llb.Ulimit, ...] = ()
    shm_size: int = 0
    cgroup_parent: str = ""
    sbom: SbomOptions | None = None

    def __post_init__(self) -> None:
        if not self.filename or self.filename.endswith("/"):
            raise UsageError(f"invalid Dockerfile name {self.filename!r}")
        if self.shm_size < 0:
            raise UsageError(f"shm-size {self.shm_size}: must not be negative")
        object.__setattr__(self, "ulimits", tuple(self.ulimits))
        object.__setattr__(self, "build_args", _frozen(self.build_args))
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "named_contexts", _frozen(self.named_contexts))
        object.__setattr__(self, "no_cache_stages", frozenset(self.no_cache_stages))
        # lower-cased as BuildKit's add-hosts attribute is: the same LLB embedded or not
        object.__setattr__(
            self,
            "extra_hosts",
            tuple(dataclasses.replace(h, host=h.host.lower()) for h in self.extra_hosts),
        )
        platform, platforms = normalize_platforms(self.platform, self.platforms)
        object.__setattr__(self, "platform", platform)
        object.__setattr__(self, "platforms", platforms)

    @property
    def target_platforms(self) -> tuple[Platform, ...]:
        """The target platforms asked for (empty: the build platform)."""
        if self.platforms:
            return self.platforms
        return (self.platform,) if self.platform is not None else ()

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, str]) -> DockerfileOptions:
        """Parse BuildKit's frontend attributes: ``filename``, ``target``,
        ``build-arg:NAME``, ``label:NAME``, ``context:NAME``, ``platform`` (one or a
        comma-separated list), ``no-cache``
        (empty: every stage; else a comma-separated list), ``image-resolve-mode``
        (``pull``), ``force-network-mode``, ``hostname``, ``add-hosts``
        (``host=ip,...``, CSV), ``ulimit`` (``name=soft:hard,...``, CSV), ``shm-size``
        (bytes), ``cgroup-parent``, ``attest:sbom`` (an SBOM request),
        ``dockerfilekey``/``contextkey`` (client directory names) and
        ``requestid`` (``frontend.lint``: check mode; ``frontend.outline``,
        ``frontend.targets``: a subrequest; another ``frontend.*`` request is a
        :class:`~dockyard.core.UsageError`). Unknown keys are ignored."""
        build_args: dict[str, str] = {}
        labels: dict[str, str] = {}
        contexts: dict[str, str] = {}
        for key, value in attrs.items():
            if key.startswith("build-arg:"):
                build_args[key.removeprefix("build-arg:")] = value
            elif key.startswith("label:"):
                labels[key.removeprefix("label:")] = value
            elif key.startswith("context:"):
                contexts[key.removeprefix("context:")] = value
        platforms: tuple[Platform, ...] = ()
        if attrs.get("platform"):
            from ._platforms import parse_platforms

            try:
                platforms = parse_platforms(attrs["platform"])
            except ValueError as exc:
                raise UsageError(f"platform {attrs['platform']!r}: {exc}") from exc
        no_cache = "no-cache" in attrs and not attrs["no-cache"].strip()
        stages = frozenset(s.strip() for s in attrs.get("no-cache", "").split(",") if s.strip())
        request = attrs.get("requestid", "")
        if request.startswith("frontend.") and request not in (_LINT_REQUEST, *_SUBREQUESTS):
            known = ", ".join((_LINT_REQUEST, *_SUBREQUESTS))
            raise UsageError(f"unsupported frontend request {request!r} (supported: {known})")
        mode = attrs.get("image-resolve-mode", "default")
        if mode not in ("default", "pull", "local"):
            raise UsageError(f"image-resolve-mode {mode!r}: expected default, pull or local")
        network = attrs.get("force-network-mode", "default") or "default"
        try:
            network_mode = NetworkMode(network)
        except ValueError:
            raise UsageError(
                f"force-network-mode {network!r}: expected default, none or host"
            ) from None
        shm = attrs.get("shm-size", "").strip()
        try:
            shm_size = int(shm) if shm else 0
        except ValueError:
            raise UsageError(f"shm-size {shm!r}: expected a number of bytes") from None
        return cls(
            filename=attrs.get("filename") or "Dockerfile",
            dockerfile_dir=attrs.get("dockerfilekey") or "dockerfile",
            context_dir=attrs.get("contextkey") or "context",
            target=attrs.get("target") or None,
            build_args=build_args,
            labels=labels,
            platforms=platforms,
            named_contexts=contexts,
            check=request == _LINT_REQUEST,
            subrequest=_SUBREQUESTS.get(request),
            no_cache=no_cache,
            no_cache_stages=stages,
            pull=mode == "pull",
            network=network_mode,
            hostname=attrs.get("hostname") or None,
            extra_hosts=_extra_hosts(attrs.get("add-hosts", "")),
            ulimits=_ulimits(attrs.get("ulimit", "")),
            shm_size=shm_size,
            cgroup_parent=attrs.get("cgroup-parent", ""),
            sbom=_sbom(attrs),
        )


def _sbom(attrs: Mapping[str, str]) -> SbomOptions | None:
    from dockyard.exporter import SBOM_ATTR, SbomOptions

    value = attrs.get(SBOM_ATTR)
    return None if value is None else SbomOptions.from_attr(value)


def _extra_hosts(value: str) -> tuple[llb.HostIP, ...]:
    """BuildKit's ``add-hosts``: CSV ``host=ip`` fields, lower-cased (``host:ip`` is
    taken too); the IP must be an address (``host-gateway`` is the client's to resolve)."""
    if not value.strip():
        return ()
    from dockyard import llb

    hosts: list[llb.HostIP] = []
    for item in csv_fields(value, "add-hosts"):
        host, sep, ip = item.lower().partition("=")
        if not sep:
            host, sep, ip = item.lower().partition(":")
        if not sep or not host or not ip:
            raise UsageError(f"add-hosts entry {item!r}: expected host=ip")
        try:
            hosts.append(llb.HostIP(host=host, ip=ip))
        except UsageError as exc:
            raise UsageError(f"add-hosts entry {item!r}: {exc.message}") from None
    return tuple(hosts)


def _ulimits(value: str) -> tuple[llb.Ulimit, ...]:
    """BuildKit's ``ulimit``: CSV fields, each ``name=soft[:hard]`` (go-units')."""
    if not value.strip():
        return ()
    from dockyard import llb

    out: list[llb.Ulimit] = []
    for item in csv_fields(value, "ulimit"):
        try:
            out.append(llb.Ulimit.parse(item))
        except UsageError as exc:
            raise UsageError(f"ulimit entry {item!r}: {exc.message}") from None
    return tuple(out)


class DockerfileFrontend:
    """:class:`~dockyard.frontend.types.Frontend` for Dockerfiles (``dockerfile.v0``)."""

    def parse_options(self, attrs: Mapping[str, str]) -> DockerfileOptions:
        return DockerfileOptions.from_attrs(attrs)

    async def solve(self, ctx: FrontendContext, options: object) -> FrontendResult:
        if not isinstance(options, DockerfileOptions):
            raise UsageError(
                f"the {DOCKERFILE_FRONTEND} frontend takes DockerfileOptions, "
                f"not {type(options).__name__}"
            )
        from dockyard import llb

        if options.check:
            return await _check(ctx, options)
        dockerfile, ignore = await _load(ctx, options)
        if options.subrequest is not None:
            return _subrequest(ctx, dockerfile, options)
        resolve_mode = llb.ResolveMode.PULL if options.pull else llb.ResolveMode.DEFAULT
        if options.platforms:
            return await _multi_platform(ctx, dockerfile, options, ignore, resolve_mode)
        return await _convert(ctx, dockerfile, options, ignore, resolve_mode, options.platform)


async def _convert(
    ctx: FrontendContext,
    dockerfile: Dockerfile,
    options: DockerfileOptions,
    ignore: tuple[str, ...],
    resolve_mode: llb.ResolveMode,
    platform: Platform | None,
    *,
    report: bool = True,
    images: ImageMetaResolver | None = None,
) -> FrontendResult:
    """One conversion for target ``platform`` (``None``: the build platform); with
    ``images`` (a resolver the platforms share), one of a multi-platform build."""
    from dockyard.dockerfile import ConvertOptions, convert

    target_platform = platform or ctx.build_platform
    named: dict[str, NamedContext] = {}
    for name, value in options.named_contexts.items():
        named[name] = await _named_context(ctx, name, value, target_platform, resolve_mode)
    convert_options = ConvertOptions(
        target=options.target,
        build_args=options.build_args,
        labels=options.labels,
        target_platform=platform,
        build_platform=ctx.build_platform,
        named_contexts=named,
        context_name=options.context_dir,
        session_id=ctx.session_id,
        dockerignore=ignore,
        network=options.network,
        hostname=options.hostname,
        extra_hosts=options.extra_hosts,
        ulimits=options.ulimits,
        shm_size=options.shm_size,
        cgroup_parent=options.cgroup_parent,
        no_cache=options.no_cache,
        no_cache_stages=options.no_cache_stages,
        resolve_mode=resolve_mode,
        multi_platform=images is not None,
    )
    result = await convert(dockerfile, convert_options, images or ctx.images)
    if report:
        _report(ctx, result.warnings)
    sbom = None
    if options.sbom is not None:
        from ._sbom import sbom_scan

        sbom = await sbom_scan(
            ctx, options.sbom, result, images=images or ctx.images, resolve_mode=resolve_mode
        )
    return FrontendResult(
        definition=result.definition(),
        image_config=result.image_config,
        epoch=result.epoch,
        warnings=result.warnings,
        sbom=sbom,
    )


async def _multi_platform(
    ctx: FrontendContext,
    dockerfile: Dockerfile,
    options: DockerfileOptions,
    ignore: tuple[str, ...],
    resolve_mode: llb.ResolveMode,
) -> FrontendResult:
    """A conversion per target platform (BuildKit's dockerfile frontend builds each
    platform on its own; what the platforms share, such as stages ``FROM
    --platform=$BUILDPLATFORM``, converts to identical ops the solver runs once).
    Warnings said for several platforms are reported once. Step names carry their
    stage's platform, and a base image the platforms share (one ``FROM
    --platform=$BUILDPLATFORM``) is looked up, and shown, once."""
    import asyncio

    from dockyard.dockerfile import OnceImageResolver, expansion_budget

    from ._progress import platform_step_names

    # base-image lookups shared by the conversions: each asked once, whichever asks first
    images = OnceImageResolver(ctx.images)
    # one substitution total for the request (the conversions' tasks share the budget:
    # a total per platform multiplied it by the number of platforms a client names)
    with platform_step_names(), expansion_budget():
        results = await asyncio.gather(
            *(
                _convert(
                    ctx, dockerfile, options, ignore, resolve_mode, p, report=False, images=images
                )
                for p in options.platforms
            )
        )
    warnings: list[BuildWarning] = []
    for result in results:
        for warning in result.warnings:
            if warning not in warnings:
                warnings.append(warning)
    _report(ctx, tuple(warnings))
    parts = []
    for platform, result in zip(options.platforms, results, strict=True):
        assert result.definition is not None
        parts.append(
            PlatformResult(
                platform=platform,
                definition=result.definition,
                image_config=result.image_config,
                sbom=result.sbom,
            )
        )
    first = results[0]
    return FrontendResult(
        definition=first.definition,
        image_config=first.image_config,
        epoch=first.epoch,
        warnings=tuple(warnings),
        platforms=tuple(parts),
    )


@dataclass(slots=True)
class _Loading:
    """How far :func:`_load` got: the Dockerfile's bytes once read, the parsed file once
    parsed (an error in between is the Dockerfile's own)."""

    data: bytes | None = None
    dockerfile: Dockerfile | None = None


async def _load(
    ctx: FrontendContext, options: DockerfileOptions, loading: _Loading | None = None
) -> tuple[Dockerfile, tuple[str, ...]]:
    """The parsed Dockerfile and the ignore patterns of the build context; ``loading``
    follows the way."""
    import asyncio

    from dockyard.dockerfile import DOCKERIGNORE, parse_dockerfile

    loading = loading if loading is not None else _Loading()
    name = posixpath.basename(options.filename)
    own_ignore = options.filename + DOCKERIGNORE
    # the context's ignore file is asked for beside the Dockerfile, not after it (one
    # round trip to the client less); it is used unless the Dockerfile has its own
    context_ignore = asyncio.ensure_future(
        ctx.read_client_files(options.context_dir, [DOCKERIGNORE])
    )
    try:
        async with internal_step(ctx.reporter, f"[internal] load build definition from {name}"):
            files = await ctx.read_client_files(
                options.dockerfile_dir, [options.filename, own_ignore]
            )
            data = files.get(options.filename)
            if data is None:
                raise NotFoundError(
                    f"failed to read dockerfile: {options.filename}: no such file in the "
                    f"client's {options.dockerfile_dir!r} directory"
                )
            loading.data = data
            dockerfile = loading.dockerfile = parse_dockerfile(data, filename=name)
        async with internal_step(ctx.reporter, "[internal] load .dockerignore"):
            if own_ignore in files:
                patterns = _ignore_patterns(files[own_ignore], posixpath.basename(own_ignore))
            else:
                found = await context_ignore
                data = found.get(DOCKERIGNORE)
                patterns = _ignore_patterns(data, DOCKERIGNORE) if data is not None else ()
    finally:
        if not context_ignore.done():
            context_ignore.cancel()
            await asyncio.wait([context_ignore])
        if not context_ignore.cancelled():
            context_ignore.exception()  # an error of a read not needed is not reported
    return dockerfile, patterns


def _ignore_patterns(data: bytes, filename: str) -> tuple[str, ...]:
    from dockyard.dockerfile import parse_dockerignore

    ignore = parse_dockerignore(data, filename=filename)
    ignore.matcher()  # a malformed pattern is an error at its line
    return ignore.patterns


async def _check(ctx: FrontendContext, options: DockerfileOptions) -> FrontendResult:
    """The build checks alone, answered as BuildKit's ``frontend.lint`` request: the
    warnings go to the reporter, and the result's metadata holds the
    :class:`~dockyard.dockerfile.LintResults` document (``result.json``),
    ``result.statuscode`` (1: warnings or a failure), ``version`` and
    ``check.warnings`` (their number). A Dockerfile that does not parse and
    ``# check=error=true`` with warnings fail the checks, not the request: the failure
    is the document's ``buildError``."""
    from dockyard.dockerfile import CheckConfig, LintResults, lint

    loading = _Loading()
    try:
        dockerfile, ignore = await _load(ctx, options, loading)
    except FrontendError as exc:
        if loading.data is None or loading.dockerfile is not None:
            raise  # not the Dockerfile's own mistake (a bad ignore file)
        name = posixpath.basename(options.filename)
        failed = LintResults.from_warnings((), filename=name, source=loading.data, failure=exc)
        return _lint_answer(failed, ())
    config = dockerfile.check
    override = options.build_args.get(_CHECK_ARG)
    if override is not None:
        try:
            config = CheckConfig.parse(override)
        except FrontendError as exc:
            raise UsageError(f"--build-arg {_CHECK_ARG}: {exc.message}") from None
    report = lint(
        dockerfile,
        build_args=options.build_args,
        target=options.target,
        config=config,
        ignore=ignore,
    )
    _report(ctx, report.warnings)
    results = LintResults.from_warnings(
        report.warnings,
        filename=dockerfile.ast.filename,
        source=dockerfile.ast.source,
        failure=report.error(),
    )
    return _lint_answer(results, report.warnings)


def _lint_answer(results: LintResults, warnings: tuple[BuildWarning, ...]) -> FrontendResult:
    from dockyard.dockerfile import LINT_VERSION

    return FrontendResult(
        definition=None,
        warnings=warnings,
        metadata=MappingProxyType(
            {
                "check.warnings": str(len(warnings)),
                "result.json": results.to_json(),
                "result.statuscode": str(results.status_code),
                "version": LINT_VERSION,
            }
        ),
    )


def _subrequest(
    ctx: FrontendContext, dockerfile: Dockerfile, options: DockerfileOptions
) -> FrontendResult:
    from dockyard.dockerfile import (
        SUBREQUEST_VERSION,
        expansion_budget,
        list_targets,
        outline_target,
    )

    # the substitution total of a build's conversion (list_targets expands nothing)
    with expansion_budget():
        answer = (
            list_targets(dockerfile)
            if options.subrequest == "targets"
            else outline_target(
                dockerfile,
                target=options.target,
                build_args=options.build_args,
                build_platform=ctx.build_platform,
                target_platform=options.platform or next(iter(options.platforms), None),
            )
        )
    return FrontendResult(
        definition=None,
        metadata=MappingProxyType(
            {
                "result.json": answer.to_json(),
                "result.txt": answer.to_text(),
                "version": SUBREQUEST_VERSION,
            }
        ),
    )


def _report(ctx: FrontendContext, warnings: tuple[BuildWarning, ...]) -> None:
    for warning in warnings:
        ctx.reporter.emit(warning)


async def _named_context(
    ctx: FrontendContext,
    name: str,
    value: str,
    platform: Platform,
    resolve_mode: llb.ResolveMode,
) -> NamedContext:
    from dockyard.dockerfile import DOCKERIGNORE, load_named_context

    if value.startswith(_LOCAL_PREFIX):
        directory = value.removeprefix(_LOCAL_PREFIX)
        if not directory:
            raise UsageError(f"build context {name!r}: {value!r} names no client directory")
        found = await ctx.read_client_files(directory, [DOCKERIGNORE])
        data = found.get(DOCKERIGNORE)
        excludes = _ignore_patterns(data, DOCKERIGNORE) if data is not None else ()
        return await load_named_context(
            name,
            directory,
            resolver=ctx.images,
            platform=platform,
            resolve_mode=resolve_mode,
            session_id=ctx.session_id,
            local_name=directory,
            excludes=excludes,
        )
    if "://" not in value and not value.startswith("git@"):
        raise UsageError(
            f"build context {name!r}: {value!r} is not docker-image://REF, "
            "oci-layout://PATH, a git or http(s) URL, or local:DIR"
        )
    return await load_named_context(
        name,
        value,
        resolver=ctx.images,
        platform=platform,
        resolve_mode=resolve_mode,
        session_id=ctx.session_id,
    )
