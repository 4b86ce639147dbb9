"""Conversions between the engine's values and the control API's messages
(``dockyard/api/proto/control.proto``), used by the daemon and its clients:

- progress events ↔ ``StatusResponse`` (:func:`events_to_status`, :func:`status_to_events`);
- a :class:`~dockyard.core.DockyardError` ↔ a failed call's gRPC status: code, message
  and the ``grpc-status-details-bin`` trailer (:func:`error_to_status`, :func:`abort`,
  :func:`error_from_status`, :func:`error_from_rpc`);
- cache usage records, GC rules and prune requests ↔ their messages.

Every conversion round-trips: ``status_to_events(events_to_status(e)) == e``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf import any_pb2, timestamp_pb2

from dockyard.api._gen import control_pb2 as pb
from dockyard.api._gen import ops_pb2
from dockyard.core import (
    AuthError,
    BuildWarning,
    CancelledError,
    ConfigError,
    ContentError,
    DockyardError,
    Event,
    FrontendError,
    InternalError,
    InvalidDefinitionError,
    NotFoundError,
    PathEscapeError,
    SessionError,
    SourceLocation,
    SourceRange,
    UnreachableError,
    UsageError,
    VertexLog,
    VertexProgress,
    VertexStatus,
    error_from_record,
    jsontext,
)

if TYPE_CHECKING:
    from dockyard.cache import UsageFilter, UsageRecord

    from ._config import GcPolicy, Space

__all__ = [
    "DETAILS_KEY",
    "ERROR_DETAIL_TYPE",
    "abort",
    "error_from_rpc",
    "error_from_status",
    "error_to_status",
    "events_to_status",
    "gc_policy_from_pb",
    "gc_policy_to_pb",
    "prune_request_to_pb",
    "status_to_events",
    "usage_record_from_pb",
    "usage_record_to_pb",
]

#: The trailer that carries a failed call's ``Status`` (as google.rpc.Status does).
DETAILS_KEY = "grpc-status-details-bin"
#: The type URL of our error detail in ``Status.details``.
ERROR_DETAIL_TYPE = "type.googleapis.com/dockyard.control.v1.ErrorDetail"
#: BuildKit's level of a build warning.
WARNING_LEVEL = 1
#: The most bytes of error detail put in the trailer: gRPC refuses trailers over 8 KiB
#: by default, and the message and other metadata travel there too.
MAX_DETAIL_BYTES = 6 << 10
#: Roughly the most bytes of events put in one ``StatusResponse``.
MAX_STATUS_BYTES = 1 << 20
_EXCERPT_CONTEXT = 4  # lines each side of a location sent with an error

# -- time --------------------------------------------------------------------------------


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _optional_time(message: Any, field: str) -> float | None:
    return _seconds(getattr(message, field)) if message.HasField(field) else None


# -- progress ----------------------------------------------------------------------------

_RANK = {VertexStatus: 0, VertexProgress: 1, VertexLog: 2, BuildWarning: 3}


def events_to_status(events: Iterable[Event]) -> list[pb.StatusResponse]:
    """Batch events into as few ``StatusResponse`` messages as keep their order.

    A message lists vertexes, then statuses, then logs, then warnings; a new message
    starts whenever an event would otherwise be read before one that came earlier (a
    step's completion after its last log line goes in the next message), and before a
    message grows past about :data:`MAX_STATUS_BYTES` (gRPC refuses messages over 4 MiB
    by default).
    """
    out: list[pb.StatusResponse] = []
    message: pb.StatusResponse | None = None
    rank = -1
    size = 0
    for event in events:
        event_rank = _RANK[type(event)]
        event_size = len(event.data) + 100 if isinstance(event, VertexLog) else 300
        if message is None or event_rank < rank or size + event_size > MAX_STATUS_BYTES:
            message = pb.StatusResponse()
            out.append(message)
            size = 0
        rank = event_rank
        size += event_size
        if isinstance(event, VertexStatus):
            message.vertexes.append(_vertex_to_pb(event))
        elif isinstance(event, VertexProgress):
            message.statuses.append(_progress_to_pb(event))
        elif isinstance(event, VertexLog):
            message.logs.append(
                pb.VertexLog(
                    vertex=event.digest,
                    timestamp=_timestamp(event.timestamp),
                    stream=event.stream,
                    msg=event.data,
                )
            )
        else:
            message.warnings.append(_warning_to_pb(event))
    return out


def status_to_events(message: pb.StatusResponse) -> list[Event]:
    """The events of one ``StatusResponse``, in the order :func:`events_to_status` put
    them in."""
    events: list[Event] = []
    for vertex in message.vertexes:
        events.append(
            VertexStatus(
                digest=vertex.digest,
                name=vertex.name,
                inputs=tuple(vertex.inputs),
                started=_optional_time(vertex, "started"),
                completed=_optional_time(vertex, "completed"),
                cached=vertex.cached,
                error=vertex.error or None,
                progress_group=(
                    vertex.progress_group.id or None if vertex.HasField("progress_group") else None
                ),
            )
        )
    for status in message.statuses:
        events.append(
            VertexProgress(
                digest=status.vertex,
                id=status.id,
                name=status.name,
                current=status.current,
                total=status.total,
                timestamp=_seconds(status.timestamp),
                started=_optional_time(status, "started"),
                completed=_optional_time(status, "completed"),
            )
        )
    for log in message.logs:
        events.append(
            VertexLog(
                digest=log.vertex,
                stream=log.stream,
                data=log.msg,
                timestamp=_seconds(log.timestamp),
            )
        )
    for warning in message.warnings:
        locations: list[SourceLocation] = []
        if warning.HasField("info") or warning.ranges:
            locations.append(_location_from_pb(warning.info, warning.ranges))
        locations.extend(_location_from_pb(m.info, m.ranges) for m in warning.more_locations)
        events.append(
            BuildWarning(
                short=warning.short.decode("utf-8", "replace"),
                detail=tuple(d.decode("utf-8", "replace") for d in warning.detail),
                url=warning.url,
                rule=warning.rule,
                digest=warning.vertex or None,
                locations=tuple(locations),
            )
        )
    return events


def _vertex_to_pb(event: VertexStatus) -> pb.Vertex:
    vertex = pb.Vertex(
        digest=event.digest,
        inputs=event.inputs,
        name=event.name,
        cached=event.cached,
        error=event.error or "",
    )
    if event.started is not None:
        vertex.started.CopyFrom(_timestamp(event.started))
    if event.completed is not None:
        vertex.completed.CopyFrom(_timestamp(event.completed))
    if event.progress_group is not None:
        vertex.progress_group.id = event.progress_group
    return vertex


def _progress_to_pb(event: VertexProgress) -> pb.VertexStatus:
    status = pb.VertexStatus(
        id=event.id,
        vertex=event.digest,
        name=event.name,
        current=event.current,
        total=event.total,
        timestamp=_timestamp(event.timestamp),
    )
    if event.started is not None:
        status.started.CopyFrom(_timestamp(event.started))
    if event.completed is not None:
        status.completed.CopyFrom(_timestamp(event.completed))
    return status


def _ranges_to_pb(ranges: Sequence[SourceRange]) -> list[ops_pb2.Range]:
    return [
        ops_pb2.Range(
            start=ops_pb2.Position(line=r.start, character=r.start_column),
            end=ops_pb2.Position(line=r.end, character=r.end_column),
        )
        for r in ranges
    ]


def _info_to_pb(location: SourceLocation) -> ops_pb2.SourceInfo:
    return ops_pb2.SourceInfo(filename=location.filename, data=location.data or b"")


def _location_from_pb(info: ops_pb2.SourceInfo, ranges: Iterable[ops_pb2.Range]) -> SourceLocation:
    return SourceLocation(
        filename=info.filename,
        ranges=tuple(
            SourceRange(r.start.line, r.end.line, r.start.character, r.end.character)
            for r in ranges
        ),
        data=info.data or None,
    )


def _warning_to_pb(event: BuildWarning) -> pb.VertexWarning:
    warning = pb.VertexWarning(
        vertex=event.digest or "",
        level=WARNING_LEVEL,
        short=event.short.encode(),
        detail=[d.encode() for d in event.detail],
        url=event.url,
        rule=event.rule,
    )
    if event.locations:
        first, *rest = event.locations
        warning.info.CopyFrom(_info_to_pb(first))
        warning.ranges.extend(_ranges_to_pb(first.ranges))
        for location in rest:
            warning.more_locations.append(
                pb.SourceLocation(info=_info_to_pb(location), ranges=_ranges_to_pb(location.ranges))
            )
    return warning


# -- errors ------------------------------------------------------------------------------

_CODES: tuple[tuple[type[DockyardError], grpc.StatusCode], ...] = (
    (CancelledError, grpc.StatusCode.CANCELLED),
    (InternalError, grpc.StatusCode.INTERNAL),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AuthError, grpc.StatusCode.PERMISSION_DENIED),
    (ContentError, grpc.StatusCode.DATA_LOSS),
    (SessionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UsageError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidDefinitionError, grpc.StatusCode.INVALID_ARGUMENT),
    (FrontendError, grpc.StatusCode.INVALID_ARGUMENT),
    (PathEscapeError, grpc.StatusCode.INVALID_ARGUMENT),
)


def _code_of(exc: DockyardError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def _as_dockyard_error(exc: BaseException) -> DockyardError:
    if isinstance(exc, DockyardError):
        return exc
    if not isinstance(exc, Exception):  # asyncio.CancelledError, KeyboardInterrupt
        return CancelledError("the build was cancelled")
    return InternalError(f"{type(exc).__name__}: {exc}")


def _excerpt(location: SourceLocation) -> pb.SourceExcerpt:
    excerpt = pb.SourceExcerpt(filename=location.filename)
    if location.data is None or not location.ranges:
        return excerpt
    lines = location.data.splitlines(keepends=True)
    low = max(min(r.start for r in location.ranges) - _EXCERPT_CONTEXT, 1)
    high = max(max(r.end for r in location.ranges) + _EXCERPT_CONTEXT, low)
    excerpt.first_line = low
    excerpt.data = b"".join(lines[low - 1 : high])
    return excerpt


def _details(exc: DockyardError, message: str) -> bytes:
    """The serialized ``Status`` for the trailer, cut to fit :data:`MAX_DETAIL_BYTES`:
    first without source excerpts, then with the output tail of a failed process
    shortened, at last without any detail but the class and message."""
    record = exc.to_record()
    excerpts = [_excerpt(loc) for loc in exc.locations]
    attempts: list[tuple[dict[str, Any], list[pb.SourceExcerpt]]] = [
        (record, excerpts),
        (record, []),
    ]
    tail = record.get("extra", {}).get("log_tail")
    if tail:
        for keep in (10, 3, 0):
            trimmed = json.loads(json.dumps(record))
            trimmed["extra"]["log_tail"] = [line[-500:] for line in tail[-keep:]] if keep else []
            attempts.append((trimmed, []))
    attempts.append(({"type": record["type"], "message": record["message"][:2000]}, []))
    status = pb.Status()
    for attempt_record, attempt_excerpts in attempts:
        detail = pb.ErrorDetail(record_json=json.dumps(attempt_record), sources=attempt_excerpts)
        status = pb.Status(
            code=_code_of(exc).value[0],
            message=message[:2000],
            details=[any_pb2.Any(type_url=ERROR_DETAIL_TYPE, value=detail.SerializeToString())],
        )
        data = status.SerializeToString()
        if len(data) <= MAX_DETAIL_BYTES:
            return data
    return status.SerializeToString()


def error_to_status(
    exc: BaseException,
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """The code, message and trailing metadata a failed call ends with. Errors that are
    not :class:`~dockyard.core.DockyardError` become ``InternalError`` (and
    ``asyncio.CancelledError`` a ``CancelledError``)."""
    error = _as_dockyard_error(exc)
    message = str(error)
    return _code_of(error), message, ((DETAILS_KEY, _details(error, message)),)


async def abort(context: Any, exc: BaseException) -> NoReturn:
    """End the current call of a ``grpc.aio`` servicer with ``exc`` (raises)."""
    code, message, metadata = error_to_status(exc)
    await context.abort(code, message, trailing_metadata=metadata)
    raise AssertionError("grpc.aio context.abort returned")  # pragma: no cover


_FALLBACK: Mapping[grpc.StatusCode, type[DockyardError]] = {
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: UsageError,
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
    grpc.StatusCode.DATA_LOSS: ContentError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def _detail_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> pb.ErrorDetail | None:
    for key, value in metadata or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = pb.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # protobuf's DecodeError: a trailer we did not write
            return None
        for item in status.details:
            if item.type_url == ERROR_DETAIL_TYPE:
                detail = pb.ErrorDetail()
                try:
                    detail.ParseFromString(item.value)
                except Exception:
                    return None
                return detail
    return None


def _attach_sources(error: DockyardError, excerpts: Sequence[pb.SourceExcerpt]) -> None:
    locations = list(error.locations)
    for i, excerpt in enumerate(excerpts[: len(locations)]):
        location = locations[i]
        if excerpt.first_line and excerpt.filename == location.filename:
            data = b"\n" * (excerpt.first_line - 1) + excerpt.data
            locations[i] = SourceLocation(
                filename=location.filename, ranges=location.ranges, data=data
            )
    error.locations = tuple(locations)


def error_from_status(
    code: grpc.StatusCode,
    message: str,
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None = None,
) -> DockyardError:
    """The error a failed call carries: the daemon's own (class, message, step, source
    lines) when the trailer has it, else one chosen by the status code."""
    detail = _detail_from_metadata(trailing_metadata)
    if detail is not None:
        try:
            record = jsontext.loads(detail.record_json)
            if isinstance(record, dict):
                error = error_from_record(record)
                _attach_sources(error, detail.sources)
                return error
        except (ValueError, TypeError, KeyError, AttributeError):
            pass
    if code == grpc.StatusCode.UNAVAILABLE:
        return UnreachableError(f"cannot reach the daemon: {unreachable_reason(message)}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return DockyardError(f"the daemon does not support this request: {message}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DockyardError(f"the daemon did not answer in time: {message}")
    cls = _FALLBACK.get(code, DockyardError)
    return cls(message or f"the daemon failed the request ({code.name})")


# what grpc says when a channel cannot connect -> what the user is told (the rest of its
# text names grpc's internals: "failed to connect to all addresses; last error: ...")
_UNREACHABLE = (
    ("no such file or directory", "no socket there (is dockyardd running? see dockyardd --help)"),
    ("connection refused", "connection refused (is dockyardd running and listening there?)"),
    (
        "permission denied",
        "permission denied: only root and the socket's group may use it (the daemon's "
        "config names the group: [grpc] group, see dockyardd --help)",
    ),
    ("socket closed", "it closed the connection (did dockyardd stop?)"),
    ("connection reset", "it closed the connection (did dockyardd stop?)"),
)


def unreachable_reason(details: str) -> str:
    """Why a channel could not reach the daemon, from grpc's ``UNAVAILABLE`` details: a
    missing socket, a refused connection, a socket the user may not open or a daemon
    that went away said plainly; anything else (a TLS handshake, a name that does not resolve) as grpc says it."""
    lowered = details.lower()
    for needle, reason in _UNREACHABLE:
        if needle in lowered:
            return reason
    return details


def error_from_rpc(exc: grpc.RpcError) -> DockyardError:
    """:func:`error_from_status` of a failed call as grpc raises it (sync or aio)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return error_from_status(code, details or "", metadata)


