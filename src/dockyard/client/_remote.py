"""The daemon backend: builds on ``dockyardd`` over gRPC (``control.proto``).

One build, in this order (the flow ``control.proto`` describes):

1. ``Control.Solve`` is sent and, meanwhile, the session is attached
   (``dockyard.session.attach``: ``Session.Attach`` on the same address; the daemon
   waits for a session it has not seen yet) and served in the background for the
   whole build — context and Dockerfile directories (incremental sync), secrets, SSH
   agents, registry credentials, the export targets that outputs on this host
   became (``type=local`` and tarballs are streamed back into them), and with
   ``--invoke`` this process's terminal for the debug shell (which runs in the
   daemon's sandbox; ``session.proto``'s ``ShellRequest``);
2. ``Control.Status(ref)`` is read in a task of its own, every event going to the
   reporter (the daemon keeps a build's events from its start, so it does not matter
   whether Status or Solve arrives first);
3. ``Control.Solve`` (``ref``, the session id, the frontend's attributes or the
   serialized Definition, the exporters) returns when the build and its exports are
   done, or fails with the build's error in the call's status details (a session
   that cannot attach cancels it and is the error reported);
4. the status stream is drained (it ends when the build ends, at most a few seconds
   later), then the session is detached.

A job of the ``python`` frontend (a Python build file) is evaluated first, in this
process (:mod:`._buildfile`): the daemon receives its Definition, never the file.

Cancelling :meth:`RemoteBackend.run` cancels the Solve call, which cancels the build on
the daemon. Methods are called by their full names with the messages' own serializers
(the generated ``*_grpc`` modules pin the grpcio version they were made with).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.core import DockyardError, Platform, Reporter, SessionError, UsageError

from ._backend import Outcome
from ._result import ServerInfo, WorkerDevice, WorkerRecord

if TYPE_CHECKING:
    from dockyard.cache import UsageFilter, UsageRecord
    from dockyard.engine import PruneResult
    from dockyard.registry import TagCheck
    from dockyard.session import LayoutStore, UserTerminal

    from ._job import Job
    from ._options import CacheSpec

__all__ = ["ClientTls", "RemoteBackend"]

_SERVICE = "/dockyard.control.v1.Control/"
_STATUS_DRAIN = 10.0  # seconds the status stream may take to end after Solve returned
# pb.Definition{source: Source{}}: a Definition of no ops, in bytes that are not empty
_EMPTY_DEFINITION = b"\x1a\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    """Mutual TLS towards a tcp daemon: the CA its certificate chains to, and this
    client's certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_files(cls, ca: str | None, cert: str | None, key: str | None) -> ClientTls | None:
        """All three files (``--tlscacert``, ``--tlscert``, ``--tlskey``), or none."""
        if not (ca or cert or key):
            return None
        if not ca or not cert or not key:
            raise UsageError("mutual TLS needs all of --tlscacert, --tlscert and --tlskey")
        return cls(ca=Path(ca), cert=Path(cert), key=Path(key))

    def credentials(self) -> Any:
        """grpc's channel credentials; a :class:`~dockyard.core.UsageError` naming the
        flag whose file cannot be read or is no PEM certificate or key, or when the key
        is not the certificate's (grpc's C core would log its own lines and then fail
        every call with "Failed to create security handshaker")."""
        import grpc

        files = {"--tlscacert": self.ca, "--tlscert": self.cert, "--tlskey": self.key}
        data: dict[str, bytes] = {}
        for flag, path in files.items():
            try:
                data[flag] = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from exc
        self._check(data["--tlscacert"])
        return grpc.ssl_channel_credentials(
            root_certificates=data["--tlscacert"],
            private_key=data["--tlskey"],
            certificate_chain=data["--tlscert"],
        )

    def _check(self, ca: bytes) -> None:
        from dockyard.core.tlsfiles import ca_problem, key_pair_problem

        problem = ca_problem(cadata=ca)
        if problem:
            raise UsageError(f"--tlscacert {self.ca}: {problem}")
        pair = key_pair_problem(self.cert, self.key, server=False)
        if pair is not None and pair.key_only:
            raise UsageError(f"--tlskey {self.key}: {pair.reason}")
        if pair is not None:
            raise UsageError(f"--tlscert {self.cert} and --tlskey {self.key}: {pair.reason}")


