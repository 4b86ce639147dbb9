"""The control service on an in-process grpc.aio server, over a fake engine: status
fan-out to early, late and several subscribers, errors crossing intact, builds cancelled
when their client cancels or its session ends, requests refused at the edge, disk
usage and prune, workers and info, no serialization of concurrent builds."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from dockyard.api._gen import control_pb2 as pb
from dockyard.cache import RecordType, UsageFilter, UsageRecord
from dockyard.core import (
    CancelledError,
    DockyardError,
    Event,
    ExecError,
    NotFoundError,
    Platform,
    SessionError,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexLog,
    VertexRef,
    VertexStatus,
)
from dockyard.daemon import (
    Builds,
    ControlService,
    DiskStat,
    GarbageCollector,
    GcConfig,
    GcPolicy,
    Space,
    WorkerInfo,
    error_from_rpc,
    status_to_events,
    usage_record_from_pb,
)
from dockyard.engine import BuildRequest, PruneResult, SolveResponse
from dockyard.executor.cdi import DeviceInfo
from dockyard.frontend import FrontendContext, FrontendResult, Frontends
from dockyard.session import (
    CHANNEL_OPTIONS,
    SERVER_OPTIONS,
    Session,
    SessionManager,
    SessionService,
    attach,
)

T = 1_714_557_600.25
SERVICE = "/dockyard.control.v1.Control/"


# -- a fake engine -------------------------------------------------------------------------


class FakeFrontend:
    """Options are the attributes themselves; the fake engine reads them."""

    def parse_options(self, attrs: Mapping[str, str]) -> object:
        if "bad" in attrs:
            raise UsageError(f"bad frontend option {attrs['bad']!r}")
        return dict(attrs)

    async def solve(self, ctx: FrontendContext, options: object) -> FrontendResult:
        raise AssertionError("the fake engine does not run frontends")


def record(
    id: str, size: int, *, last_used: float, type: RecordType = RecordType.REGULAR
) -> UsageRecord:
    return UsageRecord(
        id=id,
        size=size,
        record_type=type,
        mutable=False,
        in_use=False,
        shared=False,
        created=last_used - 10,
        last_used=last_used,
        usage_count=1,
        description=f"record {id}",
        parents=(),
    )


@dataclass
class FakeEngine:
    """A :class:`~dockyard.daemon.types.ServedEngine` whose builds emit a few steps, then
    (``wait`` attribute) wait for :attr:`gate`, then fail (``fail``) or succeed. A
    build with a session is cancelled when the session ends, as the engine's are."""

    state_dir: Path
    frontends: Frontends = field(
        default_factory=lambda: Frontends(
            {"dockerfile.v0": FakeFrontend(), "python": FakeFrontend()}
        )
    )
    sessions: SessionManager = field(default_factory=lambda: SessionManager(attach_timeout=5))
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    records: list[UsageRecord] = field(default_factory=list)
    requests: list[BuildRequest] = field(default_factory=list)
    emitted: dict[str, list[Event]] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    cancelled: list[str] = field(default_factory=list)
    prunes: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    tasks: set[asyncio.Task[SolveResponse]] = field(default_factory=set)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Any) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(predicate)

    async def solve(self, request: BuildRequest) -> SolveResponse:
        """In a task of its own that :meth:`close` cancels, as the engine's builds."""
        task = asyncio.create_task(self._solve(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and current.cancelling() == 0:
                raise CancelledError("the engine was closed while the build ran") from None
            raise

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def _solve(self, request: BuildRequest) -> SolveResponse:
        self.requests.append(request)
        attrs: dict[str, str] = request.frontend_options or {}  # type: ignore[assignment]
        assert request.reporter is not None
        events = self.emitted.setdefault(request.name, [])

        def emit(event: Event) -> None:
            events.append(event)
            assert request.reporter is not None
            request.reporter.emit(event)

        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            guard: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
            if request.session_id is not None:
                handle = await self.sessions.get(request.session_id)
                guard = handle.cancel_on_close()
            async with guard:
                for i in range(int(attrs.get("steps", "3"))):
                    digest = f"sha256:{request.name}-{i}"
                    emit(VertexStatus(digest=digest, name=f"step {i}", started=T + i))
                    emit(VertexLog(digest=digest, stream=1, data=b"line %d\n" % i, timestamp=T + i))
                    emit(
                        VertexStatus(
                            digest=digest, name=f"step {i}", started=T + i, completed=T + i + 0.5
                        )
                    )
                if "wait" in attrs:
                    self.waiting.add(request.name)
                    await self._notify()
                    await self.gate.wait()
                if "fail" in attrs:
                    raise ExecError(
                        'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3',
                        vertex=VertexRef(digest="sha256:failed", name="[2/2] RUN exit 3"),
                        locations=(
                            SourceLocation(
                                filename="Dockerfile",
                                ranges=(SourceRange(2, 2),),
                                data=b"FROM busybox\nRUN exit 3\n",
                            ),
                        ),
                    )
        except asyncio.CancelledError:
            self.cancelled.append(request.name)
            raise
        finally:
            self.running -= 1
            self.waiting.discard(request.name)
            await self._notify()
        return SolveResponse(
            exporter_response={
                "containerimage.digest": "sha256:" + "a" * 64,
                "containerimage.descriptor": {"mediaType": "x", "size": 3},
            }
        )

    async def du(self, filters: UsageFilter | None = None) -> list[UsageRecord]:
        return [r for r in self.records if filters is None or filters.matches(r)]

    async def prune(
        self,
        *,
        all: bool = False,
        keep_duration: float | None = None,
        keep_storage: int | None = None,
        filters: UsageFilter | None = None,
    ) -> PruneResult:
        self.prunes.append(
            {"all": all, "keep_duration": keep_duration, "keep_storage": keep_storage}
        )
        removed: list[UsageRecord] = []
        for r in sorted(self.records, key=lambda r: r.last_used or 0):
            total = sum(x.size for x in self.records)
            if keep_storage is not None and total <= keep_storage:
                break
            if filters is not None and not filters.matches(r):
                continue
            if not all and r.record_type is RecordType.INTERNAL:
                continue
            self.records.remove(r)
            removed.append(r)
        return PruneResult(records=tuple(removed))


# -- the server ----------------------------------------------------------------------------


@dataclass
class Served:
    engine: FakeEngine
    service: ControlService
    channel: grpc.aio.Channel
    gc: GarbageCollector

    def unary(self, method: str, response: Any) -> Any:
        return self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def stream(self, method: str, response: Any) -> Any:
        return self.channel.unary_stream(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def solve(self, ref: str, **attrs: str) -> Any:
        return self.unary("Solve", pb.SolveResponse)(
            pb.SolveRequest(ref=ref, frontend="dockerfile.v0", frontend_attrs=attrs)
        )

    async def status(self, ref: str) -> list[Event]:
        events: list[Event] = []
        async for message in self.stream("Status", pb.StatusResponse)(pb.StatusRequest(ref=ref)):
            events.extend(status_to_events(message))
        return events


GB = 1 << 30


def fake_stat(path: Path) -> DiskStat:
    return DiskStat(total=100 * GB, free=50 * GB)


@contextlib.asynccontextmanager
async def serve(
    policies: tuple[GcPolicy, ...] = (),
    *,
    builds: Builds | None = None,
    release: Callable[[], object] = lambda: None,
    release_delay: float = 0.0,
    runnable: Callable[[], Sequence[Platform]] | None = None,
    devices: Callable[[], Sequence[DeviceInfo]] | None = None,
) -> AsyncIterator[Served]:
    workdir = Path(tempfile.mkdtemp(prefix="dy-daemon-"))
    engine = FakeEngine(state_dir=workdir)
    gc = GarbageCollector(engine, GcConfig(policies=policies), delay=0, throttle=0, stat=fake_stat)
    service = ControlService(
        engine,
        worker=WorkerInfo(
            id="w1",
            labels={"org.mobyproject.buildkit.worker.executor": "oci"},
            platforms=(),
            gc_policies=policies,
            runnable=runnable,
            devices=devices,
        ),
        gc=gc,
        builds=builds if builds is not None else Builds(retain=30, wait=5),
        status_interval=0,
        stat=fake_stat,
        release=release,
        release_delay=release_delay,
    )
    server = grpc.aio.server(options=SERVER_OPTIONS)
    service.add_to_server(server)
    SessionService(engine.sessions).add_to_server(server)
    target = f"unix:{workdir}/d.sock"
    server.add_insecure_port(target)
    await server.start()
    channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    try:
        yield Served(engine=engine, service=service, channel=channel, gc=gc)
    finally:
        await channel.close()
        await engine.sessions.aclose()
        await server.stop(None)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve() as running:
        yield running


async def rpc_error(call: Any) -> DockyardError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return error_from_rpc(info.value)


# -- Solve and Status ------------------------------------------------------------------


async def test_solve_returns_the_exporter_response_as_strings(served: Served) -> None:
    response = await served.solve("b1")
    assert dict(response.exporter_response) == {
        "containerimage.digest": "sha256:" + "a" * 64,
        "containerimage.descriptor": '{"mediaType": "x", "size": 3}',
    }
    (request,) = served.engine.requests
    assert request.frontend == "dockerfile.v0"
    assert request.frontend_options == {}
    assert request.session_id is None


async def test_status_fans_out_to_early_late_and_several_subscribers(served: Served) -> None:
    early = asyncio.create_task(served.status("b1"))  # before the build exists
    await asyncio.sleep(0.05)
    solving = asyncio.ensure_future(served.solve("b1", wait="1", steps="4"))
    await served.engine.wait_for(lambda: "b1" in served.engine.waiting)
    late = [asyncio.create_task(served.status("b1")) for _ in range(3)]  # mid-build
    await asyncio.sleep(0.05)
    assert not early.done()
    served.engine.gate.set()
    await solving
    expected = served.engine.emitted["b1"]
    assert len(expected) == 12
    assert await early == expected
    for task in late:
        assert await task == expected
    # a subscriber arriving after the build ended still gets everything
    assert await served.status("b1") == expected


async def test_memory_is_released_when_the_last_running_build_ends() -> None:
    released: list[int] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def release() -> None:
        released.append(threading.get_ident())
        loop.call_soon_threadsafe(done.set)

    async with serve(release=release) as served:
        first = asyncio.ensure_future(served.solve("m1", wait="1"))
        await served.engine.wait_for(lambda: "m1" in served.engine.waiting)
        await served.solve("m2")  # m1 still runs: nothing released
        await asyncio.sleep(0.05)
        assert released == []
        served.engine.gate.set()
        await first
        async with asyncio.timeout(5):
            await done.wait()
    assert len(released) == 1
    assert released[0] != threading.get_ident()  # in a thread, not on the event loop


async def test_memory_is_released_a_while_after_the_last_build_not_as_it_ends() -> None:
    released: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def release() -> None:
        released.append(loop.time())
        loop.call_soon_threadsafe(done.set)

    async with serve(release=release, release_delay=0.3) as served:
        await served.solve("r1")
        first_end = loop.time()
        await asyncio.sleep(0.1)
        assert released == []  # not while the build's tail may still be sent
        await served.solve("r2")  # within the wait: it starts again
        second_end = loop.time()
        async with asyncio.timeout(5):
            await done.wait()
        await asyncio.sleep(0.4)
    assert len(released) == 1
    assert released[0] >= second_end + 0.25 > first_end + 0.25


async def test_status_of_a_build_that_never_starts_is_not_found() -> None:
    async with serve(builds=Builds(wait=0.1)) as served:
        error = await rpc_error(served.status("nope"))
    assert isinstance(error, NotFoundError)
    assert "nope" in str(error)


async def test_a_failed_build_crosses_intact_and_its_status_stream_ends(served: Served) -> None:
    watching = asyncio.create_task(served.status("bad"))
    await asyncio.sleep(0.05)
    error = await rpc_error(served.solve("bad", fail="1"))
    assert isinstance(error, ExecError)
    assert str(error) == "Dockerfile:2: " + error.message
    assert error.message.startswith('process "/bin/sh -c exit 3"')
    assert error.vertex is not None
    assert error.vertex.name == "[2/2] RUN exit 3"
    (location,) = error.locations
    assert location.filename == "Dockerfile"
    assert location.data is not None
    assert b"RUN exit 3" in location.data
    assert await watching == served.engine.emitted["bad"]


async def test_a_ref_runs_once_at_a_time(served: Served) -> None:
    first = asyncio.ensure_future(served.solve("same", wait="1"))
    await served.engine.wait_for(lambda: "same" in served.engine.waiting)
    error = await rpc_error(served.solve("same"))
    assert isinstance(error, UsageError)
    assert "already running" in str(error)
    served.engine.gate.set()
    await first
    await served.solve("same")  # once it has ended the ref may be used again


async def test_cancelling_solve_cancels_the_build(served: Served) -> None:
    watching = asyncio.create_task(served.status("c1"))
    call = served.solve("c1", wait="1")
    await served.engine.wait_for(lambda: "c1" in served.engine.waiting)
    call.cancel()
    await served.engine.wait_for(lambda: "c1" in served.engine.cancelled)
    assert served.engine.running == 0
    assert await watching == served.engine.emitted["c1"]  # the stream ended with the build
    assert not served.service.builds.running()


async def test_a_closed_channel_cancels_its_builds(served: Served, tmp_path: Path) -> None:
    target = f"unix:{served.engine.state_dir}/d.sock"
    other = grpc.aio.insecure_channel(target)
    call = other.unary_unary(
        SERVICE + "Solve",
        request_serializer=pb.SolveRequest.SerializeToString,
        response_deserializer=pb.SolveResponse.FromString,
    )(pb.SolveRequest(ref="gone", frontend="dockerfile.v0", frontend_attrs={"wait": "1"}))
    await served.engine.wait_for(lambda: "gone" in served.engine.waiting)
    await other.close()  # the client process went away
    await served.engine.wait_for(lambda: "gone" in served.engine.cancelled)
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_session_that_ends_cancels_its_build(served: Served) -> None:
    session = Session()
    attachment = await attach(session, served.channel)
    call = served.unary("Solve", pb.SolveResponse)(
        pb.SolveRequest(
            ref="s1", frontend="dockerfile.v0", frontend_attrs={"wait": "1"}, session=session.id
        )
    )
    await served.engine.wait_for(lambda: "s1" in served.engine.waiting)
    assert served.engine.requests[-1].session_id == session.id
    await attachment.close()
    error = await rpc_error(call)
    assert isinstance(error, SessionError)
    assert session.id in str(error)
    assert served.engine.running == 0


async def test_concurrent_builds_run_at_the_same_time(served: Served) -> None:
    calls = [asyncio.ensure_future(served.solve(f"p{i}", wait="1")) for i in range(8)]
    await served.engine.wait_for(lambda: len(served.engine.waiting) == 8)
    served.engine.gate.set()
    await asyncio.gather(*calls)
    assert served.engine.max_running == 8


async def test_shutting_down_refuses_builds_and_names_the_reason(served: Served) -> None:
    running = asyncio.ensure_future(served.solve("r1", wait="1"))
    await served.engine.wait_for(lambda: "r1" in served.engine.waiting)
    served.service.begin_shutdown()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await served.solve("r2")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (info.value.details() or "")
    served.engine.close()  # the engine cancels what runs: the client is told why
    error = await rpc_error(running)
    assert isinstance(error, CancelledError)
    assert "the daemon is shutting down" in str(error)
    assert served.engine.cancelled == ["r1"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            pb.SolveRequest(ref="x", frontend="python", frontend_attrs={"filename": "b.py"}),
            "python frontend",
        ),
        (pb.SolveRequest(ref="x"), "empty build request"),
        (
            pb.SolveRequest(ref="x", frontend="dockerfile.v0", definition=b"\x00"),
            "not both",
        ),
        (pb.SolveRequest(ref="x", frontend="nope"), "unknown frontend"),
        (
            pb.SolveRequest(ref="x", frontend="dockerfile.v0", frontend_attrs={"bad": "y"}),
            "bad frontend option",
        ),
        (
            pb.SolveRequest(
                ref="x",
                frontend="dockerfile.v0",
                exporters=[pb.Exporter(type="local", attrs={"dest": "/etc"})],
            ),
            "on the daemon's host",
        ),
        (
            pb.SolveRequest(
                ref="x",
                frontend="dockerfile.v0",
                exporters=[pb.Exporter(type="tar", attrs={"dest": "-"})],
            ),
            "on the daemon's host",
        ),
        (
            pb.SolveRequest(
                ref="x",
                frontend="dockerfile.v0",
                cache=pb.CacheOptions(imports=[pb.CacheOptionsEntry(type="local")]),
            ),
            "cache type=local names a directory on the daemon's host",
        ),
        (
            pb.SolveRequest(
                ref="x",
                frontend="dockerfile.v0",
                cache=pb.CacheOptions(exports=[pb.CacheOptionsEntry(type="registry")]),
            ),
            "type=registry needs ref=",
        ),
        (
            pb.SolveRequest(ref="x", frontend="dockerfile.v0", entitlements=["root.everything"]),
            "unknown entitlement",
        ),
        (pb.SolveRequest(ref="", frontend="dockerfile.v0"), "needs a ref"),
    ],
)
async def test_bad_requests_are_refused_at_the_edge(
    served: Served, request_: pb.SolveRequest, message: str
) -> None:
    error = await rpc_error(served.unary("Solve", pb.SolveResponse)(request_))
    assert isinstance(error, (UsageError, NotFoundError))
    assert message in str(error)
    assert not served.engine.requests


async def test_exports_to_the_client_and_the_image_store_are_accepted(served: Served) -> None:
    await served.unary("Solve", pb.SolveResponse)(
        pb.SolveRequest(
            ref="e",
            frontend="dockerfile.v0",
            exporters=[
                pb.Exporter(type="local", attrs={"dest": "session:out"}),
                pb.Exporter(type="image", attrs={"name": "example.test/app:1"}),
            ],
            entitlements=["network.host"],
        )
    )
    (request,) = served.engine.requests
    assert [type(e).__name__ for e in request.exports] == ["LocalExport", "ImageExport"]
    assert {str(e) for e in request.entitlements} == {"network.host"}


async def test_registry_and_inline_caches_are_accepted(served: Served) -> None:
    await served.unary("Solve", pb.SolveResponse)(
        pb.SolveRequest(
            ref="c",
            frontend="dockerfile.v0",
            cache=pb.CacheOptions(
                imports=[pb.CacheOptionsEntry(type="registry", attrs={"ref": "r.test/a:c"})],
                exports=[
                    pb.CacheOptionsEntry(
                        type="registry", attrs={"ref": "r.test/a:c", "mode": "max"}
                    ),
                    pb.CacheOptionsEntry(type="inline"),
                ],
            ),
        )
    )
    (request,) = served.engine.requests
    assert [type(c).__name__ for c in request.cache_imports] == ["RegistryCacheImport"]
    assert [type(c).__name__ for c in request.cache_exports] == [
        "RegistryCacheExport",
        "InlineCacheExport",
    ]


async def test_a_raw_definition_is_loaded(served: Served) -> None:
    from dockyard import llb

    definition = llb.image("busybox").run("true").root.marshal()
    await served.unary("Solve", pb.SolveResponse)(
        pb.SolveRequest(ref="d", definition=definition.to_bytes())
    )
    (request,) = served.engine.requests
    assert request.definition is not None
    assert request.definition.to_bytes() == definition.to_bytes()
    error = await rpc_error(
        served.unary("Solve", pb.SolveResponse)(pb.SolveRequest(ref="d2", definition=b"\xff\xff"))
    )
    assert "Definition" in str(error)


# -- disk usage, prune, workers, info ----------------------------------------------------


async def test_disk_usage_applies_filters(served: Served) -> None:
    served.engine.records = [
        record("a1", 10, last_used=T),
        record("b2", 20, last_used=T, type=RecordType.SOURCE_LOCAL),
    ]
    response = await served.unary("DiskUsage", pb.DiskUsageResponse)(pb.DiskUsageRequest())
    assert [usage_record_from_pb(r) for r in response.record] == served.engine.records
    response = await served.unary("DiskUsage", pb.DiskUsageResponse)(
        pb.DiskUsageRequest(filter=["type=source.local"])
    )
    assert [r.id for r in response.record] == ["b2"]
    error = await rpc_error(
        served.unary("DiskUsage", pb.DiskUsageResponse)(pb.DiskUsageRequest(filter=["x=y"]))
    )
    assert isinstance(error, UsageError)


async def test_prune_streams_what_it_removed_and_honours_its_limits(served: Served) -> None:
    served.engine.records = [
        record("old", 100, last_used=T),
        record("mid", 100, last_used=T + 1),
        record("new", 100, last_used=T + 2),
        record("int", 100, last_used=T - 5, type=RecordType.INTERNAL),
    ]
    prune = served.stream("Prune", pb.UsageRecord)
    removed = [r.id async for r in prune(pb.PruneRequest(reserved_space=250))]
    assert removed == ["old", "mid"]  # least recently used first, down to 250 bytes
    assert served.engine.prunes[-1] == {"all": False, "keep_duration": None, "keep_storage": 250}
    removed = [r.id async for r in prune(pb.PruneRequest(keep_duration=3 * 10**9))]
    assert removed == ["new"]
    assert served.engine.prunes[-1]["keep_duration"] == 3.0
    assert served.engine.prunes[-1]["keep_storage"] is None
    removed = [r.id async for r in prune(pb.PruneRequest(all=True))]
    assert removed == ["int"]
    error = await rpc_error(_drain(prune(pb.PruneRequest(filter=["mutable=maybe"]))))
    assert isinstance(error, UsageError)


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def test_list_workers_and_info() -> None:
    policy = GcPolicy(keep_duration=60.0, max_used_space=Space(percent=10))
    async with serve((policy,)) as served:
        workers = await served.unary("ListWorkers", pb.ListWorkersResponse)(pb.ListWorkersRequest())
        (worker,) = workers.record
        assert worker.id == "w1"
        assert dict(worker.labels) == {"org.mobyproject.buildkit.worker.executor": "oci"}
        (rule,) = worker.gc_policy
        assert rule.max_used_space == 10 * GB  # 10% of the (fake) disk
        assert rule.keep_duration == 60 * 10**9
        assert worker.version.package == "dockyard"
        matching = await served.unary("ListWorkers", pb.ListWorkersResponse)(
            pb.ListWorkersRequest(filter=["org.mobyproject.buildkit.worker.executor==oci"])
        )
        assert len(matching.record) == 1
        other = await served.unary("ListWorkers", pb.ListWorkersResponse)(
            pb.ListWorkersRequest(filter=["id==w2"])
        )
        assert not other.record
        assert not worker.cdi_devices
        info = await served.unary("Info", pb.InfoResponse)(pb.InfoRequest())
        from dockyard import __version__

        assert info.version.version == __version__


async def test_workers_list_the_platforms_the_host_runs() -> None:
    host, arm64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
    async with serve(runnable=lambda: (host, arm64, host)) as served:
        workers = await served.unary("ListWorkers", pb.ListWorkersResponse)(pb.ListWorkersRequest())
    (worker,) = workers.record
    assert [(p.OS, p.Architecture) for p in worker.platforms] == [
        ("linux", "amd64"),
        ("linux", "arm64"),
    ]


def test_runnable_platforms_include_emulated_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.daemon._server import runnable_platforms
    from dockyard.executor import host_platforms

    proc = Path(__file__).parents[2] / "data" / "executor" / "binfmt" / "proc"
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(proc))
    platforms = runnable_platforms()
    assert platforms[0] == host_platforms(proc).native
    assert Platform.parse("linux/arm64") in platforms  # qemu-aarch64, with the F flag


