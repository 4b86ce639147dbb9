"""Golden dumps: ``Definition.dump_json()`` of fixed graphs, under ``tests/data/llb/``.

A change to serialization shows up here as a diff of op JSON and digests. After an
intended change, regenerate with ``DOCKYARD_UPDATE_GOLDEN=1 pytest tests/unit/llb``
and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import Platform
from dockyard.frontend import load_build_file

from . import graphs, test_wire

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "llb"


def _hello() -> llb.Definition:
    target = Platform.parse(graphs.PLATFORM)
    state = load_build_file(ROOT / "examples" / "hello.py", platform=target)
    return state.marshal(platform=target)


CASES: dict[str, Callable[[], llb.Definition]] = {
    "hello": _hello,
    "kitchen_sink": lambda: graphs.kitchen_sink().marshal(platform=graphs.PLATFORM),
    "wire": lambda: llb.Definition.load(test_wire.DEFINITION),
    "scratch": lambda: llb.scratch().marshal(),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_dump(name: str) -> None:
    dump = CASES[name]().dump_json()
    path = DATA / f"{name}.jsonl"
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN"):
        path.write_text(dump)
    assert path.exists(), f"missing {path}; run with DOCKYARD_UPDATE_GOLDEN=1"
    assert dump == path.read_text()


def test_golden_digests_are_the_op_digests() -> None:
    definition = graphs.kitchen_sink().marshal(platform=graphs.PLATFORM)
    lines = (DATA / "kitchen_sink.jsonl").read_text().splitlines()
    assert [op.digest for op in definition] == [line.split('"', 4)[3] for line in lines]
