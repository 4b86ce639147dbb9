"""One unit of work a client hands to its backend (:class:`Job`): what to build, how to
export it, and what the client's session serves while it runs. :func:`dockerfile_job`
makes one from :class:`~dockyard.client.BuildOptions`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from dockyard.core import UsageError

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.exporter import Annotation, ExportOptions, ImageOptions, ProvenanceOptions
    from dockyard.llbsolver import DebugShell
    from dockyard.registry import Reference
    from dockyard.session import (
        CredentialsSource,
        ExportTarget,
        LayoutStore,
        SecretStore,
        Session,
        SshAgentProvider,
        SyncRequest,
        UserTerminal,
    )

    from ._context import PreparedContext
    from ._options import BuildOptions, CacheSpec

__all__ = ["LOAD_TARGET", "Job", "dockerfile_job", "exports_of"]

#: The session's export target of ``--load`` (a pipe into ``docker load``).
LOAD_TARGET = "docker-load"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Job:
    """A build as a backend runs it.

    Exactly one of ``definition`` or ``frontend`` (with ``frontend_options``). ``exports``
    name destinations on this host (paths, stdout) or targets in ``targets`` (already
    offered by the session, like the ``docker load`` pipe); a remote backend turns the
    paths into session targets. ``directories``, ``secrets``, ``ssh`` and
    ``credentials`` are what the session serves. ``entitlements`` are asked for by name.
    ``cache_from``/``cache_to`` are the remote caches to import and export.
    ``prefetch``: sync requests the session starts walking when it is made
    (:meth:`Session.prefetch <dockyard.session.Session.prefetch>`).
    ``provenance``: the SLSA provenance attestation asked for (``None``: none).
    ``frontend_attrs``: attributes sent beside the frontend options' (a remote
    context's URL and digest, :attr:`PreparedContext.source_attrs`), which the frontend
    ignores and the provenance records.
    ``owners``: whether the directories' files keep their owners in the sync; a
    Dockerfile build sends them as 0:0, as docker build and buildx do (buildctl and an
    LLB solve keep them).
    """

    name: str
    definition: llb.Definition | None = None
    frontend: str | None = None
    frontend_options: object = None
    exports: tuple[ExportOptions, ...] = ()
    directories: Mapping[str, Path] = field(default_factory=dict)
    targets: Mapping[str, ExportTarget] = field(default_factory=dict)
    secrets: SecretStore | None = None
    ssh: SshAgentProvider | None = None
    credentials: CredentialsSource | None = None
    entitlements: frozenset[str] = frozenset()
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    shared_key: str = ""
    prefetch: tuple[SyncRequest, ...] = ()
    provenance: ProvenanceOptions | None = None
    frontend_attrs: Mapping[str, str] = field(default_factory=dict)
    debug_shell: DebugShell | None = None
    owners: bool = True

    def __post_init__(self) -> None:
        if (self.definition is None) == (self.frontend is None):
            raise UsageError("a build needs either a Definition or a frontend")
        object.__setattr__(self, "directories", MappingProxyType(dict(self.directories)))
        object.__setattr__(self, "frontend_attrs", MappingProxyType(dict(self.frontend_attrs)))
        object.__setattr__(self, "targets", MappingProxyType(dict(self.targets)))

    def session(
        self,
        extra_targets: Mapping[str, ExportTarget] | None = None,
        *,
        content_stores: Mapping[str, LayoutStore] | None = None,
        shell: UserTerminal | None = None,
    ) -> Session:
        """A new session serving this job (plus ``extra_targets``, the OCI layouts
        ``content_stores`` and the terminal of a daemon's debug shell ``shell``); the
        walks of ``prefetch`` start now."""
        from dockyard.session import Session

        session = Session(
            name=self.name,
            shared_key=self.shared_key,
            directories=self.directories,
            secrets=self.secrets,
            ssh=self.ssh,
            credentials=self.credentials,
            exports={**self.targets, **(extra_targets or {})},
            content_stores=content_stores,
            shell=shell,
            owners=self.owners,
        )
        session.prefetch(self.prefetch)
        return session


def _references(tags: tuple[str, ...]) -> tuple[Reference, ...]:
    from dockyard.registry import InvalidReferenceError, Reference

    out: list[Reference] = []
    for tag in tags:
        try:
            ref = Reference.parse(tag)
        except InvalidReferenceError as exc:
            raise UsageError(f"invalid tag {tag!r}: {exc}") from None
        if ref.digest is not None:
            raise UsageError(f"invalid tag {tag!r}: a tag cannot have a digest")
        if ref not in out:
            out.append(ref)
    return tuple(out)


def _named(image: ImageOptions, names: tuple[Reference, ...]) -> ImageOptions:
    if image.names or not names:
        return image
    return dataclasses.replace(image, names=names)


def exports_of(options: BuildOptions, *, load: bool) -> tuple[ExportOptions, ...]:
    """The exports of a build, as buildx makes them from ``-o``, ``-t``, ``--push`` and
    ``--load``: the tags name every image output that has no ``name=`` of its own;
    ``--push`` pushes the image output (adding one); ``--load`` adds a docker tarball
    for ``docker load``; ``-t`` alone stores the image in the local store."""
    from dockyard.exporter import ClientTarget, DockerExport, ImageExport, ImageOptions, OciExport

    names = _references(options.tags)
    outputs: list[ExportOptions] = []
    for export in options.outputs:
        if isinstance(export, ImageExport | OciExport | DockerExport):
            export = dataclasses.replace(export, image=_named(export.image, names))
        outputs.append(export)
    if options.push:
        if not names and not any(isinstance(e, ImageExport) and e.image.names for e in outputs):
            raise UsageError("tag is needed when pushing to registry (-t NAME --push)")
        pushed = False
        for i, export in enumerate(outputs):
            if isinstance(export, ImageExport):
                outputs[i] = dataclasses.replace(export, push=True)
                pushed = True
        if not pushed:
            outputs.append(ImageExport(push=True, image=_named(ImageOptions(), names)))
    if load:
        outputs.append(
            DockerExport(dest=ClientTarget(name=LOAD_TARGET), image=_named(ImageOptions(), names))
        )
    if not outputs and names:
        outputs.append(ImageExport(image=_named(ImageOptions(), names)))
    for export in outputs:
        if isinstance(export, ImageExport) and export.push and not export.image.names:
            raise UsageError("pushing an image needs a name (-t NAME or name=)")
    if options.annotations:
        outputs = [_annotated(e, options.annotations) for e in outputs]
    return tuple(outputs)


def _annotated(export: ExportOptions, annotations: tuple[Annotation, ...]) -> ExportOptions:
    """``export`` with the build's ``--annotation`` values after its own (an image
    output; the others carry no manifests)."""
    from dockyard.exporter import DockerExport, ImageExport, OciExport

    if not isinstance(export, ImageExport | OciExport | DockerExport):
        return export
    own = export.image.annotations
    extra = tuple(a for a in annotations if a not in own)
    return dataclasses.replace(
        export, image=dataclasses.replace(export.image, annotations=own + extra)
    )


def dockerfile_job(
    options: BuildOptions,
    context: PreparedContext,
    *,
    targets: Mapping[str, ExportTarget] | None = None,
    secrets: SecretStore | None,
    ssh: SshAgentProvider | None,
    credentials: CredentialsSource | None,
) -> Job:
    """The ``dockerfile.v0`` job of a build whose context is prepared."""
    from dockyard.frontend import DOCKERFILE_FRONTEND, DockerfileOptions

    directories: dict[str, Path] = {
        "context": context.context,
        "dockerfile": context.dockerfile_dir,
    }
    named: dict[str, str] = {}
    for name, value in options.build_contexts.items():
        if value.startswith("oci-layout://"):
            from ._stores import absolute_layout

            named[name] = absolute_layout(value)  # a relative PATH is this directory's
            continue
        if "://" in value or value.startswith("git@"):
            named[name] = value
            continue
        path = Path(value)
        if not path.is_dir():
            raise UsageError(
                f"--build-context {name}={value}: not a directory, docker-image://REF, "
                "oci-layout://PATH or a git/http URL"
            )
        key = f"named:{name}"
        directories[key] = path.absolute()
        named[name] = f"local:{key}"
    from dockyard.dockerfile import NetworkMode

    frontend_options = DockerfileOptions(
        filename=context.filename,
        target=options.target,
        build_args=options.build_args,
        labels=options.labels,
        platform=options.platform,
        platforms=options.platforms,
        named_contexts=named,
        check=options.check,
        subrequest=options.subrequest,
        no_cache=options.no_cache,
        no_cache_stages=frozenset(options.no_cache_filter),
        pull=options.pull,
        network=NetworkMode(options.network),
        extra_hosts=options.extra_hosts,
        ulimits=options.ulimits,
        shm_size=options.shm_size,
        cgroup_parent=options.cgroup_parent,
        sbom=options.sbom if options.builds else None,
    )
    exports: tuple[ExportOptions, ...] = ()
    if options.builds:
        exports = exports_of(options, load=options.load)
    return Job(
        name=f"build {context.description}",
        frontend=DOCKERFILE_FRONTEND,
        frontend_options=frontend_options,
        exports=exports,
        directories=directories,
        targets=targets or {},
        secrets=secrets,
        ssh=ssh,
        credentials=credentials,
        entitlements=options.entitlements,
        cache_from=options.cache_from,
        cache_to=options.cache_to,
        shared_key=context.shared_key,
        prefetch=options.prefetch,
        provenance=options.provenance if options.builds else None,
        frontend_attrs=dict(context.source_attrs),
        debug_shell=options.debug_shell if options.builds else None,
        owners=False,
    )
