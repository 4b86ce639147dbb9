"""control.proto keeps the field numbers and wire types of BuildKit's control API
(moby.buildkit.v1: api/services/control/control.proto, api/types/worker.proto) for the
fields both have, so a BuildKit client's messages decode as ours. Our own fields are
numbered from 100."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from dockyard.api._gen import control_pb2 as pb

LENGTH_DELIMITED = {
    FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_MESSAGE,
}

# message -> field -> (BuildKit's number, BuildKit's wire type)
BUILDKIT: dict[str, dict[str, tuple[int, str]]] = {
    "SolveRequest": {
        "ref": (1, "len"),
        "definition": (2, "len"),  # pb.Definition there: both length-delimited
        "session": (5, "len"),
        "frontend": (6, "len"),
        "frontend_attrs": (7, "len"),
        "cache": (8, "len"),
        "entitlements": (9, "len"),
        "frontend_inputs": (10, "len"),
        "exporters": (13, "len"),
    },
    "Exporter": {"type": (1, "len"), "attrs": (2, "len")},
    "CacheOptions": {"exports": (4, "len"), "imports": (5, "len")},
    "CacheOptionsEntry": {"type": (1, "len"), "attrs": (2, "len")},
    "SolveResponse": {"exporter_response": (1, "len")},
    "StatusRequest": {"ref": (1, "len")},
    "StatusResponse": {
        "vertexes": (1, "len"),
        "statuses": (2, "len"),
        "logs": (3, "len"),
        "warnings": (4, "len"),
    },
    "Vertex": {
        "digest": (1, "len"),
        "inputs": (2, "len"),
        "name": (3, "len"),
        "cached": (4, "varint"),
        "started": (5, "len"),
        "completed": (6, "len"),
        "error": (7, "len"),
        "progress_group": (8, "len"),
    },
    "VertexStatus": {
        "id": (1, "len"),
        "vertex": (2, "len"),
        "name": (3, "len"),
        "current": (4, "varint"),
        "total": (5, "varint"),
        "timestamp": (6, "len"),
        "started": (7, "len"),
        "completed": (8, "len"),
    },
    "VertexLog": {
        "vertex": (1, "len"),
        "timestamp": (2, "len"),
        "stream": (3, "varint"),
        "msg": (4, "len"),
    },
    "VertexWarning": {
        "vertex": (1, "len"),
        "level": (2, "varint"),
        "short": (3, "len"),
        "detail": (4, "len"),
        "url": (5, "len"),
        "info": (6, "len"),
        "ranges": (7, "len"),
    },
    "DiskUsageRequest": {"filter": (1, "len")},
    "DiskUsageResponse": {"record": (1, "len")},
    "UsageRecord": {
        "id": (1, "len"),
        "mutable": (2, "varint"),
        "in_use": (3, "varint"),
        "size": (4, "varint"),
        "created_at": (6, "len"),
        "last_used_at": (7, "len"),
        "usage_count": (8, "varint"),
        "description": (9, "len"),
        "record_type": (10, "len"),
        "shared": (11, "varint"),
        "parents": (12, "len"),
    },
    "PruneRequest": {
        "filter": (1, "len"),
        "all": (2, "varint"),
        "keep_duration": (3, "varint"),
        "reserved_space": (4, "varint"),
        "max_used_space": (5, "varint"),
        "min_free_space": (6, "varint"),
    },
    "ListWorkersRequest": {"filter": (1, "len")},
    "ListWorkersResponse": {"record": (1, "len")},
    "WorkerRecord": {
        "id": (1, "len"),
        "labels": (2, "len"),
        "platforms": (3, "len"),
        "gc_policy": (4, "len"),
        "version": (5, "len"),
        "cdi_devices": (6, "len"),
    },
    "CDIDevice": {
        "name": (1, "len"),
        "auto_allow": (2, "varint"),
        "annotations": (3, "len"),
        "on_demand": (4, "varint"),
    },
    "GCPolicy": {
        "all": (1, "varint"),
        "keep_duration": (2, "varint"),
        "reserved_space": (3, "varint"),
        "filters": (4, "len"),
        "max_used_space": (5, "varint"),
        "min_free_space": (6, "varint"),
    },
    "Version": {"package": (1, "len"), "version": (2, "len"), "revision": (3, "len")},
    "InfoResponse": {"version": (1, "len")},
    # google.rpc.Status, which the grpc-status-details-bin trailer holds
    "Status": {"code": (1, "varint"), "message": (2, "len"), "details": (3, "len")},
}


@pytest.mark.parametrize("message", sorted(BUILDKIT))
def test_fields_keep_buildkits_numbers_and_wire_types(message: str) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    for name, (number, wire) in BUILDKIT[message].items():
        field = descriptor.fields_by_name[name]
        assert field.number == number, f"{message}.{name}"
        kind = "len" if field.type in LENGTH_DELIMITED else "varint"
        assert kind == wire, f"{message}.{name}"


@pytest.mark.parametrize("message", sorted(BUILDKIT))
def test_our_own_fields_are_numbered_from_100(message: str) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    for field in descriptor.fields:
        if field.name not in BUILDKIT[message]:
            assert field.number >= 100, f"{message}.{field.name}"


def test_the_service_has_buildkits_methods_but_the_session() -> None:
    service = pb.DESCRIPTOR.services_by_name["Control"]
    assert {m.name for m in service.methods} == {
        "Solve",
        "Status",
        "DiskUsage",
        "Prune",
        "ListWorkers",
        "Info",
    }
    assert service.methods_by_name["Status"].server_streaming
    assert service.methods_by_name["Prune"].server_streaming
    assert service.full_name == "dockyard.control.v1.Control"


def test_a_buildkit_solve_request_decodes() -> None:
    """A message with BuildKit's shape (a nested pb.Definition in field 2) decodes into
    our bytes field, and the definition bytes are the nested message's bytes."""
    from dockyard.api import ops

    nested = ops.Definition()
    getattr(nested, "def").append(b"op-bytes")
    ours = pb.SolveRequest(ref="r", definition=nested.SerializeToString(), session="s")
    decoded = pb.SolveRequest()
    decoded.ParseFromString(ours.SerializeToString())
    loaded = ops.Definition()
    loaded.ParseFromString(decoded.definition)
    assert list(getattr(loaded, "def")) == [b"op-bytes"]
