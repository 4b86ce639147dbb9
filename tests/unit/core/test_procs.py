"""Stopping a child process even when the caller is cancelled while it waits."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path

import pytest

from dockyard.core.procs import stop_process
from dockyard.testing.processes import processes_with, wait_for


async def _start(script: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec("sh", "-c", script)


async def test_a_running_process_is_killed_and_reaped() -> None:
    proc = await _start("sleep 30")
    await stop_process(proc)
    assert proc.returncode == -signal.SIGKILL


async def test_an_exited_process_is_only_reaped() -> None:
    proc = await _start("exit 3")
    await proc.wait()
    await stop_process(proc)
    assert proc.returncode == 3


async def test_a_cancelled_stop_waits_for_the_exit_then_raises() -> None:
    """The process ignores SIGTERM for a while: cancelling the stop does not leave it
    unreaped (the old terminate-then-wait returned at once, with the process running)."""
    proc = await _start("trap '' TERM; sleep 0.5")
    await asyncio.sleep(0.2)  # the trap is set
    stopping = asyncio.ensure_future(stop_process(proc, signal.SIGTERM))
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert proc.returncode == 0  # it exited by itself, and was reaped


def test_a_stop_cancelled_again_by_asyncio_run_still_reaps_the_process() -> None:
    """``asyncio.run`` ends while the stop waits (the process ignores SIGTERM for a
    while): it cancels every task, the stop's and any it waits on, then closes the loop.
    The stop still ends with the process reaped (it used to wait on a task of its own,
    which that cancelled too: it gave up, and the exit went to a closed loop)."""
    procs: list[asyncio.subprocess.Process] = []

    async def main() -> None:
        proc = await _start("trap '' TERM; sleep 0.5")
        procs.append(proc)
        await asyncio.sleep(0.2)  # the trap is set
        stopping = asyncio.ensure_future(stop_process(proc, signal.SIGTERM))
        await asyncio.sleep(0.05)
        stopping.cancel()
        # left waiting: asyncio.run cancels it again, and everything else

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert procs[0].returncode == 0  # it exited by itself, and was reaped
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def _holder(token: str) -> str:
    """A script that starts a process holding its stdout and stderr (until killed by
    :func:`_end_holders`), says so, and sleeps."""
    holder = shlex.join([sys.executable, "-c", "import time; time.sleep(600)", token])
    return f"{holder} & echo started; exec sleep 600"


def _end_holders(token: str) -> None:
    for pid in processes_with(token):
        os.kill(pid, signal.SIGKILL)


async def _stop_or_hang(stopping: asyncio.Future[None], token: str) -> bool:
    """Whether ``stopping`` ended by itself (within a bound against a hang: after it, the
    holder is killed so that the test ends)."""
    done, _ = await asyncio.wait([stopping], timeout=20)
    if not done:
        _end_holders(token)
        await asyncio.wait([stopping])
    return bool(done)


async def test_a_process_whose_child_holds_its_pipes_is_stopped_without_waiting_for_it() -> None:
    """The stopped process started one that keeps its stdout and stderr open: the stop
    ends with the process, its pipes closed (a wait for the process used to wait for the
    end of its pipes too: as long as that other process lived)."""
    token = f"dockyard-holder-{os.getpid()}-{id(object())}"
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", _holder(token), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"started\n"
        assert await _stop_or_hang(asyncio.ensure_future(stop_process(proc)), token)
        assert proc.returncode == -signal.SIGKILL
        assert proc.stdout.at_eof()
    finally:
        _end_holders(token)


def test_a_twice_cancelled_stop_leaves_no_transport_open() -> None:
    """A stop cancelled, then cancelled again by ``asyncio.run`` as it ends, of a process
    whose child holds its pipes: ``asyncio.run`` ends with the process reaped and nothing
    of it left to the garbage collector ("unclosed transport" ResourceWarnings)."""
    token = f"dockyard-holder-{os.getpid()}-{id(object())}"
    procs: list[asyncio.subprocess.Process] = []

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            _holder(token),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"started\n"
        stopping = asyncio.ensure_future(stop_process(proc))
        await asyncio.sleep(0)  # it signalled the process and waits
        stopping.cancel()
        # left running: asyncio.run cancels it again, and waits for it

    hung: list[bool] = []

    def unhang() -> None:  # only against a hang: the holder ends, and with it the stop
        hung.append(True)
        _end_holders(token)

    guard = threading.Timer(20, unhang)
    guard.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(main())
            gc.collect()
    finally:
        guard.cancel()
        _end_holders(token)
    assert hung == []
    assert procs[0].returncode == -signal.SIGKILL
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def _ended(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (left to whoever adopted it to reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


async def test_a_group_stop_reaches_what_the_process_started(tmp_path: Path) -> None:
    """The leader exited already; a process it left behind in its group is stopped too."""
    token = f"dockyard-procs-group-{os.getpid()}-{id(tmp_path)}"
    started = tmp_path / "started"
    # the child names itself once it runs (its command line is empty while it execs: a
    # look for it right after the leader's exit found none, in 2-6 % of runs)
    announce = (
        "import os, sys, time\n"
        "with open(sys.argv[1] + '.tmp', 'w') as f:\n"
        "    f.write(str(os.getpid()))\n"
        "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "time.sleep(600)\n"
    )
    child = shlex.join([sys.executable, "-c", announce, str(started), token])
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", f"{child} >/dev/null 2>&1 & exit 0", start_new_session=True
    )
    try:
        await proc.wait()
        assert wait_for(started.exists, 30), "the leader's child never ran"
        pid = int(started.read_text())
        assert os.getpgid(pid) == proc.pid  # in the group of the leader, which is gone
        await stop_process(proc, group=True)
        # the signal is sent; its delivery is not awaited
        assert wait_for(lambda: _ended(pid), 30), "the leader's child outlived the stop"
        assert processes_with(token) == []
    finally:
        with contextlib.suppress(ProcessLookupError):  # what a failed stop left
            os.killpg(proc.pid, signal.SIGKILL)
