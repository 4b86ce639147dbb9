"""The daemon's seam: what it needs of the engine it serves.

:class:`dockyard.engine.Engine` satisfies :class:`ServedEngine`; the servicer's unit
tests use a fake one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dockyard.cache import UsageFilter, UsageRecord
    from dockyard.engine import BuildRequest, PruneResult, SolveResponse
    from dockyard.frontend import Frontends

__all__ = ["ServedEngine"]


class ServedEngine(Protocol):
    """An engine as the daemon serves it.

    ``solve`` may be called concurrently by many clients and must not serialize them
    (identical steps of concurrent builds run once: that is the engine's solver's
    job). Cancelling the task awaiting ``solve``/``du``/``prune`` cancels that work and
    waits for it to clean up. Errors are :class:`~dockyard.core.DockyardError`
    subclasses. ``frontends`` parses a frontend's attributes into its options.
    """

    frontends: Frontends

    @property
    def state_dir(self) -> Path: ...

    async def solve(self, request: BuildRequest) -> SolveResponse: ...

    async def du(self, filters: UsageFilter | None = None) -> list[UsageRecord]: ...

    async def prune(
        self,
        *,
        all: bool = False,
        keep_duration: float | None = None,
        keep_storage: int | None = None,
        filters: UsageFilter | None = None,
    ) -> PruneResult: ...
