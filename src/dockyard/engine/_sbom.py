"""A build's SBOM attestations (a frontend's :class:`~dockyard.frontend.SbomScan`): each
platform's scan solved in the build's job, its statements handed to the exporters as
:class:`~dockyard.exporter.Attestation` values (subjects: what they export, unless a
generator named its own).

With a generator image the scan is the graph of the generator's output directory,
solved like any step (sandboxed, network off); its files are the statements. Without
one, the built-in scanner (:func:`dockyard.exporter.scan_rootfs`) reads the result —
scan ``sbom`` — and each extra target (``sbom-context``, ``sbom-STAGE``), solved first,
mounted read-only; it runs in a thread, under its own progress step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import InternalError

if TYPE_CHECKING:
    from dockyard import oci
    from dockyard.core import Grant, Platform, Reporter
    from dockyard.exporter import Attestation
    from dockyard.frontend import SbomScan
    from dockyard.llbsolver import LlbSolver
    from dockyard.solver import Edge, Job, ResultRef

__all__ = ["config_platform", "sbom_attestations"]


def config_platform(config: oci.ImageConfig | None, default: Platform) -> Platform:
    """The platform an image config says (``default`` without one): the SBOM step's
    name shows it."""
    from dockyard.core import Platform

    if config is None or not config.os or not config.architecture:
        return default
    return Platform.of(config.os, config.architecture, config.variant)


async def sbom_attestations(
    scan: SbomScan | None,
    ref: ResultRef | None,
    *,
    job: Job,
    llb: LlbSolver,
    entitlements: frozenset[Grant],
    platform: Platform,
    epoch: int | None,
    reporter: Reporter,
) -> tuple[Attestation, ...]:
    """The SBOM attestations of one platform's result ``ref`` (none without a scan)."""
    if scan is None:
        return ()
    from dockyard.exporter import read_sbom_statements

    if scan.output is not None:
        edge = llb.load(scan.output, entitlements=entitlements)
        out = await job.solve(edge) if edge is not None else None
        async with _mounted(out) as root:
            found = await asyncio.to_thread(
                read_sbom_statements,
                str(root) if root is not None else None,
                generator=scan.generator,
            )
        return tuple(found)
    return await _builtin(
        scan,
        ref,
        job=job,
        llb=llb,
        entitlements=entitlements,
        platform=platform,
        epoch=epoch,
        reporter=reporter,
    )


async def _builtin(
    scan: SbomScan,
    ref: ResultRef | None,
    *,
    job: Job,
    llb: LlbSolver,
    entitlements: frozenset[Grant],
    platform: Platform,
    epoch: int | None,
    reporter: Reporter,
) -> tuple[Attestation, ...]:
    from dockyard.exporter import Progress, sbom_attestation, scan_rootfs

    names = list(scan.targets)
    edges = [llb.load(d, entitlements=entitlements) for d in scan.targets.values()]
    refs = await _solve_all(job, edges)
    created = _created(epoch)
    progress = Progress(
        reporter, f"[{platform}] generating sbom using builtin scanner", kind="sbom"
    )
    progress.start()
    out: list[Attestation] = []
    try:
        for name, target in [("sbom", ref), *zip(names, refs, strict=True)]:
            async with _mounted(target) as root:
                document = await asyncio.to_thread(
                    scan_rootfs, str(root) if root is not None else None, name=name, created=created
                )
            out.append(sbom_attestation(document, name))
    except BaseException as exc:
        progress.finish(exc)
        raise
    progress.finish()
    return tuple(out)


async def _solve_all(job: Job, edges: Sequence[Edge | None]) -> list[ResultRef | None]:
    async def one(edge: Edge | None) -> ResultRef | None:
        return await job.solve(edge) if edge is not None else None

    return list(await asyncio.gather(*(one(e) for e in edges)))


def _created(epoch: int | None) -> str:
    """SPDX's ``created``: ``SOURCE_DATE_EPOCH`` when the build has one, else now."""
    seconds = epoch if epoch is not None else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@contextlib.asynccontextmanager
async def _mounted(ref: ResultRef | None) -> AsyncIterator[Path | None]:
    """The tree of ``ref`` read-only for the block (``None``: an empty result)."""
    from dockyard.cache import ImmutableRef

    if ref is None:
        yield None
        return
    value = ref.value
    if not isinstance(value, ImmutableRef):
        raise InternalError(f"an SBOM target {value!r} is not a cache ref")
    mounts = await value.mounts()
    if len(mounts) == 1 and mounts[0].type == "bind":
        yield Path(mounts[0].source)  # a plain directory (native snapshots): read in place
        return
    async with value.mount() as root:
        yield root
