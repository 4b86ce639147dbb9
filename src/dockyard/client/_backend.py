"""The seam between :class:`~dockyard.client.Client` and where its builds run: an
engine in this process (:mod:`._embedded`) or a daemon (:mod:`._remote`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.core import BuildWarning, Reporter

if TYPE_CHECKING:
    from dockyard.cache import UsageFilter, UsageRecord
    from dockyard.engine import PruneResult
    from dockyard.registry import TagCheck
    from dockyard.session import SyncRequest

    from ._job import Job
    from ._result import ServerInfo, WorkerRecord

__all__ = ["Backend", "Outcome"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a backend reports of one job: the exporters' ``metadata`` (decoded), the
    frontend's ``warnings``, whether anything was ``built``, and whether the engine
    found the build ``replayable`` (``SolveResponse.replayable``; a daemon never says),
    and the file sync requests the job's session served (``synced``)."""

    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[BuildWarning, ...] = ()
    built: bool = True
    replayable: bool = False
    replay_checks: tuple[TagCheck, ...] = ()
    synced: tuple[SyncRequest, ...] = ()


class Backend(Protocol):
    """Runs jobs; ``mode`` is ``embedded`` or ``daemon``.

    :meth:`run` serves the job's session for as long as the job runs, sends its
    progress to ``reporter`` (every event, in order, before it returns) and raises the
    build's :class:`~dockyard.core.DockyardError` (with its step and source lines)
    when it fails. Cancelling it cancels the build.
    """

    mode: str

    @property
    def address(self) -> str | None: ...

    async def run(self, job: Job, reporter: Reporter) -> Outcome: ...

    async def du(self, filters: UsageFilter | None) -> list[UsageRecord]: ...

    async def prune(
        self,
        *,
        all: bool,
        keep_duration: float | None,
        keep_storage: int | None,
        filters: UsageFilter | None,
    ) -> PruneResult: ...

    async def info(self) -> ServerInfo: ...

    async def workers(self) -> list[WorkerRecord]: ...

    async def aclose(self) -> None: ...