# -- cache records and GC rules -----------------------------------------------------------


def usage_record_to_pb(record: UsageRecord) -> pb.UsageRecord:
    message = pb.UsageRecord(
        id=record.id,
        mutable=record.mutable,
        in_use=record.in_use,
        size=record.size,
        created_at=_timestamp(record.created),
        usage_count=record.usage_count,
        description=record.description,
        record_type=record.record_type.value,
        shared=record.shared,
        parents=record.parents,
    )
    if record.last_used is not None:
        message.last_used_at.CopyFrom(_timestamp(record.last_used))
    return message


def usage_record_from_pb(message: pb.UsageRecord) -> UsageRecord:
    """:class:`~dockyard.core.UsageError` for an unknown record type."""
    from dockyard.cache import RecordType, UsageRecord

    return UsageRecord(
        id=message.id,
        size=message.size,
        record_type=RecordType.parse(message.record_type),
        mutable=message.mutable,
        in_use=message.in_use,
        shared=message.shared,
        created=_seconds(message.created_at),
        last_used=_optional_time(message, "last_used_at"),
        usage_count=message.usage_count,
        description=message.description,
        parents=tuple(message.parents),
    )


def _filter_strings(usage_filter: UsageFilter) -> list[str]:
    """``key=value`` strings that :meth:`UsageFilter.parse` turns back into the filter."""
    items = [f"type={t.value}" for t in sorted(usage_filter.types, key=lambda t: t.value)]
    items += [f"id={prefix}" for prefix in usage_filter.ids]
    if usage_filter.description:
        items.append(f"description={usage_filter.description}")
    if usage_filter.mutable is not None:
        items.append(f"mutable={str(usage_filter.mutable).lower()}")
    if usage_filter.in_use is not None:
        items.append(f"inuse={str(usage_filter.in_use).lower()}")
    return items