async def test_builds_ask_for_garbage_collection() -> None:
    policy = GcPolicy(max_used_space=Space(bytes=150))
    async with serve((policy,)) as served:
        runner = asyncio.create_task(served.gc.run())
        try:
            async with asyncio.timeout(10):
                await served.gc.wait_pass(0)  # one at start
            served.engine.records = [
                record("a", 100, last_used=T),
                record("b", 100, last_used=T + 1),
            ]
            await served.solve("g1")
            async with asyncio.timeout(10):
                await served.gc.wait_pass(1)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        assert [r.id for r in served.engine.records] == ["b"]
        assert served.gc.statistics().records_removed == 1


async def test_list_workers_names_the_cdi_devices() -> None:
    def devices() -> list[DeviceInfo]:
        return [
            DeviceInfo(name="vendor1.com/device=foo", auto_allow=True),
            DeviceInfo(
                name="vendor1.com/device=bar",
                annotations={"org.mobyproject.buildkit.device.class": "class1"},
            ),
        ]

    async with serve(devices=devices) as served:
        workers = await served.unary("ListWorkers", pb.ListWorkersResponse)(pb.ListWorkersRequest())
        (worker,) = workers.record
        assert [(d.name, d.auto_allow, dict(d.annotations)) for d in worker.cdi_devices] == [
            ("vendor1.com/device=foo", True, {}),
            ("vendor1.com/device=bar", False, {"org.mobyproject.buildkit.device.class": "class1"}),
        ]
