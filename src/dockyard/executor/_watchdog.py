"""This process's watchdog: the containers it runs die with it, even after SIGKILL.

Cancelling (SIGINT, SIGTERM) kills a container through the runtime; a SIGKILLed process
cannot. ``crun run`` and ``runc run`` keep their container running when they lose their
parent, and even when they are killed themselves (tried on this host: crun 1.8.1, runc
1.1.5), so neither ``PR_SET_PDEATHSIG`` on the runtime nor the runtime's own signal
handling help; a runtime put in a pid namespace of its own (whose death would end
everything in it) writes pids of that namespace into its state, which ``kill`` and
``delete`` then read as host pids. Instead, the first run of a process starts a small
watchdog process (:mod:`dockyard.executor._reaper`, in a session of its own) and tells it
through a socket which containers are running; when this process ends, however it ends
(the watchdog holds a pidfd of the process, not of a thread), the watchdog kills the
inits of those still running, and their pid namespaces die with them.

Per run this costs two writes to the socket; the watchdog is started once per process
(~1 ms here, its ~10 ms of start-up in the background). A forked child starts its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["Watchdog", "watchdog"]

_REAPER = Path(__file__).with_name("_reaper.py")


class _Detached(subprocess.Popen[bytes]):
    """The watchdog outlives its ``Popen`` by design (no "still running" warning)."""

    def __del__(self) -> None:
        return None


class Watchdog:
    """Announces the containers this process runs to its watchdog process.

    :meth:`watch` before the runtime is started for a container, :meth:`unwatch` once
    that runtime exited (both blocking, and never failing: without a watchdog the
    leftovers are still reaped at the next start). Thread-safe.
    """

    def __init__(self, *, python: str | None = None) -> None:
        self._python = python if python is not None else sys.executable
        self._lock = threading.Lock()
        self._proc: _Detached | None = None
        self._channel: socket.socket | None = None
        self._owner = 0  # the process whose watchdog it is
        self._watched: set[str] = set()

    @property
    def pid(self) -> int | None:
        """The watchdog process of this process, if it started one."""
        with self._lock:
            if self._proc is None or self._owner != os.getpid():
                return None
            return self._proc.pid

    def watch(self, container_id: str) -> None:
        with self._lock:
            self._watched.add(container_id)
            self._send(f"+{container_id}\n")

    def unwatch(self, container_id: str) -> None:
        with self._lock:
            if container_id in self._watched:
                self._watched.discard(container_id)
                self._send(f"-{container_id}\n")

    def forget(self) -> None:
        """In a forked child: let the parent's watchdog be (it watches the parent) and
        start anew (at the first :meth:`watch`)."""
        self._lock = threading.Lock()
        if self._channel is not None:
            self._channel.close()
        self._channel, self._proc, self._owner = None, None, 0
        self._watched.clear()

    def _send(self, line: str) -> None:
        for _ in range(2):
            if self._channel is None and not self._start():
                return
            assert self._channel is not None
            try:
                # MSG_NOSIGNAL: a watchdog that died must not take us with it (SIGPIPE)
                self._channel.sendall(line.encode(), socket.MSG_NOSIGNAL)
                return
            except OSError:
                # the watchdog died (it should not): start another, tell it everything
                self._stop()
                line = "".join(f"+{c}\n" for c in sorted(self._watched))
                if not line:
                    return

    def _start(self) -> bool:
        if not self._python:
            return False
        ours, theirs = socket.socketpair()  # both close-on-exec; its stdin is a dup
        try:
            self._proc = _Detached(
                [self._python, "-I", "-S", str(_REAPER), str(os.getpid())],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",  # holds no directory (or its file system) of ours
                start_new_session=True,  # a signal to our process group is not for it
            )
        except OSError:
            ours.close()
            return False
        finally:
            theirs.close()
        self._channel, self._owner = ours, os.getpid()
        return True

    def _stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.poll()  # reap it if it is gone
            self._proc = None


_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """This process's watchdog (started on the first :meth:`Watchdog.watch`)."""
    return _WATCHDOG


os.register_at_fork(after_in_child=_WATCHDOG.forget)
