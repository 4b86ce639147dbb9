"""Engine configuration, the state-directory lock, and build request values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import UsageError
from dockyard.engine import (
    BuildRequest,
    EngineConfig,
    StateDirInUseError,
    default_state_dir,
)
from dockyard.engine._lock import StateLock
from dockyard.exporter import parse_output
from dockyard.llbsolver import Entitlement


def test_default_state_dir() -> None:
    assert default_state_dir({"DOCKYARD_STATE_DIR": "/x/y"}, uid=0) == Path("/x/y")
    assert default_state_dir({}, uid=0) == Path("/var/lib/dockyard")
    assert default_state_dir({"XDG_DATA_HOME": "/d"}, uid=1000) == Path("/d/dockyard")
    assert default_state_dir({"HOME": "/home/u"}, uid=1000) == Path("/home/u/.local/share/dockyard")


def test_config_checks_its_values(tmp_path: Path) -> None:
    config = EngineConfig(
        state_dir=tmp_path / "s", entitlements=frozenset({Entitlement.NETWORK_HOST})
    )
    assert config.state_dir.is_absolute()
    assert config.entitlements == frozenset({Entitlement.NETWORK_HOST})
    with pytest.raises(UsageError, match="unknown OCI runtime 'kata'"):
        EngineConfig(state_dir=tmp_path, runtime="kata")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown snapshotter"):
        EngineConfig(state_dir=tmp_path, snapshotter="zfs")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at least 1"):
        EngineConfig(state_dir=tmp_path, max_parallelism=0)
    assert EngineConfig.parse_entitlements(["security.insecure"]) == {Entitlement.SECURITY_INSECURE}
    with pytest.raises(UsageError, match="unknown entitlement"):
        EngineConfig.parse_entitlements(["network.bridge"])


def test_request_needs_exactly_one_of_definition_and_frontend() -> None:
    definition = llb.scratch().marshal()
    with pytest.raises(UsageError):
        BuildRequest()
    with pytest.raises(UsageError):
        BuildRequest(definition=definition, frontend="python")
    local = parse_output("type=local,dest=out")
    request = BuildRequest(definition=definition, exports=[local])  # type: ignore[arg-type]
    assert request.exports == (local,)


def test_state_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    lock = StateLock.acquire(tmp_path, purpose="test holder")
    try:
        with pytest.raises(StateDirInUseError) as info:
            StateLock.acquire(tmp_path)
        assert f"pid {os.getpid()}: test holder" in str(info.value)
        assert str(tmp_path) in str(info.value)
    finally:
        lock.release()
    lock.release()  # idempotent
    StateLock.acquire(tmp_path).release()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from dockyard.engine._lock import StateLock\n"
        "lock = StateLock.acquire(Path(sys.argv[1]), purpose='dockyard build .')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirInUseError, match=rf"pid {proc.pid}: dockyard build \."):
            StateLock.acquire(tmp_path)
        proc.stdin.close()
    # the holder exited: the kernel dropped its lock
    StateLock.acquire(tmp_path).release()
