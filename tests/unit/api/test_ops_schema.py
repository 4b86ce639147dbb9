"""The LLB schema keeps BuildKit's field numbers, names and enum values (solver/pb/ops.proto).

The tables below are the compatibility contract: renumbering or renaming a field breaks
wire compatibility (numbers) or the protobuf-JSON dump (names)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf.descriptor import FieldDescriptor

from dockyard.api import ops

FIELDS: dict[str, dict[str, int]] = {
    "Op": {
        "inputs": 1,
        "exec": 2,
        "source": 3,
        "file": 4,
        "build": 5,
        "merge": 6,
        "diff": 7,
        "platform": 10,
        "constraints": 11,
    },
    "Platform": {"Architecture": 1, "OS": 2, "Variant": 3, "OSVersion": 4, "OSFeatures": 5},
    "Input": {"digest": 1, "index": 2},
    "Definition": {"def": 1, "metadata": 2, "Source": 3},
    "OpMetadata": {
        "ignore_cache": 1,
        "description": 2,
        "export_cache": 4,
        "caps": 5,
        "progress_group": 6,
    },
    "ExportCache": {"Value": 1},
    "ProgressGroup": {"id": 1, "name": 2, "weak": 3},
    "WorkerConstraints": {"filter": 1},
    "Source": {"locations": 1, "infos": 2},
    "Locations": {"locations": 1},
    "SourceInfo": {"filename": 1, "data": 2, "definition": 3, "language": 4},
    "Location": {"sourceIndex": 1, "ranges": 2},
    "Range": {"start": 1, "end": 2},
    "Position": {"line": 1, "character": 2},
    "SourceOp": {"identifier": 1, "attrs": 2},
    "ExecOp": {
        "meta": 1,
        "mounts": 2,
        "network": 3,
        "security": 4,
        "secretenv": 5,
        "cdiDevices": 6,
    },
    "CDIDevice": {"name": 1, "optional": 2},
    "Meta": {
        "args": 1,
        "env": 2,
        "cwd": 3,
        "user": 4,
        "proxy_env": 5,
        "extraHosts": 6,
        "hostname": 7,
        "ulimit": 9,
        "cgroupParent": 10,
        "removeMountStubsRecursive": 11,
        "validExitCodes": 12,
    },
    "HostIP": {"Host": 1, "IP": 2},
    "Ulimit": {"Name": 1, "Soft": 2, "Hard": 3},
    "ProxyEnv": {"http_proxy": 1, "https_proxy": 2, "ftp_proxy": 3, "no_proxy": 4, "all_proxy": 5},
    "SecretEnv": {"ID": 1, "name": 2, "optional": 3},
    "Mount": {
        "input": 1,
        "selector": 2,
        "dest": 3,
        "output": 4,
        "readonly": 5,
        "mountType": 6,
        "TmpfsOpt": 19,
        "cacheOpt": 20,
        "secretOpt": 21,
        "SSHOpt": 22,
        "resultID": 23,
        "contentCache": 24,
    },
    "TmpfsOpt": {"size": 1},
    "CacheOpt": {"ID": 1, "sharing": 2},
    "SecretOpt": {"ID": 1, "uid": 2, "gid": 3, "mode": 4, "optional": 5},
    "SSHOpt": {"ID": 1, "uid": 2, "gid": 3, "mode": 4, "optional": 5},
    "FileOp": {"actions": 2},
    "FileAction": {
        "input": 1,
        "secondaryInput": 2,
        "output": 3,
        "copy": 4,
        "mkfile": 5,
        "mkdir": 6,
        "rm": 7,
        "symlink": 8,
    },
    "FileActionCopy": {
        "src": 1,
        "dest": 2,
        "owner": 3,
        "mode": 4,
        "followSymlink": 5,
        "dirCopyContents": 6,
        "attemptUnpackDockerCompatibility": 7,
        "createDestPath": 8,
        "allowWildcard": 9,
        "allowEmptyWildcard": 10,
        "timestamp": 11,
        "include_patterns": 12,
        "exclude_patterns": 13,
        "alwaysReplaceExistingDestPaths": 14,
        "modeStr": 15,
        "required_paths": 16,
    },
    "FileActionMkFile": {"path": 1, "mode": 2, "data": 3, "owner": 4, "timestamp": 5},
    "FileActionMkDir": {"path": 1, "mode": 2, "makeParents": 3, "owner": 4, "timestamp": 5},
    "FileActionRm": {"path": 1, "allowNotFound": 2, "allowWildcard": 3},
    "FileActionSymlink": {"oldpath": 1, "newpath": 2, "owner": 3, "timestamp": 4},
    "ChownOpt": {"user": 1, "group": 2},
    "UserOpt": {"byName": 1, "byID": 2},
    "NamedUserOpt": {"name": 1, "input": 2},
    "MergeOp": {"inputs": 1},
    "MergeInput": {"input": 1},
    "DiffOp": {"lower": 1, "upper": 2},
    "LowerDiffInput": {"input": 1},
    "UpperDiffInput": {"input": 1},
    "BuildOp": {"builder": 1, "inputs": 2, "def": 3, "attrs": 4},
    "BuildInput": {"input": 1},
}

ENUMS: dict[str, dict[str, int]] = {
    "NetMode": {"UNSET": 0, "HOST": 1, "NONE": 2},
    "SecurityMode": {"SANDBOX": 0, "INSECURE": 1},
    "MountType": {"BIND": 0, "SECRET": 1, "SSH": 2, "CACHE": 3, "TMPFS": 4},
    "MountContentCache": {"DEFAULT": 0, "ON": 1, "OFF": 2},
    "CacheSharingOpt": {"SHARED": 0, "PRIVATE": 1, "LOCKED": 2},
}

# Scalar types where a mismatch would change the wire encoding.
TYPES = {
    ("Input", "index"): FieldDescriptor.TYPE_INT64,
    ("Mount", "input"): FieldDescriptor.TYPE_INT64,
    ("Mount", "output"): FieldDescriptor.TYPE_INT64,
    ("FileAction", "input"): FieldDescriptor.TYPE_INT64,
    ("FileActionCopy", "mode"): FieldDescriptor.TYPE_INT32,
    ("FileActionCopy", "timestamp"): FieldDescriptor.TYPE_INT64,
    ("SecretOpt", "uid"): FieldDescriptor.TYPE_UINT32,
    ("UserOpt", "byID"): FieldDescriptor.TYPE_UINT32,
    ("Meta", "validExitCodes"): FieldDescriptor.TYPE_INT32,
    ("Position", "line"): FieldDescriptor.TYPE_INT32,
    ("Definition", "def"): FieldDescriptor.TYPE_BYTES,
    ("FileActionMkFile", "data"): FieldDescriptor.TYPE_BYTES,
}


def test_package_is_pb() -> None:
    assert ops.Op.DESCRIPTOR.full_name == "pb.Op"


@pytest.mark.parametrize("message", sorted(FIELDS))
def test_fields(message: str) -> None:
    descriptor = getattr(ops, message).DESCRIPTOR
    assert {f.name: f.number for f in descriptor.fields} == FIELDS[message]


@pytest.mark.parametrize("enum", sorted(ENUMS))
def test_enums(enum: str) -> None:
    descriptor = getattr(ops, enum).DESCRIPTOR
    assert {v.name: v.number for v in descriptor.values} == ENUMS[enum]


def test_every_message_is_covered() -> None:
    file = ops.Op.DESCRIPTOR.file
    assert set(file.message_types_by_name) == set(FIELDS)
    assert set(file.enum_types_by_name) == set(ENUMS)


@pytest.mark.parametrize(("message", "field"), sorted(TYPES))
def test_wire_types(message: str, field: str) -> None:
    descriptor = getattr(ops, message).DESCRIPTOR
    assert descriptor.fields_by_name[field].type == TYPES[(message, field)]


def test_oneofs() -> None:
    assert [f.name for f in ops.Op.DESCRIPTOR.oneofs_by_name["op"].fields] == [
        "exec",
        "source",
        "file",
        "build",
        "merge",
        "diff",
    ]
    assert [f.name for f in ops.FileAction.DESCRIPTOR.oneofs_by_name["action"].fields] == [
        "copy",
        "mkfile",
        "mkdir",
        "rm",
        "symlink",
    ]


def test_importing_dockyard_api_does_not_load_protobuf() -> None:
    code = (
        "import sys, dockyard.api; print(any(m.startswith('google.protobuf') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_lazy_submodule_is_the_module() -> None:
    code = (
        "import dockyard.api as api, importlib; "
        "lazy = api.ops; assert lazy is importlib.import_module('dockyard.api.ops'); "
        "assert not hasattr(api, 'nonexistent')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
