"""A process's resource limits (``--ulimit``) and cgroup parent in the OCI spec, and the
``/dev/shm`` a caller's mount replaces."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.core import UsageError
from dockyard.executor import ProcessSpec, Rlimit
from dockyard.executor._spec import SpecMount

from .test_spec import spec as _spec


def spec(process: ProcessSpec, **kw: Any) -> dict[str, Any]:
    """test_spec's spec with the engine's default nofile of 4096."""
    return _spec(process, **{"nofile": 4096, **kw})


def test_rlimits_are_set_as_given_and_replace_the_default_nofile() -> None:
    limits = (
        Rlimit(name="nofile", soft=1024, hard=2048),
        Rlimit(name="core", soft=-1, hard=-1),
    )
    s = spec(ProcessSpec(args=("x",), rlimits=limits))
    assert s["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
        {"type": "RLIMIT_CORE", "hard": 2**64 - 1, "soft": 2**64 - 1},  # unlimited
    ]


def test_other_rlimits_keep_the_default_nofile() -> None:
    s = spec(ProcessSpec(args=("x",), rlimits=(Rlimit(name="nproc", soft=10, hard=20),)))
    assert s["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096},
        {"type": "RLIMIT_NPROC", "hard": 20, "soft": 10},
    ]
    inherit = spec(
        ProcessSpec(args=("x",), rlimits=(Rlimit(name="stack", soft=1, hard=2),)), nofile=None
    )
    assert inherit["process"]["rlimits"] == [{"type": "RLIMIT_STACK", "hard": 2, "soft": 1}]


@pytest.mark.parametrize(
    ("name", "soft", "hard"),
    [("files", 1, 1), ("nofile", 3, 2), ("nofile", -2, 5), ("nofile", -1, 5)],
)
def test_bad_rlimits(name: str, soft: int, hard: int) -> None:
    with pytest.raises(UsageError):
        Rlimit(name=name, soft=soft, hard=hard)


def test_a_mount_at_dev_shm_replaces_the_default_one() -> None:
    shm = SpecMount(dest="/dev/shm", type="tmpfs", source="tmpfs", options=("size=134217728",))
    s = spec(ProcessSpec(args=("x",)), mounts=[shm])
    at_shm = [m for m in s["mounts"] if m["destination"] == "/dev/shm"]
    assert at_shm == [shm.to_json()]


@pytest.mark.parametrize("parent", ["a b", "/x/../y"])
def test_bad_cgroup_parents(parent: str) -> None:
    with pytest.raises(UsageError, match="cgroup parent"):
        ProcessSpec(args=("x",), cgroup_parent=parent)
