"""A build's provenance attestations (``BuildRequest.provenance``): the SLSA predicate
of each platform's solve, handed to the exporters as :class:`dockyard.exporter.
Attestation` values (they add the subjects and store the statements). A ``mode=max``
predicate is finished as the exporter writes it (:attr:`Attestation.late`), when an
image's layers are made: its ``layers`` metadata lists them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.core import Platform
    from dockyard.exporter import Attestation, ExportOptions
    from dockyard.llb import Definition
    from dockyard.solver import Edge, Job

    from ._request import BuildRequest

__all__ = ["provenance_attestations"]


def _remote_context(request: BuildRequest) -> bool:
    """Whether the build's context is a remote one the client fetched and serves as a
    directory (it sends the URL as the ``context`` attribute)."""
    attrs = request.frontend_attrs
    return bool(attrs.get(attrs.get("contextkey") or "context"))


def _layer_variants(exports: Sequence[ExportOptions], epoch: int | None) -> list[str]:
    """The blob variants whose layers the predicate may list: the image exports'
    (what they just made), then any compression as pulled."""
    from dockyard.exporter import (
        Compression,
        CompressionOptions,
        DockerExport,
        ImageExport,
        OciExport,
    )

    out: list[str] = []
    for export in exports:
        if isinstance(export, ImageExport | OciExport | DockerExport):
            image = export.image
            compression = image.compression
            clamp = image.source_date_epoch if image.source_date_epoch is not None else epoch
            if image.rewrite_timestamp and clamp is not None:
                out.append(compression.variant(clamp))
            if compression.variant() not in out:
                out.append(compression.variant())
    for kind in Compression:
        variant = CompressionOptions(type=kind).variant()
        if variant not in out:
            out.append(variant)
    return out


def provenance_attestations(
    request: BuildRequest,
    definition: Definition,
    edge: Edge | None,
    *,
    job: Job,
    builder_platform: Platform,
    started_ns: int,
    invocation: str,
    epoch: int | None = None,
) -> tuple[Attestation, ...]:
    """The attestations of one platform's solve of ``definition`` (none when the
    request asks for no provenance); ``invocation`` is shared by a build's platforms."""
    options = request.provenance
    if options is None:
        return ()
    from dockyard.exporter import Attestation
    from dockyard.frontend import DockerfileOptions
    from dockyard.llbsolver import (
        capture_provenance,
        provenance_predicate,
        slsa1_predicate,
        step_layers,
    )

    read: tuple[str, ...] = ()
    served: tuple[str, ...] = ()
    frontend_options = request.frontend_options
    if isinstance(frontend_options, DockerfileOptions):  # read through the session
        read = (frontend_options.context_dir, frontend_options.dockerfile_dir)
        if _remote_context(request):
            # a remote context the client fetched: BuildKit lists no locals for it
            read, served = (), read
    captured = capture_provenance(
        definition,
        [edge],
        platform=builder_platform,
        steps=options.mode == "max",
        read_locals=read,
        served_locals=served,
    )
    finished_ns = time.time_ns()

    def render(layers: dict[str, list[list[dict[str, Any]]]] | None) -> dict[str, Any]:
        predicate = provenance_predicate(
            captured,
            options=options,
            frontend=request.frontend or "",
            attrs=request.frontend_attrs,
            builder_platform=builder_platform,
            started_ns=started_ns,
            finished_ns=finished_ns,
            invocation=invocation,
            layers=layers,
        )
        return slsa1_predicate(predicate) if options.version == "v1" else predicate

    late = None
    if options.mode == "max" and edge is not None:
        variants = _layer_variants(request.exports, epoch)

        async def late() -> dict[str, Any]:
            return render(await step_layers(job, edge, captured.digest_mapping, variants))

    return (Attestation(predicate_type=options.predicate_type, predicate=render(None), late=late),)
