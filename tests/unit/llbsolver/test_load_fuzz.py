"""Mutated LLB from a client: any field of any op set to an odd value (indexes out of
range, negative or huge numbers, unknown enum values, odd strings), the Definition
rebuilt with the digests it implies, then loaded and made vertices. Only Dockyard errors
come out (a daemon answers them as the client's mistake), never another exception."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard import llb
from dockyard.api import ops as pb
from dockyard.core import Digest, DockyardError, InvalidDefinitionError
from dockyard.llbsolver import load

from .test_ops import Env, env  # noqa: F401  (the fixture)

EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "150"))

INTS = [-(1 << 63), -(1 << 31), -2, -1, 0, 1, 2, 3, 7, 1 << 31, (1 << 63) - 1]
STRINGS = [
    "",
    "/",
    ".",
    "..",
    "../../x",
    "/a/../..",
    "\0",
    "a\nb",
    "x" * 5000,
    "é",
    "sha256:" + "0" * 64,
    "docker-image://busybox",
    "local://ctx",
    "git://x",
    "https://example.com/x",
    "A=B",
    "=",
    "u+q",
    "0:0",
    "root",
    "-1",
    "*",
    "**/x",
]


def _samples() -> list[llb.Definition]:
    base = llb.image("busybox")
    ctx = llb.local("ctx", include_patterns=["*.py"])
    run = base.run(
        ["sh", "-c", "x"],
        mounts=[
            llb.BindMount(dest="/src", source=ctx, readonly=True),
            llb.CacheMount(dest="/cache", id="c"),
            llb.TmpfsMount(dest="/tmp", size=1 << 20),
            llb.SecretMount(dest="/run/s", id="s"),
        ],
    )
    files = base.file(
        llb.copy(ctx, "/app.py", "/app/", mode="755", owner="1:1")
        .mkdir("/d", mode=0o700, parents=True)
        .mkfile("/d/f", 0o644, b"data")
        .symlink("/d/f", "/l")
        .rm("/gone", allow_not_found=True)
    )
    return [
        run.root.marshal(),
        files.marshal(),
        llb.merge([base, files, run.root]).marshal(),
        llb.diff(base, run.root).marshal(),
    ]


def _leaves(message: Any) -> list[tuple[Any, ...]]:
    """(message, field) pairs of every field a mutation may set, nested messages too."""
    out: list[tuple[Any, ...]] = []
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                if field.message_type.GetOptions().map_entry:
                    continue
                for item in getattr(message, field.name):
                    out.extend(_leaves(item))
            elif message.HasField(field.name) or (
                field.containing_oneof is None and len(out) % 3 == 0
            ):
                # an unset message sometimes (setting one of a oneof would turn a file
                # op into an exec without arguments: the loader's first check)
                out.extend(_leaves(getattr(message, field.name)))
        else:
            out.append((message, field))
    return out


def _mutate(message: Any, field: FieldDescriptor, choice: int) -> None:
    repeated = field.is_repeated
    if field.type == FieldDescriptor.TYPE_STRING:
        value: Any = STRINGS[choice % len(STRINGS)]
    elif field.type == FieldDescriptor.TYPE_BYTES:
        value = STRINGS[choice % len(STRINGS)].encode()
    elif field.type == FieldDescriptor.TYPE_BOOL:
        value = bool(choice % 2)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        value = [0, 1, 2, 3, 99, -1][choice % 6]
    else:
        value = INTS[choice % len(INTS)]
        if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
            value = max(-(1 << 31), min(value, (1 << 31) - 1))
        elif field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            value = value % (1 << 32)
        elif field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            value = value % (1 << 64)
    if repeated:
        getattr(message, field.name).append(value)
    else:
        setattr(message, field.name, value)


def _field_mutations(mutations: list[tuple[int, int]]) -> Callable[[pb.Op], None]:
    def mutate(op: pb.Op) -> None:
        for leaf, choice in mutations:
            leaves = _leaves(op)
            if leaves:
                holder, field = leaves[leaf % len(leaves)]
                _mutate(holder, field, choice)

    return mutate


def _rebuild(data: bytes, target: int, mutate: Callable[[pb.Op], None]) -> bytes:
    """``data`` with op number ``target`` (modulo their number) changed by ``mutate``,
    the digests of the ops after it renamed to match."""
    message = pb.Definition()
    message.ParseFromString(data)
    raws = list(getattr(message, "def"))
    renamed: dict[str, str] = {}
    out = pb.Definition()
    for position, raw in enumerate(raws):
        op = pb.Op()
        op.ParseFromString(raw)
        for item in op.inputs:
            item.digest = renamed.get(item.digest, item.digest)
        if position == target % len(raws):
            mutate(op)
        new = op.SerializeToString(deterministic=True)
        renamed[str(Digest.from_bytes(raw))] = str(Digest.from_bytes(new))
        getattr(out, "def").append(new)
    return out.SerializeToString(deterministic=True)


SAMPLES = [d.to_bytes() for d in _samples()]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.integers(0, len(SAMPLES) - 1),
    st.integers(0, 50),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 100)), min_size=1, max_size=4),
)
def test_mutated_definitions_fail_only_with_dockyard_errors(
    env: Env,  # noqa: F811
    sample: int,
    target: int,
    mutations: list[tuple[int, int]],
) -> None:
    data = _rebuild(SAMPLES[sample], target, _field_mutations(mutations))
    try:
        load(llb.Definition.load(data), env.worker)
    except DockyardError:
        pass


def test_an_unknown_cache_sharing_mode_is_an_invalid_definition(env: Env) -> None:  # noqa: F811
    state = llb.image("busybox").run(["true"], mounts=[llb.CacheMount(dest="/c", id="c")])
    data = state.root.marshal().to_bytes()

    def mutate(op: pb.Op) -> None:
        for mount in op.exec.mounts:
            if mount.dest == "/c":
                mount.cacheOpt.sharing = 3  # type: ignore[assignment]

    # the exec is the op before the terminal one (was a ValueError traceback)
    with pytest.raises(InvalidDefinitionError, match="cache mount /c: unknown sharing mode 3"):
        load(llb.Definition.load(_rebuild(data, -2, mutate)), env.worker)
