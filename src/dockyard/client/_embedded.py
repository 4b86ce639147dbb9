"""The embedded backend: an :class:`~dockyard.engine.Engine` in this process, opened on
first use, with the client's session attached in-process (file content copied in the
kernel, exports written straight to their paths). Nothing here loads grpc."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dockyard.core import Reporter

from ._backend import Outcome
from ._result import ServerInfo

if TYPE_CHECKING:
    from dockyard.cache import UsageFilter, UsageRecord
    from dockyard.engine import Engine, EngineConfig, PruneResult

    from ._job import Job
    from ._result import WorkerRecord

__all__ = ["EmbeddedBackend"]


class EmbeddedBackend:
    """Runs jobs on an engine of its own (see the module docstring)."""

    mode = "embedded"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()

    @property
    def address(self) -> str | None:
        return None

    async def engine(self) -> Engine:
        """The engine, opened (state directory locked) on first use."""
        async with self._lock:
            if self._engine is None:
                from dockyard.engine import Engine

                self._engine = await Engine.open(self.config)
            return self._engine

    async def run(self, job: Job, reporter: Reporter) -> Outcome:
        from dockyard.engine import BuildRequest, EngineConfig

        caches = _caches(job)  # checked before the engine is opened
        session = job.session()  # its prefetched walks run while the engine opens
        engine = await self.engine()
        request = BuildRequest(
            definition=job.definition,
            frontend=job.frontend,
            frontend_options=job.frontend_options,
            exports=job.exports,
            session_id=session.id,
            entitlements=EngineConfig.parse_entitlements(job.entitlements),
            reporter=reporter,
            name=job.name,
            debug_shell=job.debug_shell,
            **caches,
            **_provenance(job),
        )
        async with engine.sessions.attach(session):
            response = await engine.solve(request)
        return Outcome(
            metadata=dict(response.exporter_response),
            warnings=tuple(response.warnings),
            built=response.built,
            replayable=response.replayable,
            replay_checks=response.replay_checks,
            synced=tuple(session.synced),
        )

    async def du(self, filters: UsageFilter | None) -> list[UsageRecord]:
        return await (await self.engine()).du(filters)

    async def prune(
        self,
        *,
        all: bool,
        keep_duration: float | None,
        keep_storage: int | None,
        filters: UsageFilter | None,
    ) -> PruneResult:
        engine = await self.engine()
        return await engine.prune(
            all=all, keep_duration=keep_duration, keep_storage=keep_storage, filters=filters
        )

    async def info(self) -> ServerInfo:
        from dockyard import __version__

        return ServerInfo(
            mode="embedded", version=__version__, state_dir=str(self.config.state_dir)
        )

    async def workers(self) -> list[WorkerRecord]:
        """The worker this engine would have (its state directory is not locked): the
        configured platform, then what the host runs, and the CDI devices of its
        spec directories."""
        from dockyard.executor.cdi import DeviceRegistry

        from ._result import WorkerDevice, WorkerRecord

        def read() -> WorkerRecord:
            from dockyard.executor import host_platforms

            platforms = [self.config.platform]
            for support in host_platforms().supported:
                if support.platform not in platforms:
                    platforms.append(support.platform)
            registry = DeviceRegistry.from_config(self.config.cdi)
            devices = registry.devices() if registry is not None else ()
            return WorkerRecord(
                id="embedded",
                platforms=tuple(platforms),
                labels={
                    "org.mobyproject.buildkit.worker.executor": "oci",
                    "org.mobyproject.buildkit.worker.runtime": self.config.runtime,
                    "org.mobyproject.buildkit.worker.network": self.config.network.value,
                },
                devices=tuple(
                    WorkerDevice(name=d.name, auto_allow=d.auto_allow, annotations=d.annotations)
                    for d in devices
                ),
                cdi_problems=registry.problems() if registry is not None else (),
            )

        return [await asyncio.to_thread(read)]

    async def aclose(self) -> None:
        async with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()


def _provenance(job: Job) -> dict[str, Any]:
    """The request's ``provenance`` and the frontend attributes it records (BuildKit's
    keys, as a daemon receives them); nothing when none is asked for."""
    if job.provenance is None:
        return {}
    attrs: dict[str, str] = {}
    from dockyard.frontend import DockerfileOptions

    if isinstance(job.frontend_options, DockerfileOptions):
        from ._wire import dockerfile_attrs

        attrs = dockerfile_attrs(job.frontend_options)
    attrs.update(job.frontend_attrs)
    return {"provenance": job.provenance, "frontend_attrs": attrs}


def _caches(job: Job) -> dict[str, Any]:
    """The ``cache_imports``/``cache_exports`` of the engine's request, parsed by the
    engine's own parsers (a :class:`~dockyard.core.UsageError` for a bad value)."""
    if not job.cache_from and not job.cache_to:
        return {}
    from dockyard.engine import parse_cache_export, parse_cache_import

    return {
        "cache_imports": tuple(parse_cache_import(spec.text) for spec in job.cache_from),
        "cache_exports": tuple(parse_cache_export(spec.text) for spec in job.cache_to),
    }
