"""The ``dockyard.control.v1.Control`` gRPC service (``control.proto``): builds,
their progress, disk usage, prune, workers and version, served from one engine.

Every call runs in its own task; nothing here serializes builds (concurrent builds
share identical steps in the engine's solver). A client that cancels ``Solve`` (or
disconnects) cancels its build: grpc cancels the handler's task, and with it the
engine's work, which cleans up before the call ends. Failed calls end with the error's
gRPC status and the whole :class:`~dockyard.core.DockyardError` record in the trailer
(:func:`~dockyard.daemon.abort`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from dockyard import __version__
from dockyard.api._gen import control_pb2 as pb
from dockyard.api._gen import ops_pb2
from dockyard.core import CancelledError, DockyardError, Platform

from ._builds import Builds
from ._config import GcPolicy
from ._convert import (
    abort,
    events_to_status,
    gc_policy_from_pb,
    gc_policy_to_pb,
    usage_record_to_pb,
)
from ._gc import DiskStat, GarbageCollector, disk_stat
from ._memory import release_memory
from ._request import build_request, exporter_response
from .types import ServedEngine

if TYPE_CHECKING:
    from dockyard.executor.cdi import DeviceInfo
    from dockyard.session import SessionManager

__all__ = ["SERVICE", "ControlService", "WorkerInfo"]

SERVICE = "dockyard.control.v1.Control"

log = logging.getLogger("dockyard.daemon")

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """What ``ListWorkers`` reports of the engine's one worker: a stable id, BuildKit's
    labels (executor, snapshotter, hostname ...), the platforms it builds for and its GC
    rules. ``runnable`` (asked on each ``ListWorkers``, in a thread) adds the platforms
    the host runs besides, natively or emulated (binfmt_misc), as BuildKit lists them;
    ``devices`` (likewise) lists the CDI devices builds may ask for."""

    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] = ()
    gc_policies: tuple[GcPolicy, ...] = ()
    runnable: Callable[[], Sequence[Platform]] | None = None
    devices: Callable[[], Sequence[DeviceInfo]] | None = None


def _version() -> pb.Version:
    return pb.Version(package="dockyard", version=__version__)


class ControlService:
    """Serves the control API from ``engine`` (see the module docstring).

    ``gc`` applies clients' prunes (and is asked for a pass after each build);
    ``sessions`` are the engine's (a build's debug shell runs on its session's terminal;
    without them a build asking for one is refused);
    ``builds`` keeps each build's progress for ``Status``; ``status_interval`` is how
    long a ``Status`` stream waits after a message before the next one (batching a busy
    build's events). ``stat`` measures the state disk (percentages of GC rules).
    ``release`` hands free memory back to the system; it runs in a thread once no build
    has run for ``release_delay`` seconds (see :mod:`dockyard.daemon._memory`): not
    right as a build ends, where it held the allocator's lock while the build's response
    and last progress were still being sent.
    """

    def __init__(
        self,
        engine: ServedEngine,
        *,
        worker: WorkerInfo,
        gc: GarbageCollector,
        builds: Builds | None = None,
        status_interval: float = 0.05,
        stat: Callable[[Any], DiskStat] = disk_stat,
        release: Callable[[], object] = release_memory,
        release_delay: float = 0.25,
        identity: str = "",
        sessions: SessionManager | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.worker = worker
        self.identity = identity  # the engine's configuration, for the state token
        self.gc = gc
        self.builds = builds if builds is not None else Builds()
        self.status_interval = status_interval
        self._stat = stat
        self._release = release
        self._release_delay = release_delay
        self._release_timer: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Future[object] | None = None
        self._closing = False

    def handler(self) -> grpc.GenericRpcHandler:
        unary, stream = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Solve": unary(
                    self._solve,
                    request_deserializer=pb.SolveRequest.FromString,
                    response_serializer=pb.SolveResponse.SerializeToString,
                ),
                "Status": stream(
                    self._status,
                    request_deserializer=pb.StatusRequest.FromString,
                    response_serializer=pb.StatusResponse.SerializeToString,
                ),
                "DiskUsage": unary(
                    self._disk_usage,
                    request_deserializer=pb.DiskUsageRequest.FromString,
                    response_serializer=pb.DiskUsageResponse.SerializeToString,
                ),
                "Prune": stream(
                    self._prune,
                    request_deserializer=pb.PruneRequest.FromString,
                    response_serializer=pb.UsageRecord.SerializeToString,
                ),
                "ListWorkers": unary(
                    self._list_workers,
                    request_deserializer=pb.ListWorkersRequest.FromString,
                    response_serializer=pb.ListWorkersResponse.SerializeToString,
                ),
                "Info": unary(
                    self._info,
                    request_deserializer=pb.InfoRequest.FromString,
                    response_serializer=pb.InfoResponse.SerializeToString,
                ),
            },
        )

    def add_to_server(self, server: Any) -> None:
        server.add_generic_rpc_handlers((self.handler(),))

    def begin_shutdown(self) -> None:
        """Refuse new builds (``UNAVAILABLE``); builds cut short by the engine closing
        fail with a message saying so."""
        self._closing = True
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None

    @property
    def closing(self) -> bool:
        return self._closing

    # -- plumbing ----------------------------------------------------------------------

    async def _guard(self, context: Any, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work``; end the call with its error if it fails."""
        try:
            return await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, DockyardError):
                log.exception("%s failed unexpectedly", what)
            elif self._closing and isinstance(exc, CancelledError):
                exc = CancelledError(f"{what} was cancelled: the daemon is shutting down")
            await abort(context, exc)

    # -- Solve and Status --------------------------------------------------------------

    async def _solve(self, message: pb.SolveRequest, context: Any) -> pb.SolveResponse:
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the daemon is shutting down")
        return await self._guard(context, "the build", lambda: self._run_build(message))

    async def _run_build(self, message: pb.SolveRequest) -> pb.SolveResponse:
        build = self.builds.start(message.ref)
        started = time.monotonic()
        outcome = "failed"
        try:
            request = build_request(
                message, frontends=self.engine.frontends, reporter=build, sessions=self.sessions
            )
            log.info(
                "build %s: started (%s, session %s)",
                message.ref,
                request.frontend or "definition",
                request.session_id or "none",
            )
            response = await self.engine.solve(request)
            outcome = "done"
        except asyncio.CancelledError:
            outcome = "cancelled by the client"
            raise
        except DockyardError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            outcome = f"failed: {type(exc).__name__}: {first_line}"
            raise
        finally:
            self.builds.finish(build)
            log.info("build %s: %s in %.2fs", message.ref, outcome, time.monotonic() - started)
            self.gc.request()
            self._release_when_idle()
        return pb.SolveResponse(
            exporter_response=exporter_response(response.exporter_response),
            replayable=response.replayable,
            replay_checks=[
                pb.TagCheck(
                    reference=check.reference,
                    urls=list(check.urls),
                    verify=check.verify,
                    digest=check.digest,
                    scope=check.scope,
                )
                for check in response.replay_checks
            ],
        )

    def _release_when_idle(self) -> None:
        """A build ended: release memory ``release_delay`` seconds after the last one
        (each end starts the wait again)."""
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = asyncio.get_running_loop().call_later(
            self._release_delay, self._release_now
        )

    def _release_now(self) -> None:
        self._release_timer = None
        if self.builds.running() or (self._releasing is not None and not self._releasing.done()):
            return  # the running build's end asks again
        self._releasing = asyncio.get_running_loop().run_in_executor(None, self._release)

    async def _status(self, message: pb.StatusRequest, context: Any) -> None:
        async def stream() -> None:
            build = await self.builds.find(message.ref)
            async for events in build.subscribe(interval=self.status_interval):
                for response in events_to_status(events):
                    await context.write(response)

        await self._guard(context, "the status stream", stream)

    # -- disk usage --------------------------------------------------------------------

    async def _disk_usage(self, message: pb.DiskUsageRequest, context: Any) -> pb.DiskUsageResponse:
        async def usage() -> pb.DiskUsageResponse:
            from dockyard.cache import UsageFilter

            filters = UsageFilter.parse(message.filter) if message.filter else None
            records = await self.engine.du(filters)
            return pb.DiskUsageResponse(record=[usage_record_to_pb(r) for r in records])

        return await self._guard(context, "disk usage", usage)

    async def _prune(self, message: pb.PruneRequest, context: Any) -> None:
        async def prune() -> None:
            policy = gc_policy_from_pb(message)
            result = await self.gc.apply([policy])
            log.info(
                "prune: removed %d records, reclaimed %d bytes",
                len(result.records),
                result.reclaimed,
            )
            for record in result.records:
                await context.write(usage_record_to_pb(record))

        await self._guard(context, "prune", prune)

    # -- workers and info --------------------------------------------------------------

    async def _list_workers(
        self, message: pb.ListWorkersRequest, context: Any
    ) -> pb.ListWorkersResponse:
        async def workers() -> pb.ListWorkersResponse:
            if not self._worker_matches(message.filter):
                return pb.ListWorkersResponse()
            disk = await asyncio.to_thread(self._stat, self.engine.state_dir)
            platforms = list(self.worker.platforms)
            if self.worker.runnable is not None:
                for p in await asyncio.to_thread(self.worker.runnable):
                    if p not in platforms:
                        platforms.append(p)
            record = pb.WorkerRecord(
                id=self.worker.id,
                labels=dict(self.worker.labels),
                platforms=[
                    ops_pb2.Platform(
                        Architecture=p.architecture,
                        OS=p.os,
                        Variant=p.variant,
                        OSVersion=p.os_version,
                        OSFeatures=list(p.os_features),
                    )
                    for p in platforms
                ],
                gc_policy=[gc_policy_to_pb(p, disk.total) for p in self.worker.gc_policies],
                version=_version(),
            )
            if self.worker.devices is not None:
                for device in await asyncio.to_thread(self.worker.devices):
                    record.cdi_devices.add(
                        name=device.name,
                        auto_allow=device.auto_allow,
                        annotations=dict(device.annotations),
                    )
            return pb.ListWorkersResponse(record=[record])

        return await self._guard(context, "listing workers", workers)

    def _worker_matches(self, filters: Any) -> bool:
        """``key==value`` (or ``key=value``) filters on the worker's id and labels; every
        one must hold."""
        fields = {"id": self.worker.id, **self.worker.labels}
        for item in filters:
            key, sep, value = item.partition("=")
            if not sep:
                continue
            if fields.get(key.strip()) != value.removeprefix("=").strip():
                return False
        return True

    async def _info(self, message: pb.InfoRequest, context: Any) -> pb.InfoResponse:
        return pb.InfoResponse(version=_version(), state_token=self._state_token())

    def _state_token(self) -> str:
        """:func:`dockyard.core.statedir.state_token` of this daemon, now."""
        from dockyard.core.statedir import read_generation, state_token

        return state_token(__version__, self.identity, read_generation(self.engine.state_dir))
