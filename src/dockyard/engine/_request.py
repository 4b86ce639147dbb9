"""What a build asks of the engine, and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dockyard.core import BuildWarning, Reporter, UsageError

if TYPE_CHECKING:
    from dockyard import llb, oci
    from dockyard.core import Grant
    from dockyard.exporter import ExportOptions, ExportResponse, ProvenanceOptions
    from dockyard.llbsolver.types import DebugShell
    from dockyard.registry import TagCheck
    from dockyard.remotecache import CacheExport, CacheImport

__all__ = ["BuildRequest", "SolveResponse"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class BuildRequest:
    """One build (BuildKit's ``SolveRequest``, parsed).

    Exactly one of ``definition`` (a raw LLB graph) or ``frontend`` (a registered
    frontend's name, with its typed ``frontend_options``) says what to build.
    ``exports`` are the exporter requests (values of :mod:`dockyard.exporter`), done in
    order after the build. ``cache_imports`` (``--cache-from``, values of
    :func:`~dockyard.engine.parse_cache_import`) are read before the build and consulted
    after the local cache; ``cache_exports`` (``--cache-to``,
    :func:`~dockyard.engine.parse_cache_export`) are written after the exports (an
    inline one goes into the image exports). ``session_id`` names the client session serving the build's
    directories, secrets, SSH agents and export targets (attach it to the engine's
    :attr:`~dockyard.engine.Engine.sessions` first). ``entitlements`` are the privileges
    the build asks for (each must be allowed by the engine's config). ``reporter``
    receives the build's progress. ``name`` labels the build in progress and errors.

    ``provenance`` asks for an SLSA provenance attestation of the result (BuildKit's
    ``attest:provenance``; ``None``: none, Dockyard's default); ``frontend_attrs`` are
    the frontend's attributes as BuildKit's keys give them (``filename``,
    ``build-arg:NAME`` ...), which the provenance records.

    ``debug_shell`` (``dockyard build --invoke``; its console is this process's
    terminal, or a daemon's client's relayed by the build's session): a failed ``RUN``
    step runs it on its own mounts before the build fails; after a successful
    single-platform build it runs on the result (a writable layer on top, discarded
    after).
    """

    definition: llb.Definition | None = None
    frontend: str | None = None
    frontend_options: object = None
    exports: tuple[ExportOptions, ...] = ()
    cache_imports: tuple[CacheImport, ...] = ()
    cache_exports: tuple[CacheExport, ...] = ()
    session_id: str | None = None
    entitlements: frozenset[Grant] = frozenset()
    reporter: Reporter | None = None
    name: str = ""
    provenance: ProvenanceOptions | None = None
    frontend_attrs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    debug_shell: DebugShell | None = None

    def __post_init__(self) -> None:
        if (self.definition is None) == (self.frontend is None):
            raise UsageError("a build request needs either a Definition or a frontend name")
        object.__setattr__(self, "frontend_attrs", MappingProxyType(dict(self.frontend_attrs)))
        object.__setattr__(self, "exports", tuple(self.exports))
        object.__setattr__(self, "cache_imports", tuple(self.cache_imports))
        object.__setattr__(self, "cache_exports", tuple(self.cache_exports))
        object.__setattr__(self, "entitlements", frozenset(self.entitlements))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SolveResponse:
    """What a finished build reports.

    ``exporter_response`` merges the exporters' metadata (``containerimage.digest``,
    ``image.name`` ..., what buildx writes to ``--metadata-file``); ``exports`` has each
    exporter's own response, in request order. ``image_config`` is the config the frontend produced (``None``
    for a raw Definition). ``warnings`` are those the frontend reported. ``built`` is
    false when the frontend had nothing to build (a ``--check`` run). ``replayable``:
    the build was a Dockerfile's and changed nothing — every step came from the cache,
    only ``local://`` sources ran (the context, read again) and every base image came
    from the local image store or from a registry whose tag ``replay_checks`` can ask
    about again — so that, while the state directory's generation
    (:mod:`dockyard.core.statedir`), those tags and the client's inputs stay the same,
    it would change nothing again (``dockyard build`` replays such builds).
    """

    exporter_response: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    exports: tuple[ExportResponse, ...] = ()
    image_config: oci.ImageConfig | None = None
    warnings: tuple[BuildWarning, ...] = ()
    built: bool = True
    replayable: bool = False
    replay_checks: tuple[TagCheck, ...] = ()
