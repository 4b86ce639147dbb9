"""Cancelling a run ends even when the runtime's ``kill`` hangs or cannot be started:
the container's init and the runtime are killed directly (the existing escalation), the
failure is logged, and nothing is left behind (no process, mount, bundle or state)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from dockyard.core import ExecError
from dockyard.executor import OciExecutor, ProcessSpec
from dockyard.executor._runtime import Runtime
from dockyard.testing.processes import processes_with, wait_for
from tests.integration.conftest import Overlay, need_tools

TIMEOUT = 60  # only guards against a hang; never a measurement

# crun, except that `kill` and `delete` never end (as on a frozen cgroup or a stale
# lock): they wait for a child shell that holds the stderr pipe (its name carries the
# script's)
HUNG_KILL = """#!/bin/sh
for arg in "$@"; do
    case "$arg" in
        run) break ;;
        kill|delete)
            sh -c 'while :; do sleep 1; done' "$0-helper" &
            wait
            exit 0 ;;
    esac
done
exec {crun} "$@"
"""


def _left_behind(state: Path) -> list[str]:
    return [str(p) for sub in ("bundles", "runtime/crun") for p in sorted((state / sub).iterdir())]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dockyard.executor"]


async def _start(executor: OciExecutor, root: Overlay, token: str) -> asyncio.Task[int]:
    started = asyncio.Event()

    def sink(stream: int, data: bytes) -> None:
        if b"started" in data:
            started.set()

    task = asyncio.create_task(
        executor.run(
            root=root.mounts,
            process=ProcessSpec(args=("/bin/sh", "-c", "echo started; sleep 100000", token)),
            output=sink,
        )
    )
    waiting = asyncio.ensure_future(started.wait())
    await asyncio.wait([waiting, task], timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    assert started.is_set(), "the container never started"
    return task


async def test_cancel_ends_when_the_runtime_kill_hangs(
    busybox_overlay: Overlay,
    tmp_path: Path,
    mountinfo_unchanged: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    crun = need_tools("crun")["crun"]
    fake = tmp_path / ("hung-crun-" + uuid.uuid4().hex)
    fake.write_text(HUNG_KILL.format(crun=crun))
    fake.chmod(0o755)
    state = tmp_path / "state"
    executor = OciExecutor(state, runtime="crun", binary=str(fake))
    executor.runtime.delete_timeout = 0.5  # (a runtime killed midway may leave its state)
    token = "dockyard-test-" + uuid.uuid4().hex
    task = await _start(executor, busybox_overlay, token)
    task.cancel()
    try:
        with caplog.at_level(logging.WARNING, logger="dockyard.executor"):
            done, _ = await asyncio.wait([task], timeout=TIMEOUT)
        assert task in done, "cancelling hung on the runtime's kill"
    finally:
        # (unstick hung calls, should there be any, so that the test can end)
        while not task.done():
            for pid in processes_with(fake.name):
                os.kill(pid, signal.SIGKILL)
            await asyncio.wait([task], timeout=0.5)
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert processes_with(token) == [], "the container outlived the cancellation"
    assert wait_for(lambda: not processes_with(fake.name), TIMEOUT), "the hung kill lives on"
    [warning] = _warnings(caplog)
    assert "killing container dy-" in warning
    assert "crun kill dy-" in warning
    assert "did not finish within" in warning
    assert "its init process and crun were killed directly instead" in warning
    assert _left_behind(state) == []


async def test_cancel_ends_when_the_runtime_kill_raises(
    executor: OciExecutor,
    busybox_overlay: Overlay,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[str] = []

    def kill(self: Runtime, container_id: str, signal: str = "KILL", **kw: object) -> bool:
        # what Runtime.popen raises when the fork fails (EAGAIN, ENOMEM)
        asked.append(container_id)
        raise ExecError(
            f"cannot start crun ({shutil.which('crun')}): Resource temporarily unavailable"
        )

    token = "dockyard-test-" + uuid.uuid4().hex
    task = await _start(executor, busybox_overlay, token)
    monkeypatch.setattr(Runtime, "kill", kill)
    task.cancel()
    with caplog.at_level(logging.WARNING, logger="dockyard.executor"):
        done, _ = await asyncio.wait([task], timeout=TIMEOUT)
    assert task in done
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert asked, "the runtime's kill was never called"
    assert processes_with(token) == [], "the container outlived the cancellation"
    [warning] = _warnings(caplog)
    assert warning.startswith(f"killing container {asked[0]}: cannot start crun")
    assert "Resource temporarily unavailable" in warning
    # every failed call's exception was retrieved: nothing for asyncio to report when the
    # futures are freed (tests/conftest.py fails the test if it does)
    del task
    gc.collect()
