"""A ``dockyard`` command on a real pseudo-terminal, for the ``--invoke`` tests (embedded
and through a daemon): what it wrote, keys sent to it, its exit code, and whether its
terminal got its settings back."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

DOCKYARD = str(Path(sys.executable).parent / "dockyard")
ENV = {**os.environ, "DOCKYARD_WARM": "0", "NO_COLOR": "1"}
TIMEOUT = 120.0


@dataclass
class Session:
    """A command on a pty: what it wrote and its exit code."""

    output: str
    code: int


class PtyCommand:
    def __init__(self, argv: list[str], *, size: tuple[int, int] | None = None) -> None:
        self.master, self.slave = os.openpty()
        if size is not None:
            self.set_size(*size)
        self.saved = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=ENV,
            start_new_session=True,
        )
        self.data = b""

    def set_size(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read_until(self, marker: bytes, after: int = 0) -> bool:
        deadline = time.monotonic() + TIMEOUT
        while marker not in self.data[after:]:
            if time.monotonic() > deadline or not self._read(0.5):
                return marker in self.data[after:]
        return True

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            self.data += chunk
        elif self.proc.poll() is not None:
            return False
        return True

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> Session:
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        while self._read(0.2):
            pass
        os.close(self.slave)
        os.close(self.master)
        return Session(output=self.data.decode(errors="replace"), code=code)

    def finish_keeping_tty(self) -> Session:
        """Finish, checking first that the terminal got its settings back."""
        deadline = time.monotonic() + TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)  # (a full pty would block the command)
        code = self.proc.wait(timeout=TIMEOUT)
        assert termios.tcgetattr(self.slave) == self.saved  # raw mode undone
        while self._read(0.2):
            pass
        os.close(self.slave)
        os.close(self.master)
        return Session(output=self.data.decode(errors="replace"), code=code)


def in_shell(output: str) -> str:
    """What the shell session printed: after the announcement, before the error block
    (the progress above it quotes the Dockerfile's commands)."""
    after = output.split("exit it to continue", 1)[1]
    return after.split("\n------", 1)[0]
