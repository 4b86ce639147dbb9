"""The converter's seam: its options, its result, and what it needs from outside.

:func:`~dockyard.dockerfile.convert` is pure — it reads no files and talks to no registry.
Everything from outside arrives here: the build settings (:class:`ConvertOptions`), the
named build contexts (:class:`NamedContext`) and base-image metadata through the one-method
:class:`ImageMetaResolver`, which the engine implements over its image store and registry
clients (tests use a fake; :class:`UnresolvedImages` answers without looking anything up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from dockyard import llb, oci
from dockyard.core import BuildWarning, Platform, host_platform

from ._mounts import NetworkMode

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ConvertOptions",
    "ConvertResult",
    "ImageMetaResolver",
    "NamedContext",
    "OnceImageResolver",
    "ResolvedImage",
    "StageResult",
    "UnresolvedImages",
]


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedImage:
    """What :meth:`ImageMetaResolver.resolve` found for a reference.

    ``ref`` is the reference to pull (normally the one asked for; a source policy may
    rewrite it), ``digest`` the manifest digest it resolved to (``None``: not pinned) and
    ``config`` the image config blob (``None``: unknown — the stage starts with an empty
    config, as for an image whose metadata could not be read ahead of the build).
    """

    ref: str
    digest: str | None = None
    config: bytes | None = None


class ImageMetaResolver(Protocol):
    """Looks up base images before conversion (BuildKit's ``ImageMetaResolver``).

    ``ref`` is a normalized registry reference (``docker.io/library/alpine:3.20``, possibly
    with ``@sha256:…``) or, for ``oci-layout://`` named contexts, ``oci-layout://STORE@DIGEST``.
    ``platform`` selects the manifest of an index; ``resolve_mode`` says whether a local
    copy may answer (``default``/``local``) or the registry must be asked (``pull``).

    Raise :class:`~dockyard.core.NotFoundError` (or another
    :class:`~dockyard.core.DockyardError`) when the image does not exist; the converter
    adds the ``Dockerfile:LINE`` of the ``FROM``. Calls for different stages run
    concurrently; each reference is asked once per conversion.
    """

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage: ...


class OnceImageResolver:
    """An :class:`ImageMetaResolver` that asks ``inner`` once per reference, platform
    and mode, however many stages (or conversions, one per platform) name the image:
    whoever asks first looks it up, the others wait for that answer."""

    def __init__(self, inner: ImageMetaResolver) -> None:
        self._inner = inner
        self._calls: dict[tuple[str, str, str], asyncio.Future[ResolvedImage]] = {}

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        import asyncio

        key = (ref, str(platform), resolve_mode.value)
        call = self._calls.get(key)
        if call is None:
            call = asyncio.ensure_future(
                self._inner.resolve(ref, platform=platform, resolve_mode=resolve_mode)
            )
            self._calls[key] = call
        return await call


class UnresolvedImages:
    """A resolver that looks nothing up: every image is used by tag, with an unknown
    config (no base ``ENV``, ``WORKDIR``, ``USER``…). For ``dockyard debug dump-llb``
    without an engine, and for tests that do not care about base images."""

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        return ResolvedImage(ref=ref)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NamedContext:
    """A ``--build-context NAME=…`` value: the filesystem ``state`` and, for images, the
    image ``config``. It replaces ``FROM NAME`` (a stage named NAME, or an image reference
    that normalizes to NAME), ``COPY --from=NAME`` and ``RUN --mount=from=NAME``.

    Build them with :func:`~dockyard.dockerfile.load_named_context`, or directly.
    """

    state: llb.State
    config: oci.ImageConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertOptions:
    """Settings of one Dockerfile conversion (one target platform).

    ``target`` is the stage to build (name or index; default: the last). ``build_args``
    are the ``--build-arg`` values (the proxy variables among them reach ``RUN`` without
    entering cache keys unless declared with ``ARG``; ``SOURCE_DATE_EPOCH`` and
    ``BUILDKIT_DOCKERFILE_CHECK`` are understood), ``labels`` the ``--label`` values.
    ``target_platform`` ``None`` means "the build platform" (and the image keeps its base
    image's platform, as BuildKit does without ``--platform``); ``build_platform``
    defaults to this host's.

    ``named_contexts`` map names to :class:`NamedContext`; ``context_name`` and
    ``session_id`` identify the local build context source (BuildKit's ``context``
    local), ``dockerignore`` are its exclude patterns. ``network`` is the default network
    of ``RUN`` (``--network``), ``hostname`` and ``extra_hosts`` its ``/etc/hosts`` settings;
    ``ulimits`` (``--ulimit``), ``shm_size`` (bytes, ``--shm-size``: a tmpfs of that size
    at ``/dev/shm``, unless the ``RUN`` mounts something there itself; 0: none) and
    ``cgroup_parent`` (``--cgroup-parent``) go on every ``RUN``, as BuildKit's.
    ``no_cache`` disables the cache for every stage, ``no_cache_stages`` for the named ones.
    ``resolve_mode`` is how base images resolve (``--pull``: ``pull``).
    ``cache_id_namespace`` prefixes cache mount ids. ``multi_platform``: this conversion
    is one of a multi-platform build (BuildKit's ``MultiPlatformRequested``): step names
    start with the stage's platform (``[linux/arm64 build 2/3] RUN make``); without it
    they are unchanged.
    """

    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    target_platform: Platform | None = None
    build_platform: Platform = field(default_factory=host_platform)
    named_contexts: Mapping[str, NamedContext] = field(default_factory=dict)
    context_name: str = "context"
    session_id: str | None = None
    dockerignore: tuple[str, ...] = ()
    network: NetworkMode = NetworkMode.DEFAULT
    hostname: str | None = None
    extra_hosts: tuple[llb.HostIP, ...] = ()
    ulimits: tuple[llb.Ulimit, ...] = ()
    shm_size: int = 0
    cgroup_parent: str = ""
    no_cache: bool = False
    no_cache_stages: frozenset[str] = frozenset()
    resolve_mode: llb.ResolveMode = llb.ResolveMode.DEFAULT
    cache_id_namespace: str = ""
    multi_platform: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "build_args", _frozen(self.build_args))
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "named_contexts", MappingProxyType(dict(self.named_contexts)))
        object.__setattr__(self, "dockerignore", tuple(self.dockerignore))
        object.__setattr__(self, "extra_hosts", tuple(self.extra_hosts))
        object.__setattr__(self, "ulimits", tuple(self.ulimits))
        object.__setattr__(
            self, "no_cache_stages", frozenset(s.lower() for s in self.no_cache_stages)
        )

    def ignores_cache(self, stage_name: str | None) -> bool:
        return self.no_cache or (stage_name is not None and stage_name in self.no_cache_stages)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StageResult:
    """A converted stage: its name as shown in progress (``stage-0`` when unnamed), its
    final ``state`` and :attr:`image_config`. Only stages the target needs are
    converted."""

    index: int
    name: str
    state: llb.State
    config: Callable[[], oci.ImageConfig] = field(repr=False)

    @property
    def image_config(self) -> oci.ImageConfig:
        """The stage's image config, made when first asked for (in a chain of stages
        each has the history of those before it: made for every stage, the configs
        were quadratic in time and memory)."""
        return self.config()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ConvertResult:
    """The outcome of :func:`~dockyard.dockerfile.convert`.

    ``state`` is the target stage's filesystem; ``image_config`` the config of the image
    to export (``created`` unset: the exporter stamps it), ``base_image_config`` the
    target's base image config as resolved (``None`` for ``scratch`` and stage bases
    without one). ``warnings`` are the build checks (and other warnings) to show at the
    end; ``stages`` the converted stages by index; ``platform`` the platform ops default
    to; ``epoch`` ``SOURCE_DATE_EPOCH`` (seconds) if set. ``source_map`` is the Dockerfile
    the ops' locations point into. ``sbom_targets`` are what an SBOM scans besides the
    result (``context``, stage names; ``BUILDKIT_SBOM_SCAN_CONTEXT`` /
    ``BUILDKIT_SBOM_SCAN_STAGE``), in name order.
    """

    state: llb.State
    image_config: oci.ImageConfig
    base_image_config: oci.ImageConfig | None
    warnings: tuple[BuildWarning, ...]
    stages: Mapping[int, StageResult]
    platform: Platform
    epoch: int | None
    source_map: llb.SourceMap
    sbom_targets: Mapping[str, llb.State] = field(default_factory=lambda: MappingProxyType({}))

    def definition(self) -> llb.Definition:
        """The target serialized, ops without a platform of their own on :attr:`platform`."""
        return self.state.marshal(platform=self.platform)
