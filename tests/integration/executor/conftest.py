from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.executor import OciExecutor
from tests.integration.conftest import need_tools


def _leftovers(state: Path) -> list[str]:
    out: list[str] = []
    for sub in ("bundles", "runtime/crun", "runtime/runc"):
        d = state / sub
        if d.is_dir():
            out += [str(p) for p in d.iterdir()]
    return out


@pytest.fixture(params=["crun"])
def runtime(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    need_tools(name)
    return name


@pytest.fixture
def executor(runtime: str, tmp_path: Path, mountinfo_unchanged: None) -> Iterator[OciExecutor]:
    """An executor with its own state dir; afterwards no bundle, runtime state or mount
    of the test may be left."""
    state = tmp_path / "state"
    yield OciExecutor(state, runtime=runtime)
    assert _leftovers(state) == []
