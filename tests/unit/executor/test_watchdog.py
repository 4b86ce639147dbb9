"""The watchdog (executor._watchdog, executor._reaper): when a process that announced
containers dies, however it dies, their runtimes' children are killed; nothing else is.

No root needed: a "runtime" here is ``sh -c 'sleep … & wait' run ID`` (argv ends with
the id after a ``run``, as ``crun … run … ID`` does) and its ``sleep`` is the container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.executor._reaper import parse_lines, reap, runtime_of
from dockyard.testing.processes import wait_for

# the process whose death is watched: announces the ids it is given ("-ID": announced,
# started, then withdrawn) from a thread that ends at once, starts a fake runtime for
# each, prints the pids and waits for its stdin to close
PARENT = """
import json, os, subprocess, sys, threading
from dockyard.executor._watchdog import watchdog

runtimes = {}
keep = []

def start():
    for arg in sys.argv[1:]:
        cid = arg.lstrip("-")
        watchdog().watch(cid)
        proc = subprocess.Popen(
            ["sh", "-c", "sleep 1000 & wait", "run", cid],
            start_new_session=True,
        )
        keep.append(proc)
        if arg.startswith("-"):
            watchdog().unwatch(cid)
        runtimes[cid] = proc.pid

thread = threading.Thread(target=start)
thread.start()
thread.join()
print(json.dumps({"runtimes": runtimes, "watchdog": watchdog().pid}), flush=True)
sys.stdin.read()
"""


def _state(pid: int) -> str:
    """The process's state letter, '' once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2 :].split()[0]


def _gone(pid: int) -> bool:
    return _state(pid) in ("", "Z", "X")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
    return out


def _kill_tree(runtime: int) -> None:
    """Kill a fake runtime a test left running, and its children."""
    for pid in [*_children(runtime), runtime]:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def _wait(predicate: Callable[[], bool], seconds: float = 20) -> bool:
    return wait_for(predicate, seconds, every=0.02)


def _containers(runtime: int) -> list[int]:
    """The runtime's child, once its fork exec'd sleep."""
    found: list[int] = []

    def started() -> bool:
        found[:] = [
            c for c in _children(runtime) if Path(f"/proc/{c}/cmdline").read_bytes()[:5] == b"sleep"
        ]
        return bool(found)

    assert _wait(started), "the fake runtime did not start its container"
    return found


class Parent:
    def __init__(self, *ids: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PARENT, *ids],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        report = json.loads(self.proc.stdout.readline())
        self.runtimes: dict[str, int] = report["runtimes"]
        self.watchdog: int = report["watchdog"]
        self.containers = {cid: _containers(pid) for cid, pid in self.runtimes.items()}

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def exit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait() == 0

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        for runtime in self.runtimes.values():
            _kill_tree(runtime)


@pytest.fixture
def parents() -> Iterator[Callable[..., Parent]]:
    made: list[Parent] = []

    def make(*ids: str) -> Parent:
        made.append(Parent(*ids))
        return made[-1]

    yield make
    for parent in made:
        parent.cleanup()


def _id() -> str:
    return "dy-test-" + uuid.uuid4().hex[:16]


def test_a_sigkilled_parent_takes_its_containers_with_it(
    parents: Callable[..., Parent],
) -> None:
    a, b = _id(), _id()
    parent = parents(a, b)
    assert parent.watchdog is not None
    # the watchdog was started from a thread that has ended: it still watches
    time.sleep(0.2)
    assert not _gone(parent.watchdog)
    assert all(not _gone(c) for cs in parent.containers.values() for c in cs)
    parent.kill()
    pids = [*parent.runtimes.values(), *(c for cs in parent.containers.values() for c in cs)]
    assert _wait(lambda: all(_gone(p) for p in pids)), "a container outlived its parent"
    assert _wait(lambda: _gone(parent.watchdog)), "the watchdog stayed"


def test_only_announced_containers_are_killed(parents: Callable[..., Parent]) -> None:
    watched, withdrawn = _id(), _id()
    stranger = subprocess.Popen(
        ["sh", "-c", "sleep 1000 & wait", "run", _id()], start_new_session=True
    )
    try:
        strangers = _containers(stranger.pid)
        parent = parents(watched, "-" + withdrawn)
        parent.kill()
        assert _wait(lambda: all(_gone(c) for c in parent.containers[watched]))
        assert _wait(lambda: _gone(parent.watchdog)), "the watchdog stayed"
        assert not any(_gone(c) for c in parent.containers[withdrawn])
        assert not any(_gone(c) for c in strangers)
    finally:
        _kill_tree(stranger.pid)
        stranger.wait()


def test_a_parent_that_ends_with_nothing_running_kills_nothing(
    parents: Callable[..., Parent],
) -> None:
    withdrawn = _id()
    parent = parents("-" + withdrawn)
    parent.exit()
    assert _wait(lambda: _gone(parent.watchdog)), "the watchdog stayed"
    assert not any(_gone(c) for c in parent.containers[withdrawn])


def test_a_forked_child_has_a_watchdog_of_its_own(tmp_path: Path) -> None:
    """The parent's watchdog watches the parent: a forked child that runs containers
    starts its own (the parent's socket is not inherited into its watch)."""
    cid = _id()
    script = f"""
import os, subprocess, sys, time
from dockyard.executor._watchdog import watchdog
watchdog().watch("dy-test-unused")
first = watchdog().pid
pid = os.fork()
if pid == 0:
    watchdog().watch({cid!r})
    proc = subprocess.Popen(["sh", "-c", "sleep 1000 & wait", "run", {cid!r}],
                            start_new_session=True)
    print(first, watchdog().pid, proc.pid, os.getpid(), flush=True)
    sys.stdin.read()
    os._exit(0)
os.waitpid(pid, 0)
sys.stdin.read()
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    first, second, runtime, child = map(int, proc.stdout.readline().split())
    containers = _containers(runtime)
    try:
        assert first != second
        os.kill(child, signal.SIGKILL)
        assert _wait(lambda: all(_gone(c) for c in containers)), "the container outlived it"
        assert _wait(lambda: _gone(second)), "the child's watchdog stayed"
        assert not _gone(first)  # the parent is alive
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()
        _kill_tree(runtime)
    assert _wait(lambda: _gone(first)), "the parent's watchdog stayed"


def test_parse_lines() -> None:
    ids: set[bytes] = set()
    rest = parse_lines(b"+dy-a\n+dy-b\n-dy-a\n+bad id\n+\n?dy-c\n+dy-", ids)
    assert ids == {b"dy-b"}
    assert rest == b"+dy-"
    assert parse_lines(rest + b"d\n", ids) == b""
    assert ids == {b"dy-b", b"dy-d"}


def test_runtime_of() -> None:
    ids = {b"dy-1"}
    crun = [b"/usr/bin/crun", b"--root", b"/s", b"run", b"--bundle", b"/b", b"dy-1"]
    assert runtime_of(crun, ids) == b"dy-1"
    assert runtime_of([b"unshare", b"--mount", *crun], ids) == b"dy-1"
    assert runtime_of([b"crun", b"--root", b"/s", b"delete", b"--force", b"dy-1"], ids) is None
    assert runtime_of([b"crun", b"--root", b"/s", b"kill", b"dy-1", b"KILL"], ids) is None
    assert runtime_of([b"crun", b"run", b"dy-2"], ids) is None
    assert runtime_of([b"dy-1"], ids) is None


def test_reap_with_nothing_running_returns() -> None:
    assert reap({b"dy-test-" + uuid.uuid4().hex.encode()}, tick=0.001) == 0
