"""Finding and waiting for processes in tests (a RUN step's container, a leftover
runtime): by command line in ``/proc``, polled until a deadline."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["processes_with", "wait_for"]


def processes_with(token: str) -> list[int]:
    """Pids of the processes (other than this one) whose command line contains
    ``token``."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry))
    return found


def wait_for(predicate: Callable[[], bool], seconds: float, *, every: float = 0.05) -> bool:
    """Whether ``predicate`` held within ``seconds`` (polled every ``every`` seconds; the
    deadline only guards against a hang)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
