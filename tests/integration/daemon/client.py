"""A small client of ``dockyardd`` for the integration tests: raw control-API stubs
plus the session's :func:`~dockyard.session.attach` (what ``dockyard.client`` does for
users), so that these tests exercise the daemon alone.

Also runnable as a script (``python client.py SOCKET CONTEXT``): builds the context's
Dockerfile and prints ``STARTED`` once a step's output contains ``started`` — the
tests kill it mid-build.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from dockyard.api._gen import control_pb2 as pb
from dockyard.cache import UsageRecord
from dockyard.core import Event, VertexLog, VertexStatus
from dockyard.daemon import error_from_rpc, status_to_events, usage_record_from_pb
from dockyard.session import CHANNEL_OPTIONS, DirectoryTarget, Session, attach

SERVICE = "/dockyard.control.v1.Control/"


@dataclass
class BuildResult:
    """A build's response and every progress event its Status stream carried."""

    response: dict[str, str]
    events: list[Event] = field(default_factory=list)

    def statuses(self) -> dict[str, VertexStatus]:
        """The last status of each step, by name."""
        out: dict[str, VertexStatus] = {}
        for event in self.events:
            if isinstance(event, VertexStatus):
                out[event.name] = event
        return out

    def logs(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, VertexLog))


class DaemonClient:
    """One client connection to a daemon at ``target`` (``unix:/path``)."""

    def __init__(self, target: str, *, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.target = target
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unary(self, method: str, response: Any) -> Any:
        return self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def _stream(self, method: str, response: Any) -> Any:
        return self.channel.unary_stream(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    async def info(self) -> pb.InfoResponse:
        try:
            response: pb.InfoResponse = await self._unary("Info", pb.InfoResponse)(pb.InfoRequest())
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        return response

    async def workers(self) -> pb.ListWorkersResponse:
        response: pb.ListWorkersResponse = await self._unary("ListWorkers", pb.ListWorkersResponse)(
            pb.ListWorkersRequest()
        )
        return response

    async def du(self, *filters: str) -> list[UsageRecord]:
        try:
            response = await self._unary("DiskUsage", pb.DiskUsageResponse)(
                pb.DiskUsageRequest(filter=list(filters))
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        return [usage_record_from_pb(r) for r in response.record]

    async def prune(self, request: pb.PruneRequest) -> list[UsageRecord]:
        try:
            return [
                usage_record_from_pb(r)
                async for r in self._stream("Prune", pb.UsageRecord)(request)
            ]
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def _status(self, ref: str, events: list[Event], seen: asyncio.Event | None) -> None:
        async for message in self._stream("Status", pb.StatusResponse)(pb.StatusRequest(ref=ref)):
            for event in status_to_events(message):
                events.append(event)
                if seen is not None and isinstance(event, VertexLog) and b"started" in event.data:
                    seen.set()

    async def build(
        self,
        context: Path,
        *,
        out: Path | None = None,
        attrs: dict[str, str] | None = None,
        started: asyncio.Event | None = None,
    ) -> BuildResult:
        """Build ``context``'s Dockerfile; its files into ``out`` (through the session)
        when given. ``started`` is set once a step prints ``started``. Errors are the
        daemon's, re-raised."""
        exports = {"out": DirectoryTarget(path=out)} if out is not None else {}
        session = Session(directories={"context": context, "dockerfile": context}, exports=exports)
        ref = secrets.token_hex(12)
        events: list[Event] = []
        async with await attach(session, self.channel):
            watching = asyncio.create_task(self._status(ref, events, started))
            request = pb.SolveRequest(
                ref=ref,
                session=session.id,
                frontend="dockerfile.v0",
                frontend_attrs=attrs or {},
                exporters=(
                    [pb.Exporter(type="local", attrs={"dest": "session:out"})]
                    if out is not None
                    else []
                ),
            )
            try:
                response = await self._unary("Solve", pb.SolveResponse)(request)
            except grpc.aio.AioRpcError as exc:
                watching.cancel()
                raise error_from_rpc(exc) from exc
            await watching
        return BuildResult(response=dict(response.exporter_response), events=events)


async def _main(socket: str, context: str) -> None:
    async with DaemonClient(f"unix:{socket}") as client:
        started = asyncio.Event()
        build = asyncio.create_task(client.build(Path(context), started=started))
        await started.wait()
        print("STARTED", flush=True)
        await build


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2]))
