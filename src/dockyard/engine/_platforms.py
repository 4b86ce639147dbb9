"""Multi-platform builds (``--platform linux/amd64,linux/arm64``): the frontend's
graph per platform solved in one job, side by side, then exported together.

As BuildKit does: one solver job holds every platform's vertices, so work the
platforms share (a stage ``FROM --platform=$BUILDPLATFORM`` that does not read a
``TARGET*`` argument converts to identical ops) runs once; each exporter is given
every platform's result (:class:`dockyard.exporter.PlatformExport`) and makes an index,
a sub-directory per platform, or refuses (``docker``). Remote cache exports record the
chains of every platform; inline caches are made per platform image.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dockyard.core import InternalError, Reporter, UsageError

from ._request import BuildRequest, SolveResponse

if TYPE_CHECKING:
    from dockyard.cache import ImmutableRef
    from dockyard.exporter import ExporterInstance, ExportResponse, PlatformExport
    from dockyard.frontend import FrontendResult
    from dockyard.session import SessionHandle
    from dockyard.solver import Edge, Job, ResultRef

    from ._engine import Engine

__all__ = ["check_exports", "solve_platforms"]


def check_exports(exporters: Sequence[ExporterInstance]) -> None:
    """Refuse, before anything is built, an export that cannot take several platforms
    (the docker exporter, as BuildKit's)."""
    from dockyard.exporter import MULTI_PLATFORM_DOCKER, DockerExport

    for exporter in exporters:
        if isinstance(exporter.options, DockerExport):
            raise UsageError(MULTI_PLATFORM_DOCKER)


async def solve_platforms(
    engine: Engine,
    request: BuildRequest,
    session: SessionHandle | None,
    reporter: Reporter,
    result: FrontendResult,
    exporters: Sequence[ExporterInstance],
    *,
    started_ns: int,
) -> SolveResponse:
    """Build every platform of ``result`` (:attr:`FrontendResult.platforms`) in one job
    and export them together. Never replayable (the CLI's no-op memo is for
    single-platform builds)."""
    check_exports(exporters)
    async with engine._build_job(request, session, reporter) as (job, lease):
        edges = [
            engine.llb.load(part.definition, entitlements=request.entitlements)
            for part in result.platforms
        ]
        refs = await _solve_all(job, edges)
        parts: list[PlatformExport] = []
        from dockyard.exporter import PlatformExport
        from dockyard.llbsolver import invocation_id

        from ._provenance import provenance_attestations
        from ._sbom import sbom_attestations

        invocation = invocation_id()  # shared by the platforms, as BuildKit's

        for part, edge, ref in zip(result.platforms, edges, refs, strict=True):
            # a cache-exports object per platform: each inline cache is its image's
            inline = engine._cache_exports(request, session, reporter).inline_cache(
                job, edge, request.exports, lease
            )
            sboms = await sbom_attestations(
                part.sbom,
                ref,
                job=job,
                llb=engine.llb,
                entitlements=request.entitlements,
                platform=part.platform,
                epoch=result.epoch,
                reporter=reporter,
            )
            parts.append(
                PlatformExport(
                    platform=part.platform,
                    ref=_immutable(ref),
                    image_config=part.image_config,
                    inline_cache=inline,
                    attestations=sboms
                    + provenance_attestations(
                        request,
                        part.definition,
                        edge,
                        job=job,
                        builder_platform=engine.config.platform,
                        started_ns=started_ns,
                        invocation=invocation,
                        epoch=result.epoch,
                    ),
                )
            )
        responses = await _export(exporters, parts, result.epoch, session, reporter)
        # --cache-to (local, registry) with the chains of every platform's result
        await engine._cache_exports(request, session, reporter).run(job, edges)
    metadata: dict[str, Any] = {}
    for response in responses:
        metadata.update(response.metadata())
    return SolveResponse(
        exporter_response=metadata,
        exports=tuple(responses),
        warnings=result.warnings,
    )


async def _solve_all(job: Job, edges: Sequence[Edge | None]) -> list[ResultRef | None]:
    """Every edge solved concurrently; the first failure cancels the others and is
    raised as it is (not wrapped in a group)."""

    async def none() -> None:
        return None

    tasks = [asyncio.ensure_future(job.solve(e) if e is not None else none()) for e in edges]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _immutable(ref: ResultRef | None) -> ImmutableRef | None:
    from dockyard.cache import ImmutableRef

    if ref is None:
        return None
    if not isinstance(ref.value, ImmutableRef):
        raise InternalError(f"the build's result {ref.value!r} is not a cache ref")
    return ref.value


async def _export(
    exporters: Sequence[ExporterInstance],
    parts: Sequence[PlatformExport],
    epoch: int | None,
    session: SessionHandle | None,
    reporter: Reporter,
) -> list[ExportResponse]:
    from dockyard.exporter import ExportRequest

    responses: list[ExportResponse] = []
    for exporter in exporters:
        request = ExportRequest(
            ref=None,
            epoch=epoch,
            client=session.exports if session is not None else None,
            reporter=reporter,
            platforms=tuple(parts),
        )
        responses.append(await exporter.export(request))
    return responses