class RemoteBackend:
    """Runs jobs on the daemon at ``address`` (see the module docstring)."""

    mode = "daemon"

    def __init__(self, address: str, *, tls: ClientTls | None = None) -> None:
        from dockyard.core.address import TcpListener, parse_address

        listener = parse_address(address)
        if isinstance(listener, TcpListener) and not listener.loopback and tls is None:
            raise UsageError(
                f"{listener.url} is reachable from other hosts: a daemon there wants mutual "
                "TLS (give --tlscacert, --tlscert and --tlskey)"
            )
        self._address = listener.url
        self._tls = tls if isinstance(listener, TcpListener) else None
        self._channel: Any = None
        self._build_platform: Platform | None = None

    @property
    def address(self) -> str | None:
        return self._address

    def _open_channel(self) -> Any:
        if self._channel is None:
            import grpc

            from dockyard.session import CHANNEL_OPTIONS

            from ._address import grpc_target

            target = grpc_target(self._address)
            if self._tls is not None:
                self._channel = grpc.aio.secure_channel(
                    target, self._tls.credentials(), options=CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        return self._channel

    def _unary(self, name: str, request_type: Any, response_type: Any) -> Any:
        return self._open_channel().unary_unary(
            _SERVICE + name,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )

    def _stream(self, name: str, request_type: Any, response_type: Any) -> Any:
        return self._open_channel().unary_stream(
            _SERVICE + name,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )

    async def _call(self, awaitable: Any) -> Any:
        import grpc

        from dockyard.daemon import error_from_rpc

        try:
            return await awaitable
        except grpc.RpcError as exc:
            raise self._named(error_from_rpc(exc)) from None

    def _named(self, error: DockyardError) -> DockyardError:
        if error.message.startswith("cannot reach the daemon"):
            error.message = error.message.replace(
                "cannot reach the daemon", f"cannot reach dockyardd at {self._address}", 1
            )
            if (
                self._tls is None
                and self._address.startswith("tcp://")
                and "closed the connection" in error.message
            ):  # what a TLS port does to a plain connection
                error.message += "; a daemon with TLS wants --tlscacert, --tlscert and --tlskey"
        return error

    # -- builds ----------------------------------------------------------------------

    def _request(
        self,
        job: Job,
        ref: str,
        session_id: str,
        exports: tuple[Any, ...],
        caches: tuple[list[Mapping[str, str]], list[Mapping[str, str]]] | None = None,
    ) -> Any:
        """The SolveRequest of ``job``; ``caches``: the attributes its cache imports and
        exports travel with (:func:`_cache_attrs`), their own by default."""
        from dockyard.api._gen import control_pb2 as pb

        if caches is None:
            caches = [c.attrs for c in job.cache_from], [c.attrs for c in job.cache_to]
        from_attrs, to_attrs = caches
        request = pb.SolveRequest(
            ref=ref,
            session=session_id,
            entitlements=sorted(job.entitlements),
            exporters=[pb.Exporter(type=e.type_name, attrs=e.to_attrs()) for e in exports],
            cache=pb.CacheOptions(
                imports=[
                    pb.CacheOptionsEntry(type=c.type, attrs=attrs)
                    for c, attrs in zip(job.cache_from, from_attrs, strict=True)
                ],
                exports=[
                    pb.CacheOptionsEntry(type=c.type, attrs=attrs)
                    for c, attrs in zip(job.cache_to, to_attrs, strict=True)
                ],
            ),
        )
        if job.debug_shell is not None:  # its streams: the session's UserTerminal
            shell = job.debug_shell
            request.debug_shell.CopyFrom(
                pb.DebugShell(args=shell.args, on_error=shell.on_error, on_success=shell.on_success)
            )
        if job.provenance is not None:  # BuildKit's attest:provenance attribute
            from dockyard.exporter import PROVENANCE_ATTR

            request.frontend_attrs[PROVENANCE_ATTR] = job.provenance.to_attr()
        if job.definition is not None:
            # an empty Definition (nothing to build: the exports get an empty result, as
            # embedded) travels as one with an empty source map: zero bytes on the wire
            # would be a request with no Definition at all, which the daemon refuses
            request.definition = job.definition.to_bytes() or _EMPTY_DEFINITION
            return request
        assert job.frontend is not None
        from dockyard.frontend import DOCKERFILE_FRONTEND, DockerfileOptions

        if job.frontend != DOCKERFILE_FRONTEND or not isinstance(
            job.frontend_options, DockerfileOptions
        ):
            raise UsageError(
                f"a daemon builds Dockerfiles and Definitions; frontend {job.frontend!r} "
                "runs in an embedded engine only"
            )
        from ._wire import dockerfile_attrs

        request.frontend = job.frontend
        request.frontend_attrs.update(dockerfile_attrs(job.frontend_options))
        request.frontend_attrs.update(job.frontend_attrs)
        return request

    async def run(self, job: Job, reporter: Reporter) -> Outcome:
        from dockyard.api._gen import control_pb2 as pb
        from dockyard.frontend import PYTHON_FRONTEND
        from dockyard.session import attach

        from ._wire import decode_exporter_response, remote_exports

        if job.frontend == PYTHON_FRONTEND:
            # the build file runs here, never in the daemon: its Definition travels
            from ._buildfile import evaluate_on_client

            job = await evaluate_on_client(job, reporter, self.build_platform)
        exports, targets = remote_exports(job.exports)
        stores: Mapping[str, LayoutStore] = {}
        if _uses_layouts(job):
            from ._stores import client_stores

            offered = await client_stores(job, reporter)
            job, stores = offered.job, offered.stores
        session = job.session(targets, content_stores=stores, shell=_user_terminal(job))
        ref = secrets.token_hex(16)
        request = self._request(job, ref, session.id, exports, await _cache_attrs(job))
        channel = self._open_channel()
        # Solve goes out while the session attaches (the daemon waits for a session it
        # has not seen yet): one round trip less before the build starts
        solve = self._unary("Solve", pb.SolveRequest, pb.SolveResponse)
        solving = asyncio.ensure_future(self._call(solve(request)))
        try:
            attachment = await attach(session, channel)
        except BaseException as exc:
            solving.cancel()
            await asyncio.wait([solving])
            if not solving.cancelled():
                solving.exception()  # the session's failure is the one reported
            if isinstance(exc, SessionError):
                unreachable = _unreachable(exc)
                if unreachable is not None:  # no daemon there: said as every call says it
                    raise self._named(unreachable) from exc
                raise SessionError(
                    f"cannot start a session with dockyardd at {self._address}: {exc.message}"
                ) from exc
            raise
        async with attachment:
            status = asyncio.create_task(self._status(ref, reporter))
            try:
                response = await solving
            except Exception:
                # the build failed: its last progress (the failed step, its log) may
                # still be on its way, as after a success
                await _drain(status)
                raise
            except BaseException:
                solving.cancel()
                status.cancel()
                await asyncio.wait([status, solving])
                raise
            await _drain(status)
        metadata = decode_exporter_response(dict(response.exporter_response))
        # warnings arrive with the progress events (the client's Watcher keeps them)
        return Outcome(
            metadata=metadata,
            replayable=response.replayable,
            replay_checks=_tag_checks(response.replay_checks),
            synced=tuple(session.synced),
        )

    async def build_platform(self) -> Platform:
        """The platform the daemon's worker builds on (the first its ``ListWorkers``
        names: its engine's own), asked once."""
        if self._build_platform is None:
            from dockyard.api._gen import control_pb2 as pb

            workers = self._unary("ListWorkers", pb.ListWorkersRequest, pb.ListWorkersResponse)
            response = await self._call(workers(pb.ListWorkersRequest()))
            found = [p for record in response.record for p in record.platforms]
            if not found:
                raise DockyardError(
                    f"dockyardd at {self._address} names no worker platform to build for"
                )
            first = found[0]
            self._build_platform = Platform(
                os=first.OS,
                architecture=first.Architecture,
                variant=first.Variant,
                os_version=first.OSVersion,
                os_features=tuple(first.OSFeatures),
            )
        return self._build_platform

    async def _status(self, ref: str, reporter: Reporter) -> None:
        import grpc

        from dockyard.api._gen import control_pb2 as pb
        from dockyard.daemon import status_to_events

        call = self._stream("Status", pb.StatusRequest, pb.StatusResponse)(
            pb.StatusRequest(ref=ref)
        )
        try:
            async for message in call:
                for event in status_to_events(message):
                    reporter.emit(event)
        except grpc.RpcError:
            return  # the build's own error comes from Solve
        finally:
            call.cancel()

    # -- disk usage ------------------------------------------------------------------

    async def du(self, filters: UsageFilter | None) -> list[UsageRecord]:
        from dockyard.api._gen import control_pb2 as pb
        from dockyard.daemon import usage_record_from_pb

        request = pb.DiskUsageRequest(filter=_filter_strings(filters))
        disk_usage = self._unary("DiskUsage", pb.DiskUsageRequest, pb.DiskUsageResponse)
        response = await self._call(disk_usage(request))
        records = [usage_record_from_pb(r) for r in response.record]
        return sorted(records, key=lambda r: r.size, reverse=True)

    async def prune(
        self,
        *,
        all: bool,
        keep_duration: float | None,
        keep_storage: int | None,
        filters: UsageFilter | None,
    ) -> PruneResult:
        import grpc

        from dockyard.api._gen import control_pb2 as pb
        from dockyard.daemon import error_from_rpc, usage_record_from_pb
        from dockyard.engine import PruneResult

        request = pb.PruneRequest(
            filter=_filter_strings(filters),
            all=all,
            keep_duration=round((keep_duration or 0) * 1e9),
            reserved_space=keep_storage or 0,
        )
        call = self._stream("Prune", pb.PruneRequest, pb.UsageRecord)(request)
        records: list[UsageRecord] = []
        try:
            async for message in call:
                records.append(usage_record_from_pb(message))
        except grpc.RpcError as exc:
            raise self._named(error_from_rpc(exc)) from None
        return PruneResult(records=tuple(records))

    async def info(self) -> ServerInfo:
        from dockyard.api._gen import control_pb2 as pb

        info = self._unary("Info", pb.InfoRequest, pb.InfoResponse)
        response = await self._call(info(pb.InfoRequest()))
        return ServerInfo(mode="daemon", version=response.version.version, address=self._address)

    async def workers(self) -> list[WorkerRecord]:
        from dockyard.api._gen import control_pb2 as pb

        workers = self._unary("ListWorkers", pb.ListWorkersRequest, pb.ListWorkersResponse)
        response = await self._call(workers(pb.ListWorkersRequest()))
        return [
            WorkerRecord(
                id=record.id,
                platforms=tuple(
                    Platform(
                        os=p.OS,
                        architecture=p.Architecture,
                        variant=p.Variant,
                        os_version=p.OSVersion,
                        os_features=tuple(p.OSFeatures),
                    )
                    for p in record.platforms
                ),
                labels=dict(record.labels),
                devices=tuple(
                    WorkerDevice(
                        name=d.name, auto_allow=d.auto_allow, annotations=dict(d.annotations)
                    )
                    for d in record.cdi_devices
                ),
            )
            for record in response.record
        ]

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()


async def _drain(status: asyncio.Task[None]) -> None:
    """Wait for the status stream to end (the daemon ends it when the build ends), at
    most ``_STATUS_DRAIN`` seconds; then stop reading it."""
    try:
        async with asyncio.timeout(_STATUS_DRAIN):
            await asyncio.shield(status)
    except TimeoutError:
        status.cancel()
        await asyncio.wait([status])
    except BaseException:  # cancelled while waiting: the stream is not read any longer
        status.cancel()
        raise


def _user_terminal(job: Job) -> UserTerminal | None:
    """The terminal a daemon's debug shell of ``job`` runs on: this process's streams
    (those of its :class:`~dockyard.llbsolver.DebugShell`), lines announced as the
    embedded engine announces them."""
    shell = job.debug_shell
    if shell is None:
        return None
    from dockyard.session import UserTerminal

    stdio = shell.stdio
    return UserTerminal(
        stdin=stdio.stdin,
        stdout=stdio.stdout,
        stderr=stdio.stderr,
        terminal=stdio.terminal,
        announce=shell.announce,
    )


async def _cache_attrs(job: Job) -> tuple[list[Mapping[str, str]], list[Mapping[str, str]]]:
    """The attributes of the job's cache imports and exports for the daemon: a
    ``type=s3`` one gets the AWS credentials the default chain finds here (environment,
    profiles, assumed roles, web identity, container, instance metadata; resolved once)
    unless it names its own, as buildx sends them — the daemon reaches the bucket, its
    host may have none."""
    specs = (*job.cache_from, *job.cache_to)
    needy = [s for s in specs if s.type == "s3" and _lacks_keys(s.attrs)]
    if not needy:
        return [s.attrs for s in job.cache_from], [s.attrs for s in job.cache_to]
    import os

    from dockyard.remotecache import add_credentials, client_credentials

    region = needy[0].attrs.get("region", "") or os.environ.get("AWS_REGION", "")
    found = await client_credentials(region)

    def attrs(spec: CacheSpec) -> Mapping[str, str]:
        return add_credentials(spec.attrs, found) if spec.type == "s3" else spec.attrs

    return [attrs(s) for s in job.cache_from], [attrs(s) for s in job.cache_to]


def _lacks_keys(attrs: Mapping[str, str]) -> bool:
    keys = {k.lower() for k in attrs}
    return not ("access_key_id" in keys and "secret_access_key" in keys)


def _uses_layouts(job: Job) -> bool:
    """Whether the job names OCI layouts of this host (local caches, ``oci-layout://``
    contexts), which its session offers the daemon as content stores."""
    if any(spec.type == "local" for spec in (*job.cache_from, *job.cache_to)):
        return True
    named = getattr(job.frontend_options, "named_contexts", None) or {}
    return any(value.startswith("oci-layout://") for value in named.values())


def _tag_checks(messages: Any) -> tuple[TagCheck, ...]:
    if not messages:
        return ()
    from dockyard.registry import TagCheck

    return tuple(
        TagCheck(
            reference=m.reference,
            urls=tuple(m.urls),
            verify=m.verify,
            digest=m.digest,
            scope=m.scope,
        )
        for m in messages
    )


def _filter_strings(filters: UsageFilter | None) -> list[str]:
    """``key=value`` strings the daemon parses back with ``UsageFilter.parse``."""
    if filters is None:
        return []
    items = [f"type={t.value}" for t in sorted(filters.types, key=lambda t: t.value)]
    items += [f"id={prefix}" for prefix in filters.ids]
    if filters.description:
        items.append(f"description={filters.description}")
    if filters.mutable is not None:
        items.append(f"mutable={str(filters.mutable).lower()}")
    if filters.in_use is not None:
        items.append(f"inuse={str(filters.in_use).lower()}")
    return items


def _unreachable(exc: SessionError) -> DockyardError | None:
    """The daemon's address could not be reached (the session's call failed
    ``UNAVAILABLE``): the error a unary call would have raised, else ``None``."""
    import grpc

    cause = exc.__cause__
    if (
        isinstance(cause, grpc.RpcError)
        and callable(getattr(cause, "code", None))
        and cause.code() == grpc.StatusCode.UNAVAILABLE
    ):
        from dockyard.daemon import error_from_rpc

        return error_from_rpc(cause)
    return None
