"""The committed generated modules (``src/dockyard/api/_gen``) match the ``.proto``
files: a ``.proto`` edited without running ``scripts/gen-proto`` fails here.

Compared as descriptors (what protoc makes of each ``.proto`` now against the one the
committed module embeds), so the protoc version that wrote the modules' comments and
runtime checks does not matter.
"""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "src" / "dockyard" / "api" / "proto"
PROTOS = sorted(p.name for p in PROTO_DIR.glob("*.proto"))


def _normalized(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """Without json_name (a descriptor set spells it out, generated code need not)."""
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(file)
    out.ClearField("source_code_info")

    def strip(messages: object) -> None:
        for message in messages:  # type: ignore[attr-defined]
            for field in (*message.field, *message.extension):
                field.ClearField("json_name")
            strip(message.nested_type)

    strip(out.message_type)
    for field in out.extension:
        field.ClearField("json_name")
    return out


def test_there_are_protos() -> None:
    assert {"ops.proto", "control.proto", "session.proto"} <= set(PROTOS)


@pytest.mark.parametrize("proto", PROTOS)
def test_generated_module_matches_its_proto(proto: str, tmp_path: Path) -> None:
    from grpc_tools import protoc

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    out = tmp_path / "set.pb"
    code = protoc.main(
        ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--descriptor_set_out={out}", proto]
    )
    assert code == 0, f"protoc failed on {proto}"
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert [f.name for f in compiled] == [proto]

    module = importlib.import_module(f"dockyard.api._gen.{proto.removesuffix('.proto')}_pb2")
    committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
    assert _normalized(committed) == _normalized(compiled[0]), (
        f"src/dockyard/api/_gen/ is out of date with {proto}: run scripts/gen-proto"
    )
