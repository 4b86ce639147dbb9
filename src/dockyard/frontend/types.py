"""The seams of ``dockyard.frontend``: what a frontend is, what it may use while it
works, and what it returns.

A :class:`Frontend` turns a build description (a Dockerfile, a Python build file) into
an LLB :class:`~dockyard.llb.Definition` plus the image config to export with it. The
engine looks frontends up by name (``dockerfile.v0``, ``python``) and calls
:meth:`Frontend.solve` once per build with a :class:`FrontendContext` bound to that
build: the client's session (files it serves), base-image metadata and the build's
reporter. Options are typed per frontend; :meth:`Frontend.parse_options` turns
BuildKit-style ``key=value`` attributes (what a daemon receives on the wire) into them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dockyard.core import BuildWarning, Platform, Reporter

if TYPE_CHECKING:
    from dockyard import llb, oci
    from dockyard.dockerfile import ImageMetaResolver

__all__ = ["Frontend", "FrontendContext", "FrontendResult", "PlatformResult", "SbomScan"]


@runtime_checkable
class FrontendContext(Protocol):
    """What one build offers its frontend (implemented by the engine).

    - :attr:`session_id`: the client session of the build (``None`` without one); local
      sources the frontend makes should name it.
    - :attr:`reporter`: progress of the build (warnings go here as
      :class:`~dockyard.core.BuildWarning`).
    - :attr:`build_platform`: the platform build steps run on (the worker's).
    - :attr:`images`: base-image metadata (config, digest) by reference.
    - :meth:`read_client_files`: the content of ``paths`` (relative, slash-separated, no
      wildcards) in the directory the client serves as ``directory`` (``dockerfile``,
      ``context``, a named context); a symlink among them is followed inside that
      directory. Paths that do not exist are absent from the result (a directory among
      them too). Raises :class:`~dockyard.core.SessionError` when the build has no
      session and :class:`~dockyard.core.NotFoundError` when the client offers no such
      directory.
    """

    @property
    def session_id(self) -> str | None: ...

    @property
    def reporter(self) -> Reporter: ...

    @property
    def build_platform(self) -> Platform: ...

    @property
    def images(self) -> ImageMetaResolver: ...

    async def read_client_files(
        self, directory: str, paths: Sequence[str]
    ) -> Mapping[str, bytes]: ...


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SbomScan:
    """How to make the SBOM attestations of one result (a build that asks for them).

    With a generator image (``generator`` its name), ``output`` is the graph of the
    directory the generator writes its in-toto statements into (BuildKit's SBOM
    generator protocol, the scanned filesystems mounted read-only): the engine solves it
    beside the result and attaches every statement. Without one (``generator`` empty),
    the engine runs the built-in scanner over the result (scan ``sbom``) and over each
    of ``targets``: the extra filesystems by scan name (``sbom-context``,
    ``sbom-STAGE``), each a graph the engine solves."""

    generator: str = ""
    output: llb.Definition | None = None
    targets: Mapping[str, llb.Definition] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PlatformResult:
    """One target platform's part of a multi-platform :class:`FrontendResult`: the
    graph to solve for ``platform``, the image config to export its result with and,
    when SBOMs are asked for, how to make them (``sbom``)."""

    platform: Platform
    definition: llb.Definition
    image_config: oci.ImageConfig | None = None
    sbom: SbomScan | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FrontendResult:
    """What a frontend produced.

    ``definition`` is the graph to solve; ``None`` means there is nothing to build (a
    ``--check`` run, which only reports). ``image_config`` is the config to export the
    result with (``None``: the exporter makes a minimal one). ``epoch`` is the build's
    ``SOURCE_DATE_EPOCH`` (seconds), for reproducible exports. ``warnings`` were already
    sent to the reporter; they are kept here for the response summary.

    ``platforms`` is empty for a single-platform result (``definition`` and
    ``image_config`` are all of it). A multi-platform build (BuildKit's result with
    ``refs.platforms`` metadata) has one :class:`PlatformResult` per target platform,
    two or more, in the order asked; ``definition`` and ``image_config`` are then the
    first platform's, for callers that only know one (:attr:`multi_platform` tells).

    ``sbom`` (a frontend that makes SBOMs, asked for them): how to make the result's
    SBOM attestations (a multi-platform result has one per platform, in ``platforms``).
    """

    definition: llb.Definition | None
    image_config: oci.ImageConfig | None = None
    epoch: int | None = None
    warnings: tuple[BuildWarning, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    platforms: tuple[PlatformResult, ...] = ()
    sbom: SbomScan | None = None

    @property
    def multi_platform(self) -> bool:
        """Whether this result is built for several platforms (see ``platforms``)."""
        return len(self.platforms) > 1


@runtime_checkable
class Frontend(Protocol):
    """Turns one kind of build description into LLB.

    :meth:`parse_options` checks BuildKit-style frontend attributes (``filename``,
    ``target``, ``build-arg:NAME`` ...) and returns this frontend's own frozen options
    value, raising :class:`~dockyard.core.UsageError` for a bad one; unknown keys are
    ignored, as BuildKit's frontends do. :meth:`solve` accepts that value (or one built
    directly) and raises :class:`~dockyard.core.UsageError` for a value of another type,
    :class:`~dockyard.core.FrontendError` (located in the build description) for a
    mistake in it. A frontend holds no per-build state: one instance serves concurrent
    builds.
    """

    def parse_options(self, attrs: Mapping[str, str]) -> object: ...

    async def solve(self, ctx: FrontendContext, options: object) -> FrontendResult: ...
