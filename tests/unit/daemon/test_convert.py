"""Conversions between the engine's values and the control API's messages round-trip,
and errors cross a real gRPC call intact."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api._gen import control_pb2 as pb
from dockyard.cache import RecordType, UsageFilter, UsageRecord
from dockyard.core import (
    AuthError,
    BuildWarning,
    CancelledError,
    ConfigError,
    ContentError,
    DockyardError,
    Event,
    ExecError,
    FrontendError,
    InternalError,
    InvalidDefinitionError,
    NotFoundError,
    PathEscapeError,
    RegistryError,
    SessionError,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexLog,
    VertexProgress,
    VertexRef,
    VertexStatus,
)
from dockyard.daemon import (
    DETAILS_KEY,
    GcPolicy,
    Space,
    abort,
    default_gc_policies,
    error_from_rpc,
    error_from_status,
    error_to_status,
    events_to_status,
    gc_policy_from_pb,
    gc_policy_to_pb,
    prune_request_to_pb,
    status_to_events,
    usage_record_from_pb,
    usage_record_to_pb,
)
from tests.unit.cli.progress_events import load_events

T = 1_714_557_600.123456

DOCKERFILE = b"".join(f"RUN step {i}\n".encode() for i in range(1, 41))


def wire(messages: list[pb.StatusResponse]) -> list[Event]:
    """Events back from messages that went through bytes, as over gRPC."""
    events: list[Event] = []
    for message in messages:
        parsed = pb.StatusResponse()
        parsed.ParseFromString(message.SerializeToString())
        events.extend(status_to_events(parsed))
    return events


def test_a_recorded_build_round_trips() -> None:
    events = load_events("multistage")
    messages = events_to_status(events)
    assert wire(messages) == events
    assert len(messages) < len(events)  # batched


def test_batches_keep_the_order_of_events() -> None:
    start = VertexStatus(digest="a", name="RUN x", started=T)
    line = VertexLog(digest="a", stream=2, data=b"out\n", timestamp=T + 1)
    end = VertexStatus(digest="a", name="RUN x", started=T, completed=T + 2)
    messages = events_to_status([start, line, line, end])
    assert [(len(m.vertexes), len(m.logs)) for m in messages] == [(1, 2), (1, 0)]
    assert wire(messages) == [start, line, line, end]
    assert events_to_status([]) == []


def test_large_batches_are_split_below_grpcs_message_limit() -> None:
    chunk = VertexLog(digest="a", stream=1, data=b"x" * (64 << 10), timestamp=T)
    messages = events_to_status([chunk] * 100)
    assert len(messages) > 1
    assert all(m.ByteSize() <= (1 << 20) + (64 << 10) for m in messages)
    assert wire(messages) == [chunk] * 100


def test_every_field_of_every_event_kind_round_trips() -> None:
    data = b"FROM x\nRUN y\n"
    events: list[Event] = [
        VertexStatus(
            digest="sha256:a",
            name="[1/2] RUN y",
            inputs=("sha256:b", "sha256:c"),
            started=T,
            completed=T + 1.5,
            cached=True,
            error="exit code: 1",
            progress_group="group-1",
        ),
        VertexStatus(digest="sha256:b", name="seen"),
        VertexProgress(
            digest="sha256:a",
            id="layer",
            name="pulling",
            current=5,
            total=10,
            timestamp=T + 0.25,
            started=T,
            completed=T + 0.5,
        ),
        VertexProgress(digest="sha256:a", id="x", name="", current=0, timestamp=T),
        VertexLog(digest="sha256:a", stream=2, data=b"\xff\x00binary", timestamp=T + 0.001),
        BuildWarning(short="plain"),
        BuildWarning(
            short="Rule: héllo (line 2)",
            detail=("one", "two"),
            url="https://example.com/rule",
            rule="Rule",
            digest="sha256:a",
            locations=(
                SourceLocation(filename="Dockerfile", ranges=(SourceRange(2, 3, 1, 4),), data=data),
                SourceLocation(filename="other.Dockerfile", ranges=(SourceRange(7, 7),)),
                SourceLocation(filename="third"),
            ),
        ),
    ]
    back = wire(events_to_status(events))
    assert back == events
    located = back[-1]
    assert isinstance(located, BuildWarning)
    assert located.locations[0].data == data
    assert located.locations[1].data is None


@given(st.floats(min_value=1e9, max_value=4e9))
def test_epoch_times_survive_the_wire_exactly(seconds: float) -> None:
    # a float epoch time is coarser than a nanosecond: the Timestamp keeps it whole
    event = VertexLog(digest="d", stream=1, data=b"x", timestamp=seconds)
    assert wire(events_to_status([event])) == [event]


ERRORS: list[DockyardError] = [
    DockyardError("plain failure"),
    UsageError("bad flag"),
    ConfigError("bad key"),
    InvalidDefinitionError("bad op"),
    FrontendError(
        "unknown instruction: RUNN",
        locations=(
            SourceLocation(filename="Dockerfile", ranges=(SourceRange(20, 20),), data=DOCKERFILE),
        ),
    ),
    NotFoundError("no such stage: base"),
    PathEscapeError("../x escapes the context"),
    ContentError("digest mismatch"),
    RegistryError("500 from registry"),
    AuthError("denied"),
    SessionError("session gone"),
    CancelledError("cancelled"),
    InternalError("bug"),
    ExecError(
        'process "/bin/sh -c make" did not complete successfully: exit code: 2',
        args=("/bin/sh", "-c", "make"),
        exit_status=2,
        log_tail=("cc main.c", "error: x"),
        vertex=VertexRef(digest="sha256:abc", name="[build 3/3] RUN make"),
        locations=(
            SourceLocation(filename="Dockerfile", ranges=(SourceRange(9, 10),), data=DOCKERFILE),
        ),
    ),
]


def assert_same_error(back: DockyardError, error: DockyardError) -> None:
    assert type(back) is type(error)
    assert back.to_record() == error.to_record()
    assert str(back) == str(error)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_round_trip_through_status_details(error: DockyardError) -> None:
    code, message, metadata = error_to_status(error)
    assert message == str(error)
    back = error_from_status(code, message, metadata)
    assert_same_error(back, error)
    for location, original in zip(back.locations, error.locations, strict=True):
        assert location.lines() == original.lines()  # the failing lines, for the snippet


def test_status_codes() -> None:
    def code(error: BaseException) -> grpc.StatusCode:
        return error_to_status(error)[0]

    assert code(CancelledError("x")) == grpc.StatusCode.CANCELLED
    assert code(NotFoundError("x")) == grpc.StatusCode.NOT_FOUND
    assert code(FrontendError("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(AuthError("x")) == grpc.StatusCode.PERMISSION_DENIED
    assert code(ExecError("x")) == grpc.StatusCode.UNKNOWN


def test_foreign_exceptions_become_internal_or_cancelled() -> None:
    code, message, metadata = error_to_status(KeyError("k"))
    back = error_from_status(code, message, metadata)
    assert isinstance(back, InternalError)
    assert back.message == "KeyError: 'k'"
    code, message, metadata = error_to_status(KeyboardInterrupt())
    assert isinstance(error_from_status(code, message, metadata), CancelledError)


def test_huge_details_are_cut_to_fit_the_trailer() -> None:
    error = ExecError(
        "exit code: 1",
        log_tail=tuple("x" * 3000 for _ in range(20)),
        vertex=VertexRef(digest="d", name="RUN x"),
        locations=(
            SourceLocation(
                filename="Dockerfile",
                ranges=(SourceRange(1, 200),),
                data=b"RUN " + b"y" * 100 + b"\n" * 300,
            ),
        ),
    )
    code, message, metadata = error_to_status(error)
    assert len(metadata[0][1]) <= 6 << 10
    back = error_from_status(code, message, metadata)
    assert isinstance(back, ExecError)
    assert back.message == "exit code: 1"
    assert back.vertex == error.vertex
    assert len(back.log_tail) < 20
    assert back.locations[0].ranges == error.locations[0].ranges


def test_without_details_the_code_chooses_the_error() -> None:
    assert isinstance(error_from_status(grpc.StatusCode.NOT_FOUND, "gone"), NotFoundError)
    assert isinstance(error_from_status(grpc.StatusCode.CANCELLED, "stop"), CancelledError)
    unavailable = error_from_status(grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert str(unavailable) == (
        "cannot reach the daemon: connection refused (is dockyardd running and listening there?)"
    )
    assert type(error_from_status(grpc.StatusCode.UNKNOWN, "")) is DockyardError
    garbage: list[tuple[str, str | bytes]] = [(DETAILS_KEY, b"\xff\xff\xff"), ("other", "x")]
    assert isinstance(error_from_status(grpc.StatusCode.NOT_FOUND, "m", garbage), NotFoundError)
    bad_record = pb.Status(
        details=[
            {
                "type_url": "type.googleapis.com/dockyard.control.v1.ErrorDetail",
                "value": pb.ErrorDetail(record_json="[1]").SerializeToString(),
            }
        ]
    )
    metadata = [(DETAILS_KEY, bad_record.SerializeToString())]
    assert isinstance(error_from_status(grpc.StatusCode.INTERNAL, "m", metadata), InternalError)


_METHOD = "/dockyard.test.v1.Errors/Fail"


@pytest.mark.parametrize("error", ERRORS[-2:], ids=lambda e: type(e).__name__)
async def test_errors_cross_a_real_grpc_call(tmp_path: Path, error: DockyardError) -> None:
    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await abort(context, error)

    handler = grpc.method_handlers_generic_handler(
        "dockyard.test.v1.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(fail)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    address = f"unix:{tmp_path / 'errors.sock'}"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(_METHOD)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"")
        assert_same_error(error_from_rpc(info.value), error)
    finally:
        await server.stop(None)


def test_usage_records_round_trip() -> None:
    records = [
        UsageRecord(
            id="abc",
            size=4096,
            record_type=RecordType.EXEC_CACHEMOUNT,
            mutable=True,
            in_use=False,
            shared=True,
            created=T,
            last_used=T + 60,
            usage_count=3,
            description="cache mount /root/.cache",
            parents=("p1", "p2"),
        ),
        UsageRecord(
            id="def",
            size=0,
            record_type=RecordType.REGULAR,
            mutable=False,
            in_use=True,
            shared=False,
            created=T,
            last_used=None,
            usage_count=0,
            description="",
            parents=(),
        ),
    ]
    for record in records:
        message = pb.UsageRecord()
        message.ParseFromString(usage_record_to_pb(record).SerializeToString())
        assert usage_record_from_pb(message) == record
    with pytest.raises(UsageError, match="unknown cache record type"):
        usage_record_from_pb(pb.UsageRecord(record_type="blob"))


def test_gc_policies_round_trip_with_percentages_resolved() -> None:
    policy = GcPolicy(
        all=True,
        filter=UsageFilter(
            types=frozenset({RecordType.SOURCE_LOCAL, RecordType.SOURCE_GIT}),
            ids=("ab",),
            description="ctx",
            mutable=False,
            in_use=False,
        ),
        keep_duration=172800.0,
        reserved_space=Space(bytes=1 << 30),
        max_used_space=Space(percent=50),
        min_free_space=None,
    )
    message = gc_policy_to_pb(policy, disk_total=10_000)
    assert message.max_used_space == 5000
    assert message.keep_duration == 172800 * 10**9
    assert list(message.filters) == [
        "type=source.git",
        "type=source.local",
        "id=ab",
        "description=ctx",
        "mutable=false",
        "inuse=false",
    ]
    back = gc_policy_from_pb(message)
    assert back == GcPolicy(
        all=True,
        filter=policy.filter,
        keep_duration=172800.0,
        reserved_space=Space(bytes=1 << 30),
        max_used_space=Space(bytes=5000),
    )
    for default in default_gc_policies():
        assert gc_policy_from_pb(gc_policy_to_pb(default, 0)).filter == default.filter


def test_prune_requests_round_trip() -> None:
    policy = GcPolicy(
        filter=UsageFilter(types=frozenset({RecordType.EXEC_CACHEMOUNT})),
        keep_duration=3600.5,
        reserved_space=Space(bytes=100),
        max_used_space=Space(bytes=200),
        min_free_space=Space(bytes=300),
    )
    message = pb.PruneRequest()
    message.ParseFromString(prune_request_to_pb(policy).SerializeToString())
    assert gc_policy_from_pb(message) == policy
    assert gc_policy_from_pb(pb.PruneRequest()) == GcPolicy()
    with pytest.raises(UsageError, match="sizes in bytes"):
        prune_request_to_pb(GcPolicy(reserved_space=Space(percent=5)))


def test_error_detail_is_json_of_the_record() -> None:
    error = ERRORS[-1]
    _, _, metadata = error_to_status(error)
    status = pb.Status()
    status.ParseFromString(metadata[0][1])
    assert status.code == grpc.StatusCode.UNKNOWN.value[0]
    detail = pb.ErrorDetail()
    detail.ParseFromString(status.details[0].value)
    assert json.loads(detail.record_json) == error.to_record()
    assert detail.sources[0].first_line == 5
    assert detail.sources[0].data.decode().splitlines()[0] == "RUN step 5"


@pytest.mark.parametrize(
    ("details", "reason"),
    [
        (
            "failed to connect to all addresses; last error: FAILED_PRECONDITION: "
            "unix:/run/x.sock: connect failed: addr: unix:/run/x.sock error: No such file or "
            "directory",
            "no socket there (is dockyardd running? see dockyardd --help)",
        ),
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
            "Failed to connect to remote host: Connection refused",
            "connection refused (is dockyardd running and listening there?)",
        ),
        (
            "failed to connect to all addresses; last error: UNKNOWN: unix:/run/x.sock: "
            "Permission denied",
            "permission denied: only root and the socket's group may use it (the daemon's "
            "config names the group: [grpc] group, see dockyardd --help)",
        ),
        ("Stream removed (Socket closed)", "it closed the connection (did dockyardd stop?)"),
        (
            "Ssl handshake failed: CERTIFICATE_VERIFY_FAILED",
            "Ssl handshake failed: CERTIFICATE_VERIFY_FAILED",
        ),  # said as grpc says it
    ],
    ids=["no-socket", "refused", "permission", "closed", "tls"],
)
def test_an_unreachable_daemon_is_said_plainly(details: str, reason: str) -> None:
    # grpc's own words ("failed to connect to all addresses; last error: FAILED_PRECONDITION
    # ...") reached the user as they were
    error = error_from_status(grpc.StatusCode.UNAVAILABLE, details)
    assert str(error) == f"cannot reach the daemon: {reason}"
