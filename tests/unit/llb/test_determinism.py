"""The same graph gives the same bytes and digests in any process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import graphs

ROOT = Path(__file__).resolve().parents[3]

_SCRIPT = """
import json
from tests.unit.llb import graphs
definition = graphs.kitchen_sink().marshal(platform=graphs.PLATFORM)
print(json.dumps({"ops": [op.digest for op in definition], "definition": definition.digest}))
"""


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_digests_equal_across_processes(hash_seed: str) -> None:
    # Different hash seeds change set and dict-of-set iteration orders between processes.
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    theirs = json.loads(out.stdout)
    definition = graphs.kitchen_sink().marshal(platform=graphs.PLATFORM)
    assert theirs["ops"] == [op.digest for op in definition]
    assert theirs["definition"] == definition.digest


def test_same_graph_built_twice_is_identical() -> None:
    first = graphs.kitchen_sink().marshal(platform=graphs.PLATFORM)
    second = graphs.kitchen_sink().marshal(platform=graphs.PLATFORM)
    assert first.to_bytes() == second.to_bytes()


def test_marshal_round_trip_is_stable() -> None:
    from dockyard import llb

    definition = graphs.kitchen_sink().marshal(platform=graphs.PLATFORM)
    loaded = llb.Definition.load(definition.to_bytes())
    assert loaded.to_bytes() == definition.to_bytes()
    rebuilt = llb.Definition.from_pb(loaded.to_pb())
    assert rebuilt.to_bytes() == definition.to_bytes()


def test_importing_llb_does_not_load_protobuf() -> None:
    code = (
        "import sys; import dockyard.llb; "
        "print(sorted(m for m in sys.modules if m.startswith(('google', 'dockyard.api.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
