"""One engine per state directory: ``<state>/locks/engine.lock``.

The lock is an ``flock`` held for the engine's life (the kernel drops it when the process
dies, so a crash never leaves the directory locked). The holder writes who it is into
the file, so that a second engine can say which process to wait for or stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from dockyard.core import DockyardError

__all__ = ["StateDirInUseError", "StateLock"]


class StateDirInUseError(DockyardError):
    """The state directory is held by another engine process."""


class StateLock:
    """An exclusive lock on a state directory, taken by :meth:`acquire`."""

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path, *, purpose: str = "") -> StateLock:
        """Take the lock or raise :class:`StateDirInUseError` naming the holder."""
        locks = state_dir / "locks"
        try:
            locks.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(locks / "engine.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DockyardError(
                f"cannot use state directory {state_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = f" ({holder})" if holder else ""
            raise StateDirInUseError(
                f"state directory {state_dir} is in use by another Dockyard engine{who}; "
                "wait for it to finish, or use another --state-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise DockyardError(f"cannot lock state directory {state_dir}: {exc.strerror}") from exc
        _write_holder(fd, purpose)
        return cls(state_dir, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock


def _write_holder(fd: int, purpose: str) -> None:
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    text = f"pid {os.getpid()}"
    if purpose or command:
        text += f": {purpose or command}"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text[:500].encode("utf-8", "replace") + b"\n", 0)


def _read_holder(fd: int) -> str:
    try:
        data = os.pread(fd, 512, 0)
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip().splitlines()[0] if data.strip() else ""
