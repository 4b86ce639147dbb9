"""``dockyard build --invoke``: a shell in a failed ``RUN`` step's container, or in the
result, driven through a real pseudo-terminal (as root, crun, the embedded engine in the
command's own process). Through a daemon: ``tests/integration/daemon/test_daemon_invoke.py``."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from .ptycmd import DOCKYARD, PtyCommand, Session
from .ptycmd import ENV as _ENV
from .ptycmd import TIMEOUT as _TIMEOUT
from .ptycmd import in_shell as _in_shell


def _build_argv(state: Path, ctx: Path, *extra: str) -> list[str]:
    return [DOCKYARD, "build", "--progress=plain", "--state-dir", str(state), *extra, str(ctx)]


def _context(path: Path, dockerfile: str) -> Path:
    path.mkdir()
    (path / "Dockerfile").write_text(dockerfile)
    return path


def _shell(state: Path, ctx: Path, commands: str, *extra: str) -> Session:
    cmd = PtyCommand(_build_argv(state, ctx, *extra))
    assert cmd.read_until(b"exit it to continue"), cmd.data.decode(errors="replace")
    start = len(cmd.data)
    assert cmd.read_until(b"# ", after=start), cmd.data.decode(errors="replace")
    cmd.send(commands)
    return cmd.finish()


def _no_containers(state: Path) -> None:
    runtime_root = state / "executor" / "runtime" / "crun"
    listing = subprocess.run(
        ["crun", "--root", str(runtime_root), "list", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listing.stdout.strip() == "", listing.stdout
    bundles = state / "executor" / "bundles"
    assert not bundles.is_dir() or list(bundles.iterdir()) == []
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert str(state) not in mountinfo


def test_a_failed_run_step_opens_a_shell_on_its_state(state: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t-value\n")
    ctx = _context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "ENV GREETING=hello-from-env\n"
        "WORKDIR /work\n"
        "RUN --mount=type=cache,target=/cache --mount=type=secret,id=tok \\\n"
        "    echo partial > /failed-step-file && echo cached > /cache/c-file"
        " && echo step-$((40+2)) && exit 7\n",
    )
    session = _shell(
        state,
        ctx,
        "grep -i seccomp /proc/self/status; cat /failed-step-file; echo GREETING=$GREETING;"
        " pwd; cat /cache/c-file; cat /run/secrets/tok; exit 3\n",
        "--invoke",
        "/bin/sh",
        "--secret",
        f"id=tok,src={secret}",
    )
    assert session.code == 1, session.output  # the build's failure, not the shell's 3
    out = _in_shell(session.output)
    assert "Seccomp:\t2" in out  # the step's sandbox, seccomp filter included
    assert "partial" in out  # what the failed command wrote
    assert "GREETING=hello-from-env" in out
    assert "/work\r\n" in out
    assert "cached" in out  # its cache mount
    assert "s3cr3t-value" in out  # its secret, as configured
    error = session.output.split("exit it to continue", 1)[1]
    assert "did not complete successfully: exit code: 7" in error
    assert "step-42" in error  # the step's log comes with the error
    _no_containers(state)


def test_a_successful_build_opens_a_shell_on_the_result(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo built > /result-file\n")
    first = _shell(
        state, ctx, "cat /result-file; touch /shell-change; exit 5\n", "--invoke", "/bin/sh"
    )
    assert first.code == 0, first.output
    assert "built" in _in_shell(first.output)
    second = _shell(
        state, ctx, "ls /shell-change || echo discarded-$((1+1)); exit 0\n", "--invoke", "/bin/sh"
    )
    assert second.code == 0, second.output
    # the first shell's changes were discarded
    assert "discarded-2" in _in_shell(second.output)
    _no_containers(state)


def test_on_error_only_does_not_open_a_shell_after_success(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN true\n")
    done = subprocess.run(
        _build_argv(state, ctx, "--invoke", "on-error"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_ENV,
        timeout=_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "exit it to continue" not in done.stderr


def test_without_a_terminal_the_shell_reads_a_pipe(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo built > /result-file\n")
    done = subprocess.run(
        _build_argv(state, ctx, "--invoke", "/bin/sh"),
        input="ls /; cat /result-file; exit 0\n",
        capture_output=True,
        text=True,
        env=_ENV,
        timeout=_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "result-file" in done.stdout
    assert "built" in done.stdout
    _no_containers(state)


def test_a_failed_step_with_a_pipe(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo partial > /f && false\n")
    done = subprocess.run(
        _build_argv(state, ctx, "--on=error"),
        input="cat /f; exit 0\n",
        capture_output=True,
        text=True,
        env=_ENV,
        timeout=_TIMEOUT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "partial" in done.stdout
    assert "exit code: 1" in done.stderr
    _no_containers(state)


def test_a_build_killed_during_the_shell_leaves_nothing(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo x > /f && exit 2\n")
    cmd = PtyCommand(_build_argv(state, ctx, "--invoke", "/bin/sh"))
    assert cmd.read_until(b"exit it to continue"), cmd.data.decode(errors="replace")
    assert cmd.read_until(b"# ", after=len(cmd.data) - 1)
    cmd.proc.send_signal(signal.SIGTERM)
    session = cmd.finish_keeping_tty()
    assert session.code != 0
    _no_containers(state)


def test_a_shell_that_cannot_start_keeps_the_steps_error(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 5\n")
    cmd = PtyCommand(_build_argv(state, ctx, "--invoke", "/no/such/shell"))
    session = cmd.finish_keeping_tty()
    assert session.code == 1, session.output
    assert "--invoke: crun could not run ['/no/such/shell']" in session.output
    assert "did not complete successfully: exit code: 5" in session.output
    _no_containers(state)
