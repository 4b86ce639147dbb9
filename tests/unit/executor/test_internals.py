from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from dockyard.executor._child import Child, in_thread, settle
from dockyard.executor._oci import _missing_paths, _remove_stubs


def test_missing_paths_records_shallowest_first(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").write_text("x")
    os.symlink("/elsewhere", tmp_path / "link")
    stubs = _missing_paths(
        tmp_path, ["/", "/etc/hosts", "/etc/resolv.conf", "/a/b/c", "/a/b/d", "/link/x"]
    )
    assert stubs.paths == ["etc/resolv.conf", "a", "a/b", "a/b/c", "a/b/d"]
    assert set(stubs.parent_times) == {"etc", "."}


def test_remove_stubs_only_removes_empty_ones(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    before = (tmp_path / "etc").stat().st_mtime_ns
    stubs = _missing_paths(tmp_path, ["/etc/hosts", "/a/b", "/keep/dir", "/data"])
    # what a runtime would make, and what a process then put there
    (tmp_path / "etc" / "hosts").touch()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "keep" / "dir").mkdir(parents=True)
    (tmp_path / "keep" / "dir" / "file").write_text("made by the process")
    (tmp_path / "data").write_text("not empty")
    os.utime(tmp_path / "etc", ns=(before + 10**9, before + 10**9))
    _remove_stubs(tmp_path, stubs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "etc", "keep"]
    assert list((tmp_path / "etc").iterdir()) == []
    assert (tmp_path / "keep" / "dir" / "file").exists()
    assert (tmp_path / "etc").stat().st_mtime_ns == before


def test_remove_stubs_never_leaves_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "x").mkdir(parents=True)
    stubs = _missing_paths(root, ["/d/x"])
    # the process replaced the stub's parent with a link out of the root
    os.symlink(str(outside), root / "d")
    _remove_stubs(root, stubs)
    assert (outside / "x").is_dir()


def _popen(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_child_streams_and_reports_status() -> None:
    chunks: list[tuple[int, bytes]] = []
    popen = await asyncio.to_thread(_popen, "echo out; echo err >&2; exit 7")
    child = Child(popen, lambda s, d: chunks.append((s, d)))
    assert await child.done == 7
    assert b"".join(d for s, d in chunks if s == 1) == b"out\n"
    assert b"".join(d for s, d in chunks if s == 2) == b"err\n"


async def test_child_kill_and_faulty_sink() -> None:
    def sink(stream: int, data: bytes) -> None:
        raise RuntimeError("sink broke")

    popen = await asyncio.to_thread(_popen, "echo hi; exec sleep 60")
    child = Child(popen, sink)
    await asyncio.sleep(0)
    child.kill()
    assert await asyncio.wait_for(child.done, 30) == -9


async def test_in_thread_finishes_work_despite_cancellation() -> None:
    import threading

    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def work() -> int:
        started.set()
        release.wait(30)
        finished.append(True)
        return 1

    task = asyncio.create_task(in_thread(work))
    await asyncio.to_thread(started.wait, 30)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]


async def test_settle_reports_cancellation() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()

    async def waiter() -> bool:
        return await settle(fut)

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    fut.set_result(3)
    assert await task is True
