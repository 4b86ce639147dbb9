"""The engine: the composition root that owns one state directory's services and
serves builds on them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard.core import (
    CancelledError,
    DockyardError,
    NullReporter,
    Reporter,
)

from ._config import EngineConfig
from ._lock import StateLock
from ._request import BuildRequest, SolveResponse

if TYPE_CHECKING:
    from dockyard.cache import CacheManager, UsageFilter, UsageRecord
    from dockyard.content import ContentStore, ImageStore
    from dockyard.exporter import Attestation
    from dockyard.frontend import FrontendResult, Frontends
    from dockyard.llb import Definition
    from dockyard.llbsolver import JobOptions, LlbSolver
    from dockyard.registry import TagCheck
    from dockyard.session import SessionHandle, SessionManager
    from dockyard.solver import Job, SqliteCacheKeyStorage
    from dockyard.source import FrontendImageResolver

    from ._caches import CacheExports
    from ._plugins import Sources

__all__ = ["Engine", "PruneResult"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    """What :meth:`Engine.prune` removed: cache records and unreferenced blobs."""

    records: tuple[UsageRecord, ...] = ()
    blobs_removed: int = 0
    blob_bytes_freed: int = 0

    @property
    def reclaimed(self) -> int:
        """Bytes freed in total (records' own sizes plus blobs)."""
        return sum(r.size for r in self.records) + self.blob_bytes_freed


class _Closers:
    """Cleanups of what :meth:`Engine.open` made so far, undone in reverse order (a
    plain class: a mutable list holder gains nothing from a dataclass but its cost).

    Steps pushed with ``parallel=True`` that follow each other run concurrently (the
    stores' closes: each SQLite database checkpoints its WAL when its last connection
    closes, two fsyncs that need not wait for the other databases'); ``parallel`` sync
    steps run in a thread then."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps: list[tuple[Callable[[], Awaitable[None]], bool]] = []

    def push(self, step: Callable[[], Awaitable[None]], *, parallel: bool = False) -> None:
        self.steps.append((step, parallel))

    def push_sync(self, step: Callable[[], object], *, parallel: bool = False) -> None:
        async def run() -> None:
            if parallel:
                await asyncio.to_thread(step)
            else:
                step()

        self.steps.append((run, parallel))

    async def run(self) -> None:
        while self.steps:
            step, parallel = self.steps.pop()
            group = [step]
            while parallel and self.steps and self.steps[-1][1]:
                group.append(self.steps.pop()[0])
            if len(group) == 1:
                with contextlib.suppress(Exception):
                    await step()
            else:
                await asyncio.gather(*(s() for s in group), return_exceptions=True)


class Engine:
    """A build engine on one state directory (see the package docstring).

    Make it with :meth:`open` and close it with :meth:`close` (or ``async with``). While
    it is open it holds ``<state>/locks/engine.lock``: a second engine on the same state
    directory, in this process or another, is refused with an error naming the holder.
    Builds (:meth:`solve`) may run concurrently; identical steps run once.
    """

    def __init__(
        self,
        *,
        config: EngineConfig,
        lock: StateLock,
        cache: CacheManager,
        content: ContentStore,
        keys: SqliteCacheKeyStorage,
        llb: LlbSolver,
        sessions: SessionManager,
        frontends: Frontends,
        images: ImageStore,
        sources: Sources,
        closers: _Closers,
    ) -> None:
        self.config = config
        self.cache = cache
        self.content = content
        self.sessions = sessions
        self.frontends = frontends
        self.llb = llb
        self.images = images
        self._sources = sources
        self._lock = lock
        self._keys = keys
        self._closers = closers
        self._builds: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle -----------------------------------------------------------------------
    @classmethod
    async def open(cls, config: EngineConfig | None = None) -> Engine:
        """Lock the state directory, recover what a crash left, and assemble the engine."""
        config = config or EngineConfig()
        state = config.state_dir
        closers = _Closers()
        lock = StateLock.acquire(state)
        closers.push_sync(lock.release)
        try:
            return await cls._assemble(config, lock, closers)
        except BaseException:
            await closers.run()
            raise

    @classmethod
    async def _assemble(cls, config: EngineConfig, lock: StateLock, closers: _Closers) -> Engine:
        # heavy parts load here, not when the package is imported
        from dockyard.cache import CacheManager
        from dockyard.content import ContentStore, ImageStore
        from dockyard.executor.cdi import DeviceRegistry
        from dockyard.llbsolver import CacheRefs, LlbSolver, Worker
        from dockyard.session import SessionManager
        from dockyard.solver import Solver, SqliteCacheKeyStorage

        from ._executor import LazyExecutor
        from ._plugins import frontends, sources

        state = config.state_dir
        scratch = state / "tmp"
        # a crash's leftovers: containers and their mounts first (they hold snapshots),
        # then what the cache manager recovers itself
        executor = LazyExecutor(
            state / "executor", runtime=config.runtime, binary=config.runtime_binary
        )
        # (looked for on the loop: after a clean exit there is nothing, and a thread
        # started only to find that costs more than looking)
        if executor.stale():
            await asyncio.to_thread(executor.reap_stale)
        if _has_entries(scratch):
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        cache = await CacheManager.open(state, snapshotter=config.snapshotter)
        closers.push(cache.close, parallel=True)
        content = ContentStore(state / "content")
        closers.push_sync(content.close, parallel=True)
        images = ImageStore.open(state, content)
        closers.push_sync(images.close, parallel=True)
        keys = SqliteCacheKeyStorage(state / "metadata.db")
        closers.push_sync(keys.close, parallel=True)
        sessions = SessionManager()  # SSH sockets in the system temp dir: short paths
        closers.push(sessions.aclose)
        plugins = sources(config, cache=cache, content=content, images=images, sessions=sessions)
        closers.push(plugins.aclose)
        worker = Worker(
            refs=CacheRefs(cache),
            executor=executor,
            sources=plugins.resolvers,
            default_network=config.network,
            platform=config.platform,
            mount_dir=cache.mount_dir,
            devices=DeviceRegistry.from_config(config.cdi),  # (reads nothing yet)
        )
        solver = Solver(
            result_storage=cache, key_storage=keys, max_parallelism=config.max_parallelism
        )
        return cls(
            config=config,
            lock=lock,
            cache=cache,
            content=content,
            keys=keys,
            llb=LlbSolver(worker, solver),
            sessions=sessions,
            frontends=frontends(),
            images=images,
            sources=plugins,
            closers=closers,
        )

    async def close(self) -> None:
        """Cancel running builds, wait for them to clean up (no mount or container is
        left behind), close every session and release the state directory."""
        if self._closed:
            return
        self._closed = True
        builds = list(self._builds)
        for task in builds:
            task.cancel()
        if builds:
            await asyncio.gather(*builds, return_exceptions=True)
        await self._closers.run()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _tracked(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` in a task of its own that :meth:`close` cancels (never the
        caller's task). A build cut short by ``close`` raises
        :class:`~dockyard.core.CancelledError`; cancelling the caller cancels ``work``
        and waits for it to clean up."""
        if self._closed:
            work.close()
            raise CancelledError("the engine is closed")
        task = asyncio.get_running_loop().create_task(work)
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and current.cancelling() == 0:
                raise CancelledError("the engine was closed while the build ran") from None
            raise

    # -- builds --------------------------------------------------------------------------
    async def solve(self, request: BuildRequest) -> SolveResponse:
        """Run one build: the frontend (or the raw Definition) → the solver → the
        exporters. Progress goes to ``request.reporter``. Errors are
        :class:`~dockyard.core.DockyardError` naming the failing step (``err.vertex``)
        and, for frontends that know it, the line of the build description."""
        return await self._tracked(self._solve_request(request))

    async def _solve_request(self, request: BuildRequest) -> SolveResponse:
        self._check_entitlements(request)
        reporter = request.reporter or NullReporter()
        session = (
            await self.sessions.get(request.session_id) if request.session_id is not None else None
        )
        guard = session.cancel_on_close() if session is not None else contextlib.nullcontext()
        async with guard:
            return await self._solve(request, session, reporter)

    def _check_entitlements(self, request: BuildRequest) -> None:
        allowed = {grant.entitlement for grant in self.config.entitlements}
        denied = {grant.entitlement for grant in request.entitlements} - allowed
        if denied:
            names = ", ".join(sorted(e.value for e in denied))
            # A refusal of the engine, not a mistake on the command line (which asked
            # for it with --allow): a failed build, as BuildKit's daemon reports it.
            raise DockyardError(
                f"granting entitlement {names} is not allowed by the engine's configuration "
                "(dockyardd: allowed-entitlements in its config file)"
            )

    def _job_options(self, request: BuildRequest, session: SessionHandle | None) -> JobOptions:
        from dockyard.llbsolver import JobOptions

        if session is None:
            return JobOptions(entitlements=request.entitlements, debug_shell=request.debug_shell)
        return JobOptions(
            session_id=session.id,
            secrets=session.secrets,
            ssh_agents=session.ssh,
            entitlements=request.entitlements,
            debug_shell=request.debug_shell,
        )

    @contextlib.asynccontextmanager
    async def _build_job(
        self, request: BuildRequest, session: SessionHandle | None, reporter: Reporter
    ) -> AsyncIterator[tuple[Job, str]]:
        """The build's solver job, its ``--cache-from`` caches imported as cache
        sources, and a content lease held until it ends (``(job, lease)``)."""
        from ._caches import imported_caches

        async with (
            imported_caches(
                request.cache_imports,
                config=self.config,
                content=self.content,
                unpacker=self._sources.unpacker,
                session=session,
                reporter=reporter,
            ) as sources,
            self.content.lease() as lease,
        ):
            options = dataclasses.replace(
                self._job_options(request, session), cache_sources=sources
            )
            async with self.llb.new_job(options, reporter=reporter, name=request.name) as job:
                yield job, lease

    def _cache_exports(
        self, request: BuildRequest, session: SessionHandle | None, reporter: Reporter
    ) -> CacheExports:
        """The build's ``--cache-to`` (see :class:`CacheExports`)."""
        from ._caches import CacheExports

        return CacheExports(
            request.cache_exports,
            config=self.config,
            cache=self.cache,
            content=self.content,
            session=session,
            reporter=reporter,
        )

    async def _solve(
        self, request: BuildRequest, session: SessionHandle | None, reporter: Reporter
    ) -> SolveResponse:
        from ._exports import resolve_exports, run_exports

        started_ns = time.time_ns()  # provenance's buildStartedOn

        exporters = resolve_exports(
            request.exports,
            config=self.config,
            content=self.content,
            images=self.images,
            session=session,
        )
        resolver = (
            self._sources.meta_resolver(session.id if session is not None else None)
            if request.frontend is not None
            else None
        )
        result = await self._frontend(request, session, reporter, resolver)
        if result is not None and result.definition is None:
            # nothing to build (a check or a subrequest): the frontend's metadata
            # (``result.json`` ...) is the response, as BuildKit's
            return SolveResponse(
                exporter_response=dict(result.metadata), warnings=result.warnings, built=False
            )
        if result is not None and result.multi_platform:
            from ._platforms import solve_platforms

            return await solve_platforms(
                self, request, session, reporter, result, exporters, started_ns=started_ns
            )
        definition = request.definition if result is None else result.definition
        assert definition is not None
        caches = self._cache_exports(request, session, reporter)
        async with self._build_job(request, session, reporter) as (job, lease):
            edge = self.llb.load(definition, entitlements=request.entitlements)
            ref = await job.solve(edge) if edge is not None else None
            attestations: tuple[Attestation, ...] = ()
            if result is not None and result.sbom is not None:
                from ._sbom import config_platform, sbom_attestations

                attestations = await sbom_attestations(
                    result.sbom,
                    ref,
                    job=job,
                    llb=self.llb,
                    entitlements=request.entitlements,
                    platform=config_platform(result.image_config, self.config.platform),
                    epoch=result.epoch,
                    reporter=reporter,
                )
            if request.provenance is not None:
                from dockyard.llbsolver import invocation_id

                from ._provenance import provenance_attestations

                attestations += provenance_attestations(
                    request,
                    definition,
                    edge,
                    job=job,
                    builder_platform=self.config.platform,
                    started_ns=started_ns,
                    invocation=invocation_id(),
                    epoch=result.epoch if result is not None else None,
                )
            responses = await run_exports(
                exporters,
                ref=ref,
                image_config=result.image_config if result is not None else None,
                epoch=result.epoch if result is not None else None,
                session=session,
                reporter=reporter,
                inline_cache=caches.inline_cache(job, edge, request.exports, lease),
                attestations=attestations,
            )
            await caches.run(job, [edge])
            replayable, checks = _replayable(request, resolver, definition, job, self.config)
            if request.debug_shell is not None and request.debug_shell.on_success:
                from ._invoke import shell_on_result

                await shell_on_result(
                    request.debug_shell,
                    self.llb.worker,
                    ref,
                    result.image_config if result is not None else None,
                )
                replayable, checks = False, ()
            if attestations:  # each build's attestations are its own
                replayable, checks = False, ()
        metadata: dict[str, Any] = {}
        for response in responses:
            metadata.update(response.metadata())
        return SolveResponse(
            exporter_response=metadata,
            exports=tuple(responses),
            image_config=result.image_config if result is not None else None,
            warnings=result.warnings if result is not None else (),
            replayable=replayable,
            replay_checks=checks,
        )

    async def _frontend(
        self,
        request: BuildRequest,
        session: SessionHandle | None,
        reporter: Reporter,
        resolver: FrontendImageResolver | None,
    ) -> FrontendResult | None:
        if request.frontend is None or resolver is None:
            return None
        from ._frontend_ctx import BuildFrontendContext

        frontend = self.frontends.get(request.frontend)
        ctx = BuildFrontendContext(
            session=session,
            reporter=reporter,
            build_platform=self.config.platform,
            images=resolver,
            scratch_dir=self.state_dir / "tmp",
        )
        return await frontend.solve(ctx, request.frontend_options)

    # -- disk usage ----------------------------------------------------------------------
    async def du(self, filters: UsageFilter | None = None) -> list[UsageRecord]:
        """Cache records matching ``filters``, largest first."""
        return await self._tracked(self.cache.du(filters))

    async def prune(
        self,
        *,
        all: bool = False,
        keep_duration: float | None = None,
        keep_storage: int | None = None,
        filters: UsageFilter | None = None,
    ) -> PruneResult:
        """Remove unused cache records (see :meth:`dockyard.cache.CacheManager.prune`),
        then blobs nothing refers to any more (no record's layer, no stored image, no
        lease)."""
        return await self._tracked(self._prune(all, keep_duration, keep_storage, filters))

    async def _prune(
        self,
        all: bool,
        keep_duration: float | None,
        keep_storage: int | None,
        filters: UsageFilter | None,
    ) -> PruneResult:
        from ._plugins import blob_roots

        records = await self.cache.prune(
            all=all, keep_duration=keep_duration, keep_storage=keep_storage, filters=filters
        )
        if records:  # their cache keys would only find a result that is gone
            await asyncio.to_thread(self._keys.forget_results, {r.id for r in records})
        gc = await self.content.gc(roots=blob_roots(self.cache, self.images))
        if gc.removed:  # builds remembered before this may need them: core.statedir
            from dockyard.core.statedir import bump_generation

            await asyncio.to_thread(bump_generation, self.state_dir)
        return PruneResult(
            records=tuple(records), blobs_removed=len(gc.removed), blob_bytes_freed=gc.freed
        )


def _has_entries(path: Path) -> bool:
    """Whether directory ``path`` holds anything (an empty or missing one: no)."""
    try:
        with os.scandir(path) as it:
            return any(True for _ in it)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not readable or not a directory: let the removal say so


def _replayable(
    request: BuildRequest,
    resolver: FrontendImageResolver | None,
    definition: Definition,
    job: Job,
    config: EngineConfig,
) -> tuple[bool, tuple[TagCheck, ...]]:
    """Whether a finished build is :attr:`SolveResponse.replayable` — a Dockerfile's,
    its base images from the local image store or a registry (each tag resolved there
    gets a :class:`~dockyard.registry.TagCheck`), its graph reading nothing but
    ``local://`` sources and images pinned by digest, and nothing run but the local
    sources (every other step came from the cache) — and its replay checks."""
    from dockyard.frontend import DOCKERFILE_FRONTEND
    from dockyard.llbsolver import source_scheme
    from dockyard.registry import tag_check

    if request.frontend != DOCKERFILE_FRONTEND or resolver is None or resolver.outside:
        return False, ()
    if request.provenance is not None:  # each build's provenance is its own
        return False, ()
    for node in definition:
        if node.kind == "source":
            identifier = node.op.source.identifier
            if identifier.startswith("local://"):
                continue
            if identifier.startswith("docker-image://") and "@sha256:" in identifier:
                continue
            return False, ()
        if node.kind == "build":
            return False, ()
    if not all(source_scheme(vertex) == "local" for vertex in job.executed):
        return False, ()
    checks: list[TagCheck] = []
    for pinned in resolver.remote:
        if pinned.reference.digest is not None:
            continue  # pinned by the Dockerfile itself: nothing to ask
        check = tag_check(config.registry, pinned.reference, str(pinned.digest))
        if check is None:
            return False, ()
        checks.append(check)
    return True, tuple(checks)
