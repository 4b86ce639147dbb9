"""Bad Definitions written out from the wire rules (``test_wire``'s helpers, no protobuf
encoder), shared by the CLI tests of ``dockyard debug dump-llb`` and ``dockyard solve``.

Each case: the bytes and a fragment the error must contain (the op's digest where the
fault lies in one op). A cycle cannot be written in bytes at all — an op's digest is the
hash of its bytes, which include its inputs' digests — so the loader's cycle check is
tested on made-up nodes in ``test_definition``.
"""

from __future__ import annotations

from .test_wire import DEFINITION, SOURCE, SOURCE_D, ld, num, sha

_MISSING = "sha256:" + "c" * 64


def _definition(*ops: bytes) -> bytes:
    return b"".join(ld(1, op) for op in ops)


def _terminal(digest: str, index: int = 0) -> bytes:
    return ld(1, ld(1, digest) + (num(2, index) if index else b""))


# an exec op whose input is an op the Definition does not have
_ORPHAN = ld(1, ld(1, _MISSING)) + ld(2, ld(1, ld(1, "true")) + ld(2, ld(3, "/")))
# an exec op whose root mount reads input 5 of its 1 input
_BAD_MOUNT = ld(1, ld(1, SOURCE_D)) + ld(2, ld(1, ld(1, "true")) + ld(2, num(1, 5) + ld(3, "/")))

CASES: dict[str, tuple[bytes, str]] = {
    "corrupt": (b"\xff\xff\xff", "corrupt or truncated Definition"),
    "truncated": (DEFINITION[:-20], "corrupt or truncated Definition"),
    "unknown input digest": (
        _definition(SOURCE, _ORPHAN, _terminal(sha(_ORPHAN))),
        f"refers to op {_MISSING}, which is not in the Definition",
    ),
    "output index out of range": (
        _definition(SOURCE, _terminal(SOURCE_D, 3)),
        f"asks for output 3 of op {SOURCE_D}, which has 1 output",
    ),
    "mount input index out of range": (
        _definition(SOURCE, _BAD_MOUNT, _terminal(sha(_BAD_MOUNT))),
        f"op {sha(_BAD_MOUNT)} (#1, exec): mount / input is 5",
    ),
    "missing terminal op": (
        _definition(SOURCE),
        f"op {SOURCE_D} (#0, source): the last op must be the terminal op",
    ),
}
