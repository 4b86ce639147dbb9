"""Definitions written out byte by byte from the protobuf wire rules (tags, varints,
length-delimited fields), not with any protobuf encoder: our loader must decode them with
the digests the bytes imply, and our builder must reproduce them exactly.

The graph is what BuildKit's Go client makes for the same calls: an image, an exec with a
cache mount, a file op whose actions chain through earlier actions' results (a copy reads
the result of a mkdir+mkfile chain applied to scratch), a merge, and the terminal op.
"""

from __future__ import annotations

import hashlib

from dockyard import llb

# -- the wire rules -----------------------------------------------------------------------

VARINT, LEN = 0, 2


def varint(n: int) -> bytes:
    """Base-128 little-endian; negative numbers as their 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def num(field: int, value: int) -> bytes:
    return tag(field, VARINT) + varint(value)


def ld(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return tag(field, LEN) + varint(len(data)) + data


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_varint_rules() -> None:
    assert varint(0) == b"\x00"
    assert varint(150) == b"\x96\x01"
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert tag(20, LEN) == b"\xa2\x01"


# -- the graph, by hand ---------------------------------------------------------------------

PLATFORM = ld(10, ld(1, "amd64") + ld(2, "linux"))  # Op.platform {Architecture, OS}
NO_CONSTRAINTS = ld(11, b"")  # Op.constraints, present and empty

SOURCE = ld(3, ld(1, "docker-image://docker.io/library/busybox:latest")) + PLATFORM + NO_CONSTRAINTS
SOURCE_D = sha(SOURCE)

EXEC = (
    ld(1, ld(1, SOURCE_D))  # inputs[0] = {digest; index 0 is the default, omitted}
    + ld(
        2,  # exec
        ld(
            1,  # meta
            ld(1, "/bin/sh")
            + ld(1, "-c")
            + ld(1, "go build ./...")
            + ld(2, "A=1")  # env
            + ld(3, "/src")  # cwd
            + num(11, 1),  # removeMountStubsRecursive
        )
        + ld(2, ld(3, "/"))  # mounts[0]: root, input 0 and output 0 omitted
        + ld(
            2,
            num(1, -1)  # input: none
            + ld(3, "/root/.cache")
            + num(4, -1)  # output: none
            + num(6, 3)  # mountType CACHE
            + ld(20, ld(1, "gocache") + num(2, 2)),  # cacheOpt {ID, sharing LOCKED}
        ),
    )
    + PLATFORM
    + NO_CONSTRAINTS
)
EXEC_D = sha(EXEC)

NONE = num(2, -1) + num(3, -1)  # secondaryInput -1, output -1
FILE_ACTIONS = [
    # 0: mkdir /out on op input 0 (the exec's root)
    NONE + ld(6, ld(1, "/out") + num(2, 0o755) + num(5, -1)),
    # 1: mkdir -p /data on scratch (-1)
    num(1, -1) + NONE + ld(6, ld(1, "/data") + num(2, 0o755) + num(3, 1) + num(5, -1)),
    # 2: mkfile /data/greeting on the result of action 1 (1 input + 1)
    num(1, 2) + NONE + ld(5, ld(1, "/data/greeting") + num(2, 0o644) + ld(3, b"hi\n") + num(5, -1)),
    # 3: copy from the result of action 2 (secondary 1 + 2) onto the result of action 0
    num(1, 1)
    + num(2, 3)
    + num(3, -1)
    + ld(4, ld(1, "/data/greeting") + ld(2, "/out/greeting") + num(4, -1) + num(11, -1)),
    # 4: symlink on the result of action 3; output 0 (omitted), the op's only output
    num(1, 4) + num(2, -1) + ld(8, ld(1, "greeting") + ld(2, "/out/link") + num(4, -1)),
]
FILE = ld(1, ld(1, EXEC_D)) + ld(4, b"".join(ld(2, a) for a in FILE_ACTIONS)) + NO_CONSTRAINTS
FILE_D = sha(FILE)

MERGE = (
    ld(1, ld(1, EXEC_D))
    + ld(1, ld(1, FILE_D))
    + ld(6, ld(1, b"") + ld(1, num(1, 1)))  # merge inputs 0 and 1
    + NO_CONSTRAINTS
)
MERGE_D = sha(MERGE)

TERMINAL = ld(1, ld(1, MERGE_D))
TERMINAL_D = sha(TERMINAL)

OPS = [SOURCE, EXEC, FILE, MERGE, TERMINAL]


def op_metadata(caps: list[str], description: dict[str, str] | None = None) -> bytes:
    out = b""
    for key, value in sorted((description or {}).items()):
        out += ld(2, ld(1, key) + ld(2, value))
    for cap in sorted(caps):
        out += ld(5, ld(1, cap) + num(2, 1))
    return out


METADATA = {
    SOURCE_D: op_metadata(["source.image"]),
    EXEC_D: op_metadata(
        ["exec.meta.base", "exec.mount.bind", "exec.mount.cache", "exec.mount.cache.sharing"],
        {"llb.customname": "compile"},
    ),
    FILE_D: op_metadata(["file.base"]),
    MERGE_D: op_metadata(["mergeop"]),
    TERMINAL_D: op_metadata(["constraints", "meta.description", "platform"]),
}

DEFINITION = b"".join(ld(1, op) for op in OPS) + b"".join(
    ld(2, ld(1, digest) + ld(2, md)) for digest, md in sorted(METADATA.items())
)


def build_graph() -> llb.State:
    """The same graph with the builder API."""
    compiled = (
        llb.image("busybox")
        .with_env("A", "1")
        .with_cwd("/src")
        .run(
            "go build ./...",
            mounts=[llb.CacheMount("/root/.cache", "gocache", sharing=llb.CacheSharing.LOCKED)],
            name="compile",
        )
    )
    greeting = llb.mkdir("/data", 0o755, parents=True).mkfile("/data/greeting", 0o644, b"hi\n")
    actions = (
        llb.mkdir("/out", 0o755)
        .copy(greeting.with_state(llb.scratch()), "/data/greeting", "/out/greeting")
        .symlink("greeting", "/out/link")
    )
    files = compiled.root.file(actions)
    return llb.merge([compiled.root, files])


# -- the tests ------------------------------------------------------------------------------


def test_loader_decodes_hand_written_bytes() -> None:
    definition = llb.Definition.load(DEFINITION)

    assert [op.digest for op in definition] == [sha(op) for op in OPS]
    assert [op.data for op in definition] == OPS
    assert [op.kind for op in definition] == ["source", "exec", "file", "merge", ""]
    assert definition.head == llb.OpInput(MERGE_D, 0)  # type: ignore[arg-type]
    assert definition.to_bytes() == DEFINITION

    source, exec_op, file_op, merge, terminal = definition
    assert source.op.source.identifier == "docker-image://docker.io/library/busybox:latest"
    assert source.op.platform.OS == "linux"
    assert exec_op.inputs == (llb.OpInput(SOURCE_D, 0),)  # type: ignore[arg-type]
    assert list(exec_op.op.exec.meta.args) == ["/bin/sh", "-c", "go build ./..."]
    cache = exec_op.op.exec.mounts[1]
    assert (cache.input, cache.output, cache.cacheOpt.ID, cache.cacheOpt.sharing) == (
        -1,
        -1,
        "gocache",
        2,
    )
    assert exec_op.outputs == 1
    assert exec_op.name == "compile"
    actions = file_op.op.file.actions
    assert [a.WhichOneof("action") for a in actions] == [
        "mkdir",
        "mkdir",
        "mkfile",
        "copy",
        "symlink",
    ]
    assert [(a.input, a.secondaryInput, a.output) for a in actions] == [
        (0, -1, -1),
        (-1, -1, -1),
        (2, -1, -1),
        (1, 3, -1),
        (4, -1, 0),
    ]
    assert actions[2].mkfile.data == b"hi\n"
    assert actions[3].copy.mode == -1
    assert file_op.name.startswith("mkdir /out; mkdir /data; mkfile /data/greeting; copy")
    assert [i.digest for i in merge.inputs] == [EXEC_D, FILE_D]
    assert terminal.is_terminal
    assert dict(terminal.metadata.caps) == {
        "constraints": True,
        "meta.description": True,
        "platform": True,
    }


def test_builder_reproduces_the_bytes() -> None:
    definition = build_graph().marshal(platform="linux/amd64")

    for ours, theirs in zip(definition, OPS, strict=True):
        assert ours.data == theirs, f"op {ours.kind or 'terminal'} differs"
    assert definition.to_bytes() == DEFINITION


def test_loaded_bytes_are_kept_even_if_not_canonical() -> None:
    # The same source op with its fields in reverse order: valid protobuf, not what
    # a deterministic encoder writes. Its digest is that of these bytes.
    reordered = (
        NO_CONSTRAINTS + PLATFORM + ld(3, ld(1, "docker-image://docker.io/library/busybox:latest"))
    )
    terminal = ld(1, ld(1, sha(reordered)))
    data = ld(1, reordered) + ld(1, terminal)

    definition = llb.Definition.load(data)
    assert definition.ops[0].digest == sha(reordered) != SOURCE_D
    assert definition.ops[0].data == reordered
    assert definition.to_bytes() == data
    assert llb.Definition.load(definition.to_bytes()).ops[0].digest == sha(reordered)


def test_unknown_fields_survive() -> None:
    # Field 99 is not in our schema (a newer BuildKit may send it): the op still loads and
    # keeps its bytes, so its digest is unchanged.
    source = SOURCE + ld(99, "from the future")
    data = ld(1, source) + ld(1, ld(1, ld(1, sha(source))))
    definition = llb.Definition.load(data)
    assert definition.ops[0].digest == sha(source)
    assert definition.ops[0].op.source.identifier.startswith("docker-image://")


def test_map_entries_sorted_bytewise_with_key_and_value() -> None:
    # Go sorts map keys bytewise ("a" < "ab" < "b") and always writes key and value;
    # a source op's attrs are the one map inside ops.
    state = llb.http(
        "https://example.com/f",
        filename="",  # not set: empty attributes are not written
        checksum="sha256:" + "a" * 64,
        perm=0o600,
        auth_header_secret="H",
    )
    definition = state.marshal(platform="linux/amd64")
    attrs = [
        ("http.authheadersecret", "H"),
        ("http.checksum", "sha256:" + "a" * 64),
        ("http.perm", "0600"),
    ]
    expected = (
        ld(
            3,
            ld(1, "https://example.com/f") + b"".join(ld(2, ld(1, k) + ld(2, v)) for k, v in attrs),
        )
        + NO_CONSTRAINTS
    )
    assert definition.ops[0].data == expected


def test_serializer_orders_prefix_keys_like_go() -> None:
    from dockyard.api import ops as pb
    from dockyard.llb._wire import serialize

    message = pb.SourceOp(identifier="x")
    for key in ("b", "ab", "a"):
        message.attrs[key] = "" if key == "b" else key.upper()
    entries = [("a", "A"), ("ab", "AB"), ("b", "")]
    assert serialize(message) == ld(1, "x") + b"".join(
        ld(2, ld(1, k) + ld(2, v)) for k, v in entries
    )
