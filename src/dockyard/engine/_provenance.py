"""A build's provenance attestations (``BuildRequest.provenance``): the SLSA predicate
of each platform's solve, handed to the exporters as :class:`dockyard.exporter.
Attestation` values (they add the subjects and store the statements)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.core import Platform
    from dockyard.exporter import Attestation
    from dockyard.llb import Definition
    from dockyard.solver import Edge

    from ._request import BuildRequest

__all__ = ["provenance_attestations"]


def provenance_attestations(
    request: BuildRequest,
    definition: Definition,
    edge: Edge | None,
    *,
    builder_platform: Platform,
    started_ns: int,
    invocation: str,
) -> tuple[Attestation, ...]:
    """The attestations of one platform's solve of ``definition`` (none when the
    request asks for no provenance); ``invocation`` is shared by a build's platforms."""
    options = request.provenance
    if options is None:
        return ()
    from dockyard.exporter import SLSA_PROVENANCE_V02, Attestation
    from dockyard.frontend import DockerfileOptions
    from dockyard.llbsolver import capture_provenance, provenance_predicate

    read: tuple[str, ...] = ()
    frontend_options = request.frontend_options
    if isinstance(frontend_options, DockerfileOptions):  # read through the session
        read = (frontend_options.context_dir, frontend_options.dockerfile_dir)
    captured = capture_provenance(
        definition,
        [edge],
        platform=builder_platform,
        steps=options.mode == "max",
        read_locals=read,
    )
    predicate = provenance_predicate(
        captured,
        options=options,
        frontend=request.frontend or "",
        attrs=request.frontend_attrs,
        builder_platform=builder_platform,
        started_ns=started_ns,
        finished_ns=time.time_ns(),
        invocation=invocation,
    )
    return (Attestation(predicate_type=SLSA_PROVENANCE_V02, predicate=predicate),)
