"""Solving Definitions: load → vertices → a solver job → result refs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockyard.core import Reporter
from dockyard.llb import Definition
from dockyard.session.types import SecretStore, SshForwarder
from dockyard.solver import CacheSource, Edge, Job, JobValue, ResultRef, Solver

from ._load import load
from .types import (
    DEBUG_SHELL,
    ENTITLEMENTS,
    SECRETS,
    SESSION_ID,
    SSH_AGENTS,
    DebugShell,
    Grant,
    Worker,
)

__all__ = ["JobOptions", "LlbSolver"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOptions:
    """What one build brings to its job: the client session, its secrets and SSH
    agents (the session handle's ``secrets`` and ``ssh`` callers), the privileges it
    was granted, the caches it imports (``--cache-from``, consulted after the local
    cache), and the ``--invoke`` shell failed execs run (``debug_shell``)."""

    session_id: str | None = None
    secrets: SecretStore | None = None
    ssh_agents: SshForwarder | None = None
    entitlements: frozenset[Grant] = frozenset()
    cache_sources: tuple[CacheSource, ...] = ()
    debug_shell: DebugShell | None = None

    def values(self) -> dict[JobValue[Any], Any]:
        """The job values ops read (:data:`~dockyard.llbsolver.types.SECRETS` ...)."""
        values: dict[JobValue[Any], Any] = {ENTITLEMENTS: self.entitlements}
        if self.session_id is not None:
            values[SESSION_ID] = self.session_id
        if self.secrets is not None:
            values[SECRETS] = self.secrets
        if self.ssh_agents is not None:
            values[SSH_AGENTS] = self.ssh_agents
        if self.debug_shell is not None:
            values[DEBUG_SHELL] = self.debug_shell
        return values


class LlbSolver:
    """Solves LLB Definitions on one worker with one :class:`dockyard.solver.Solver`.

    The engine makes one per worker; each build gets a job (:meth:`new_job`) that
    frontends may use for several Definitions (results are shared within the job).
    """

    def __init__(self, worker: Worker, solver: Solver) -> None:
        self.worker = worker
        self.solver = solver

    def load(
        self, definition: Definition, *, entitlements: frozenset[Grant] = frozenset()
    ) -> Edge | None:
        """The vertices of ``definition`` (see :func:`dockyard.llbsolver.load`)."""
        return load(definition, self.worker, entitlements=entitlements)

    def new_job(
        self, options: JobOptions | None = None, *, reporter: Reporter | None = None, name: str = ""
    ) -> Job:
        """A solver job carrying ``options`` as job values; ``async with`` it."""
        options = options or JobOptions()
        return self.solver.new_job(
            reporter=reporter,
            values=options.values(),
            name=name,
            cache_sources=options.cache_sources,
        )

    async def solve_in(
        self, job: Job, definition: Definition, *, options: JobOptions | None = None
    ) -> ResultRef | None:
        """Solve ``definition`` in ``job``; the handle is the job's (``clone()`` to keep
        it). ``None`` for an empty Definition."""
        entitlements = (options or JobOptions()).entitlements
        edge = self.load(definition, entitlements=entitlements)
        if edge is None:
            return None
        return await job.solve(edge)

    async def solve(
        self,
        definition: Definition,
        *,
        options: JobOptions | None = None,
        reporter: Reporter | None = None,
        name: str = "",
    ) -> ResultRef | None:
        """Solve ``definition`` in a job of its own; the returned handle is the
        caller's to release (its ``value`` is the result's
        :class:`~dockyard.llbsolver.types.ImmutableRef`)."""
        options = options or JobOptions()
        edge = self.load(definition, entitlements=options.entitlements)
        if edge is None:
            return None
        async with self.new_job(options, reporter=reporter, name=name) as job:
            ref = await job.solve(edge)
            return ref.clone()
