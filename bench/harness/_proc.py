"""Running and timing commands; every command's output goes to the run's log file."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class BenchError(Exception):
    """A command of the benchmark failed (the message carries the end of its output)."""


class Log:
    """The run's log file: every command line and its output, appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def note(self, text: str) -> None:
        with self.path.open("a") as f:
            f.write(f"## {time.strftime('%H:%M:%S')} {text}\n")

    def tail(self, offset: int, limit: int = 2000) -> str:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")[-limit:]

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


def spawn(
    argv: Sequence[str], log: Log, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` with its output appended to the log; returns the process and the
    log offset its output starts at."""
    log.note("$ " + " ".join(argv))
    offset = log.size()
    out = log.path.open("ab")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(env),
            cwd=cwd,
        )
    except OSError as exc:
        raise BenchError(f"cannot run {argv[0]}: {exc}") from exc
    finally:
        out.close()
    return proc, offset


def exited(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc.wait(timeout)`` without its polling: with a timeout, Popen.wait sleeps in
    steps of up to 50 ms, which quantized every measured time to ~50 ms. A pidfd
    becomes readable the moment the process ends."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # an old kernel, or the process is already reaped
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


def wait(
    proc: subprocess.Popen[bytes], offset: int, argv: Sequence[str], log: Log, timeout: float
) -> None:
    """Wait for a process of :func:`spawn`; a failure raises :class:`BenchError`."""
    try:
        rc = exited(proc, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from None
    if rc != 0:
        raise BenchError(f"exit {rc}: {' '.join(argv)}\n{log.tail(offset)}")


def run(
    argv: Sequence[str],
    log: Log,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 1800,
) -> float:
    """Run ``argv`` to completion; returns its wall time in seconds."""
    start = time.perf_counter()
    proc, offset = spawn(argv, log, env=env, cwd=cwd)
    if check:
        wait(proc, offset, argv, log, timeout)
    else:
        try:
            exited(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.perf_counter() - start


def run_all(
    commands: Sequence[Sequence[str]],
    log: Log,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> float:
    """Start every command at once and wait for all; returns the wall time until the last
    one ended. Any failure raises :class:`BenchError` (after all have ended)."""
    start = time.perf_counter()
    procs = [(argv, *spawn(argv, log, env=env)) for argv in commands]
    errors: list[str] = []
    for argv, proc, offset in procs:
        try:
            wait(proc, offset, argv, log, timeout)
        except BenchError as exc:
            errors.append(str(exc))
    elapsed = time.perf_counter() - start
    if errors:
        raise BenchError(f"{len(errors)} of {len(commands)} failed; first: {errors[0]}")
    return elapsed


def output(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
    """The stdout of ``argv`` ('' when it cannot run or fails)."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, env=_env(env), timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
