"""A definition's size is bounded while it is serialized: a small build description
can make every op carry a large value (one 1 MiB variable of a Dockerfile's ENV in
each of a thousand RUN steps: 1.4 KB of Dockerfile, a gigabyte of ops), and the
serialization held every op's bytes twice before anything looked at the total."""

from __future__ import annotations

import time

import pytest

from dockyard import llb
from dockyard.core import InvalidDefinitionError
from dockyard.llb import _marshal

AMD64 = "linux/amd64"


def test_a_definition_past_the_message_limit_is_refused_while_it_is_serialized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_marshal, "MAX_DEFINITION_BYTES", 8 << 20)
    state = llb.scratch().with_envs({"A": "a" * (1 << 20)})
    for i in range(100):
        state = state.run(["true", str(i)]).root
    started = time.perf_counter()
    with pytest.raises(InvalidDefinitionError, match="larger than 8 MiB"):
        state.marshal(platform=AMD64)
    assert time.perf_counter() - started < 2.0
    # what stays below the limit serializes as before
    small = llb.scratch().with_envs({"A": "a" * (1 << 20)}).run(["true"]).root
    assert len(list(small.marshal(platform=AMD64))) == 2


def test_the_limit_is_the_daemons_message_limit() -> None:
    from dockyard.daemon._server import MAX_MESSAGE_BYTES

    assert _marshal.MAX_DEFINITION_BYTES == MAX_MESSAGE_BYTES
