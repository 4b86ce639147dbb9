"""LLB messages (protobuf package ``pb``, wire-compatible with BuildKit's ``solver/pb``).

The classes are the generated protobuf messages of ``proto/ops.proto`` re-exported under
stable names: ``from dockyard.api import ops; ops.Op(...)``. Importing this module loads
the protobuf runtime; ``dockyard.api`` itself does not.

Conventions shared with BuildKit that the schema cannot express:

- an op's digest is ``sha256`` of its serialized bytes *as received*;
- input/output indexes use ``-1`` for "none" (:data:`EMPTY_INPUT`, :data:`SKIP_OUTPUT`);
- in a file op, an action's ``input``/``secondaryInput`` below ``len(Op.inputs)`` names an
  op input, and ``len(Op.inputs) + i`` names the result of ``actions[i]``;
- the last op of a Definition is the terminal op: no op kind, one input, the result.
"""

from __future__ import annotations

from dockyard.api._gen.ops_pb2 import (
    BuildInput,
    BuildOp,
    CacheOpt,
    CacheSharingOpt,
    CDIDevice,
    ChownOpt,
    Definition,
    DiffOp,
    ExecOp,
    ExportCache,
    FileAction,
    FileActionCopy,
    FileActionMkDir,
    FileActionMkFile,
    FileActionRm,
    FileActionSymlink,
    FileOp,
    HostIP,
    Input,
    Location,
    Locations,
    LowerDiffInput,
    MergeInput,
    MergeOp,
    Meta,
    Mount,
    MountContentCache,
    MountType,
    NamedUserOpt,
    NetMode,
    Op,
    OpMetadata,
    Platform,
    Position,
    ProgressGroup,
    ProxyEnv,
    Range,
    SecretEnv,
    SecretOpt,
    SecurityMode,
    Source,
    SourceInfo,
    SourceOp,
    SSHOpt,
    TmpfsOpt,
    Ulimit,
    UpperDiffInput,
    UserOpt,
    WorkerConstraints,
)

#: ``Mount.input`` / ``FileAction.input`` value meaning "start from an empty directory".
EMPTY_INPUT = -1
#: ``Mount.output`` / ``FileAction.output`` value meaning "this produces no op output".
SKIP_OUTPUT = -1
#: ``Mount.dest`` of the container's root filesystem.
ROOT_MOUNT = "/"

__all__ = [
    "EMPTY_INPUT",
    "ROOT_MOUNT",
    "SKIP_OUTPUT",
    "BuildInput",
    "BuildOp",
    "CDIDevice",
    "CacheOpt",
    "CacheSharingOpt",
    "ChownOpt",
    "Definition",
    "DiffOp",
    "ExecOp",
    "ExportCache",
    "FileAction",
    "FileActionCopy",
    "FileActionMkDir",
    "FileActionMkFile",
    "FileActionRm",
    "FileActionSymlink",
    "FileOp",
    "HostIP",
    "Input",
    "Location",
    "Locations",
    "LowerDiffInput",
    "MergeInput",
    "MergeOp",
    "Meta",
    "Mount",
    "MountContentCache",
    "MountType",
    "NamedUserOpt",
    "NetMode",
    "Op",
    "OpMetadata",
    "Platform",
    "Position",
    "ProgressGroup",
    "ProxyEnv",
    "Range",
    "SSHOpt",
    "SecretEnv",
    "SecretOpt",
    "SecurityMode",
    "Source",
    "SourceInfo",
    "SourceOp",
    "TmpfsOpt",
    "Ulimit",
    "UpperDiffInput",
    "UserOpt",
    "WorkerConstraints",
]
