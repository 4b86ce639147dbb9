"""Spares: the next container's device cgroup entered ahead of time.

A process entering a cgroup (writing its pid to ``cgroup.procs``) waits for an RCU
grace period: the kernel takes ``cgroup_threadgroup_rwsem`` for writing. On a 2-core VM
that is 5-12 ms, as long as crun itself takes to run a container, and it would be paid
by every step started through :func:`~dockyard.executor._devices.join_argv`. A spare
is a ``sh`` that makes that wait while the step before runs: made in a thread as soon
as a runtime has started, it enters a fresh cgroup with the sandbox's device rules and
blocks reading its standard input; the next sandboxed step (no CDI device, not
interactive) takes it, writes its bundle's path, and the spare sources the bundle's
``run.sh``, which execs the runtime — born in the cgroup, no wait.

At most one spare per executor. A spare belongs to the process that made it (a forked
child makes its own). One that is not used ends at end of file on its standard input
— :meth:`Spares.close`, the executor being collected, or this process exiting,
however — leaving its cgroup and removing it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from ._devices import DEFAULT_RULES, DENY_ALL, DeviceCgroups, DeviceMode, spare_argv
from ._runtime import Runtime

__all__ = ["SANDBOX_RULES", "Spare", "Spares"]

_log = logging.getLogger("dockyard.executor")

SANDBOX_RULES = (DENY_ALL, *DEFAULT_RULES)
"""The device rules of a spare's cgroup: a sandboxed step's without CDI devices."""

_EXIT_TIMEOUT = 2.0  # seconds for a spare to leave its cgroup once told to go


@dataclass(slots=True, kw_only=True)
class Spare:
    """A ``sh`` in the device cgroup ``cgroup`` made for container ``id``, waiting for
    the bundle (see :func:`~dockyard.executor._devices.spare_argv`); made by process
    ``owner``."""

    id: str
    cgroup: Path
    popen: subprocess.Popen[bytes]
    owner: int

    def start(self, bundle: Path) -> bool:
        """Hand the spare ``bundle``: it runs ``<bundle>/run.sh``. False when it is gone
        (then it is reaped, and its cgroup is still there). Blocking."""
        stdin = self.popen.stdin
        assert stdin is not None, "a spare starts once"
        try:
            stdin.write(os.fsencode(bundle) + b"\n")
            stdin.close()
        except OSError:
            with contextlib.suppress(OSError):
                stdin.close()
            self.popen.wait()
            return False
        finally:
            self.popen.stdin = None
        return True

    @property
    def started(self) -> bool:
        return self.popen.stdin is None


# spares told to go and not reaped yet (so that no Popen is collected while running)
_GOING: list[subprocess.Popen[bytes]] = []
_GOING_LOCK = threading.Lock()
_ALL: weakref.WeakSet[Spares] = weakref.WeakSet()


def _let_go(spare: Spare) -> None:
    """Tell an unused spare to go (end of file), without waiting for it."""
    popen = spare.popen
    for pipe in (popen.stdin, popen.stdout, popen.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    popen.stdin = None
    with _GOING_LOCK:
        _GOING[:] = [p for p in _GOING if p.poll() is None]
        if popen.poll() is None:
            _GOING.append(popen)


def _wait(popen: subprocess.Popen[bytes]) -> None:
    try:
        popen.wait(timeout=_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


_AT_EXIT_WAIT = 1.0  # seconds, for all spares together


@atexit.register
def _at_exit() -> None:
    # told to go, a spare leaves its cgroup (a grace period, ~10 ms) and removes it;
    # waited for briefly so that no running child is left to Popen's finalizer
    for spares in list(_ALL):
        spares.release()
    with _GOING_LOCK:
        going = [p for p in _GOING if p.poll() is None]
        _GOING.clear()
    deadline = time.monotonic() + _AT_EXIT_WAIT
    for popen in going:
        with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
            popen.wait(timeout=max(deadline - time.monotonic(), 0.001))


class Spares:
    """The spare of one executor (see the module docstring): made with ``runtime``'s
    way of starting processes, in ``devices``' cgroups, run by ``sh``."""

    def __init__(self, runtime: Runtime, devices: DeviceCgroups, sh: str) -> None:
        self._runtime = runtime
        self._devices = devices
        self._sh = sh
        self._spare: Spare | None = None
        self._coming = False
        self._closed = False  # released or closed: no more spares
        self._lock = threading.Lock()
        self._idle = threading.Event()  # no spare being made
        self._idle.set()
        _ALL.add(self)

    def take(self) -> Spare | None:
        """The spare, if one is ready (it is this caller's now). Does not block but to
        remove the cgroup of a spare found dead."""
        with self._lock:
            spare = self._spare
            if spare is None or spare.owner != os.getpid():
                return None
            self._spare = None
        if spare.popen.poll() is not None:  # (it failed, or was killed)
            self.discard(spare)  # (gone: no wait; its cgroup is empty)
            return None
        return spare

    def make_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start making a spare in a thread, unless one is there or coming, or the
        executor makes no device cgroups. Never raises; a failure is logged."""
        if self._devices.mode() not in (DeviceMode.CGROUP_V1, DeviceMode.CGROUP_V2):
            return
        with self._lock:
            ready = self._spare is not None and self._spare.owner == os.getpid()
            if self._coming or ready or self._closed:
                return
            self._coming = True
            self._idle.clear()
        try:
            loop.run_in_executor(None, self._make).add_done_callback(_log_failure)
        except RuntimeError:  # (the loop's executor is shut down)
            with self._lock:
                self._coming = False
                self._idle.set()

    def _make(self) -> None:
        try:
            container_id = "dy-" + secrets.token_hex(8)
            cgroup = self._devices.create(container_id, SANDBOX_RULES)
            if cgroup is None:
                return
            pipe = subprocess.PIPE
            try:
                popen = self._runtime.popen(
                    spare_argv(self._sh, cgroup), capture=True, stdio=(pipe, pipe, pipe)
                )
            except BaseException:
                self._devices.remove(cgroup)
                raise
            spare = Spare(id=container_id, cgroup=cgroup, popen=popen, owner=os.getpid())
            with self._lock:
                kept = self._spare is None and not self._closed
                if kept:
                    self._spare = spare
            if not kept:  # (closed meanwhile, or another one arrived first)
                self.discard(spare)
        finally:
            with self._lock:
                self._coming = False
                self._idle.set()

    def discard(self, spare: Spare) -> None:
        """End an unused spare and wait for it (it removes its cgroup; should it not
        have, this does). Blocking."""
        popen = spare.popen
        _let_go(spare)
        _wait(popen)
        self._devices.remove(spare.cgroup)

    def release(self) -> None:
        """Tell the ready spare (if any) to go, without waiting, and make no more (one
        being made goes as soon as it is). Non-blocking."""
        with self._lock:
            spare, self._spare = self._spare, None
            self._closed = True
        if spare is not None and spare.owner == os.getpid():
            _let_go(spare)

    def close(self) -> None:
        """End the ready spare (if any, or the one being made) and wait for it; make no
        more. Blocking."""
        with self._lock:
            spare, self._spare = self._spare, None
            self._closed = True
        if spare is not None and spare.owner == os.getpid():
            self.discard(spare)
        self._idle.wait(_EXIT_TIMEOUT)


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        _log.warning("making a spare for the next container: %s", exc)