def gc_policy_to_pb(policy: GcPolicy, disk_total: int) -> pb.GCPolicy:
    """A GC rule with its percentages resolved against the state disk's size (bytes)."""

    def space(value: Space | None) -> int:
        return value.resolve(disk_total) if value is not None else 0

    return pb.GCPolicy(
        all=policy.all,
        keep_duration=round((policy.keep_duration or 0) * 1e9),
        reserved_space=space(policy.reserved_space),
        filters=_filter_strings(policy.filter),
        max_used_space=space(policy.max_used_space),
        min_free_space=space(policy.min_free_space),
    )


def gc_policy_from_pb(message: pb.GCPolicy | pb.PruneRequest) -> GcPolicy:
    """A GC rule, or the rule a ``PruneRequest`` asks to apply once (``dockyard prune``);
    :class:`~dockyard.core.UsageError` for bad filters."""
    from dockyard.cache import UsageFilter

    from ._config import GcPolicy, Space

    filters = message.filters if isinstance(message, pb.GCPolicy) else message.filter

    def space(value: int) -> Space | None:
        return Space(bytes=value) if value > 0 else None

    return GcPolicy(
        all=message.all,
        filter=UsageFilter.parse(filters),
        keep_duration=message.keep_duration / 1e9 if message.keep_duration > 0 else None,
        reserved_space=space(message.reserved_space),
        max_used_space=space(message.max_used_space),
        min_free_space=space(message.min_free_space),
    )


def prune_request_to_pb(policy: GcPolicy) -> pb.PruneRequest:
    """The ``PruneRequest`` that asks the daemon to apply ``policy`` once (sizes in
    bytes: a percentage cannot travel)."""
    for value in (policy.reserved_space, policy.max_used_space, policy.min_free_space):
        if value is not None and value.percent is not None:
            raise UsageError(f"prune takes sizes in bytes, not {value}")
    return pb.PruneRequest(
        filter=_filter_strings(policy.filter),
        all=policy.all,
        keep_duration=round((policy.keep_duration or 0) * 1e9),
        reserved_space=policy.reserved_space.bytes if policy.reserved_space else 0,
        max_used_space=policy.max_used_space.bytes if policy.max_used_space else 0,
        min_free_space=policy.min_free_space.bytes if policy.min_free_space else 0,
    )
