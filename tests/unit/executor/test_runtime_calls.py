"""The runtime's ``kill`` and ``delete`` have a time limit: a runtime that hangs (on a
frozen cgroup, a stale lock) is killed with everything it started, reaped, and named in
the error. The runtime here is a shell script standing in for runc."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from dockyard.core import ExecError
from dockyard.executor import OciExecutor
from dockyard.executor._runtime import Runtime, RuntimeKind
from dockyard.testing.processes import processes_with, wait_for

# a runtime whose `kill` and `delete` never end: they wait for a child shell (which
# holds the stderr pipe, as a stuck helper of a runtime would; its name carries the
# script's); other commands exit with the status in the file `status` beside the script
FAKE_RUNTIME = """#!/bin/sh
for arg in "$@"; do
    case "$arg" in
        kill|delete)
            sh -c 'while :; do sleep 1; done' "$0-helper" &
            wait
            exit 0 ;;
    esac
done
exit "$(cat "$(dirname "$0")/status")"
"""
GONE = 30  # seconds: only guards against a hang; never a measurement


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / ("fake-runc-" + uuid.uuid4().hex)
    path.write_text(FAKE_RUNTIME)
    path.chmod(0o755)
    (tmp_path / "status").write_text("0")
    return path


def _runtime(fake: Path, tmp_path: Path) -> Runtime:
    return Runtime(kind=RuntimeKind.RUNC, binary=str(fake), state_dir=tmp_path / "state")


def _gone(fake: Path) -> bool:
    return wait_for(lambda: not processes_with(fake.name), GONE)


def test_a_hung_kill_is_killed_with_everything_it_started(fake: Path, tmp_path: Path) -> None:
    rt = _runtime(fake, tmp_path)
    with pytest.raises(ExecError, match=r"runc kill dy-hung KILL did not finish within 0\.3 s"):
        rt.kill("dy-hung", timeout=0.3)
    assert _gone(fake), "the hung runtime (or what it started) is still running"


def test_the_kill_limit_is_the_runtimes_own_by_default(fake: Path, tmp_path: Path) -> None:
    rt = _runtime(fake, tmp_path)
    rt.kill_timeout = 0.2
    with pytest.raises(ExecError, match=r"within 0\.2 s"):
        rt.kill("dy-hung")
    assert _gone(fake)


def test_a_hung_delete_is_killed_and_the_state_removed(fake: Path, tmp_path: Path) -> None:
    rt = _runtime(fake, tmp_path)
    rt.delete_timeout = 0.3
    (rt.state_dir / "dy-hung").mkdir(parents=True)
    with pytest.raises(ExecError, match=r"runc delete --force dy-hung did not finish"):
        rt.delete("dy-hung")
    assert not rt.has_state("dy-hung")
    assert _gone(fake)


def test_runtime_calls_that_finish_report_as_before(fake: Path, tmp_path: Path) -> None:
    # (`status` holds the exit status of commands other than kill and delete)
    rt = _runtime(fake, tmp_path)
    (tmp_path / "status").write_text("1")
    assert rt._call("state", "dy-x", timeout=30) == (1, "")
    (tmp_path / "status").write_text("0")
    assert rt._call("state", "dy-x", timeout=30) == (0, "")


def test_reap_stale_goes_on_past_a_hung_delete(
    fake: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    executor = OciExecutor(tmp_path / "executor", runtime="runc", binary=str(fake))
    executor.runtime.delete_timeout = 0.3
    for name in ("dy-stale1", "dy-stale2"):
        (executor.runtime.state_dir / name).mkdir()
    with caplog.at_level(logging.WARNING, logger="dockyard.executor"):
        assert executor.reap_stale() == 0
    assert list(executor.runtime.state_dir.iterdir()) == []
    warnings = sorted(r.getMessage() for r in caplog.records if r.name == "dockyard.executor")
    assert len(warnings) == 2
    assert "removing stale container dy-stale1: runc delete --force dy-stale1" in warnings[0]
    assert _gone(fake)
