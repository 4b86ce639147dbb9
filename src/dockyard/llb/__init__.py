"""Layer 2: LLB, the build graph — the immutable :class:`State` builder, ops, and the
:class:`Definition` (load, validate, marshal, digest, dump).

Build a graph from states; each method returns a new state::

    from dockyard import llb

    base = llb.image("busybox")
    built = base.run("echo hello > /hello.txt", name="write hello")
    result = llb.scratch().file(llb.copy(built.root, "/hello.txt", "/"))
    definition = result.marshal()
    for op in definition:
        print(op.digest, op.name)

Sources: :func:`image`, :func:`local`, :func:`git`, :func:`http`, :func:`oci_layout`,
:func:`scratch`. Ops: :meth:`State.run` (exec, with :class:`BindMount`,
:class:`CacheMount`, :class:`TmpfsMount`, :class:`SecretMount`, :class:`SSHMount`, and
CDI devices: :class:`CDIDevice`),
:meth:`State.file` with action chains from :func:`mkdir`, :func:`mkfile`, :func:`rm`,
:func:`symlink`, :func:`copy`, and :func:`merge`, :func:`diff`. Per-op options (platform,
custom name, cache control, progress group, source locations) are :class:`Constraints`.

Reading a graph (the solver bridge): ``Definition.load(data)`` validates, then iterating
yields :class:`OpNode` s in Definition order (inputs first, the terminal op last) with
``digest``, ``kind`` (``source``/``exec``/``file``/``merge``/``diff``/``build``, ``""``
for the terminal), ``op`` (the parsed ``pb.Op``), ``inputs`` (:class:`OpInput` edges),
``outputs``, ``metadata`` (``pb.OpMetadata``), ``locations`` and ``name``;
``definition[digest]`` looks one up and ``definition.head`` is the result.

The wire format is BuildKit's ``pb.Definition`` (schema: :mod:`dockyard.api.ops`):
op digests are sha256 of each op's bytes, serialization is deterministic and follows
BuildKit's Go client, so equal graphs get equal digests in any process — and in BuildKit.
Importing this package does not load protobuf; serializing and loading do.
"""

from ._constraints import (
    CUSTOM_NAME,
    CacheSharing,
    Constraints,
    ContentCache,
    NetMode,
    ProgressGroup,
    SecurityMode,
    SourceLocation,
    SourceMap,
)
from ._definition import Definition, OpInput, OpNode
from ._exec import (
    BindMount,
    CacheMount,
    CDIDevice,
    ExecOp,
    ExecState,
    MountSpec,
    ProxyEnv,
    SecretEnv,
    SecretMount,
    SSHMount,
    TmpfsMount,
)
from ._file import Chown, CopyInput, FileAction, FileOp, copy, mkdir, mkfile, rm, symlink
from ._merge import DiffOp, MergeOp, diff, merge
from ._reference import normalize_image_ref
from ._source import ATTR, LocalDiffer, ResolveMode, SourceOp, git, http, image, local, oci_layout
from ._state import HOST_GATEWAY, HOST_GATEWAY_IP, ULIMIT_NAMES, HostIP, State, Ulimit, scratch
from ._vertex import Output, Vertex

__all__ = [
    "ATTR",
    "CUSTOM_NAME",
    "HOST_GATEWAY",
    "HOST_GATEWAY_IP",
    "ULIMIT_NAMES",
    "BindMount",
    "CDIDevice",
    "CacheMount",
    "CacheSharing",
    "Chown",
    "Constraints",
    "ContentCache",
    "CopyInput",
    "Definition",
    "DiffOp",
    "ExecOp",
    "ExecState",
    "FileAction",
    "FileOp",
    "HostIP",
    "LocalDiffer",
    "MergeOp",
    "MountSpec",
    "NetMode",
    "OpInput",
    "OpNode",
    "Output",
    "ProgressGroup",
    "ProxyEnv",
    "ResolveMode",
    "SSHMount",
    "SecretEnv",
    "SecretMount",
    "SecurityMode",
    "SourceLocation",
    "SourceMap",
    "SourceOp",
    "State",
    "TmpfsMount",
    "Ulimit",
    "Vertex",
    "copy",
    "diff",
    "git",
    "http",
    "image",
    "local",
    "merge",
    "mkdir",
    "mkfile",
    "normalize_image_ref",
    "oci_layout",
    "rm",
    "scratch",
    "symlink",
]
