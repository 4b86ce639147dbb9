"""``dockyard build --addr ... --invoke``: the debug shell runs in ``dockyardd``'s sandbox
(crun, as root) on the failed step's state or the result, while its streams are the
client's — a real pseudo-terminal (raw mode, window size and its changes, restored at
the end) or pipes — relayed over the build's session. The build's exit status is what
the embedded engine gives (``tests/integration/cli/test_build_invoke.py``); a client
that goes away takes its shell's container with it, and nothing of the shell reaches
the daemon's log."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import termios
from pathlib import Path

from tests.integration.cli.ptycmd import DOCKYARD, ENV, TIMEOUT, PtyCommand, Session, in_shell
from tests.integration.conftest import need_tools

from .conftest import DaemonProcess, eventually, mounts_under, processes_with


def _argv(daemon: DaemonProcess, ctx: Path, *extra: str) -> list[str]:
    return [
        DOCKYARD,
        "build",
        "--progress=plain",
        "--addr",
        f"unix://{daemon.socket}",
        *extra,
        str(ctx),
    ]


def _context(path: Path, dockerfile: str) -> Path:
    path.mkdir()
    (path / "Dockerfile").write_text(dockerfile)
    return path


def _containers(state: Path) -> list[str]:
    """The containers crun knows in the daemon's runtime root, and its bundles."""
    listing = subprocess.run(
        ["crun", "--root", str(state / "executor" / "runtime" / "crun"), "list", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    bundles = state / "executor" / "bundles"
    left = [b.name for b in bundles.iterdir()] if bundles.is_dir() else []
    return listing.stdout.split() + left


async def _nothing_left(daemon: DaemonProcess) -> None:
    """No container, bundle or mount of a shell is left on the daemon's host, and no
    snapshot is held."""

    async def clean() -> bool:
        if _containers(daemon.state) or mounts_under(daemon.state):
            return False
        async with daemon.client() as client:
            return not any(r.in_use for r in await client.du())

    await eventually(clean, 60)


async def test_a_failed_step_opens_a_shell_on_the_clients_terminal(
    running: DaemonProcess, tmp_path: Path
) -> None:
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
    argv = _argv(running, ctx, "--invoke", "/bin/sh", "--secret", f"id=tok,src={secret}")

    def drive() -> Session:
        cmd = PtyCommand(argv, size=(33, 111))
        assert cmd.read_until(b"exit it to continue"), cmd.data.decode(errors="replace")
        assert cmd.read_until(b"# ", after=len(cmd.data)), cmd.data.decode(errors="replace")
        cmd.send(
            "grep -i seccomp /proc/self/status; cat /failed-step-file; echo GREETING=$GREETING;"
            " pwd; cat /cache/c-file; cat /run/secrets/tok; tty; echo size-$(stty size)-end\n"
        )
        assert cmd.read_until(b"size-33 111-end"), cmd.data.decode(errors="replace")
        cmd.set_size(50, 160)
        os.kill(cmd.proc.pid, signal.SIGWINCH)  # (the pty is not its controlling one)
        mark = len(cmd.data)
        for _ in range(100):  # the resize travels to the daemon, then to the shell's pty
            cmd.send("echo size-$(stty size)-end\n")
            if cmd.read_until(b"-end", after=mark) and b"size-50 160-end" in cmd.data[mark:]:
                break
            mark = len(cmd.data)
        cmd.send("exit 3\n")
        return cmd.finish_keeping_tty()

    session = await asyncio.to_thread(drive)
    assert session.code == 1, session.output  # the build's failure, not the shell's 3
    out = in_shell(session.output)
    assert "Seccomp:\t2" in out  # the step's sandbox on the daemon, seccomp filter included
    assert "partial" in out  # what the failed command wrote
    assert "GREETING=hello-from-env" in out
    assert "/work\r\n" in out
    assert "cached" in out  # its cache mount
    assert "s3cr3t-value" in out  # its secret, from the client's session
    assert "/dev/pts/0" in out  # a pty in the container
    assert "size-50 160-end" in out  # the client's window, changes included
    error = session.output.split("exit it to continue", 1)[1]
    assert "did not complete successfully: exit code: 7" in error
    assert "step-42" in error  # the step's log comes with the error
    await _nothing_left(running)
    log = running.log_text()
    assert "s3cr3t-value" not in log
    assert "hello-from-env" not in log


async def test_a_command_reads_piped_input_and_keeps_stdout_and_stderr_apart(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo partial > /f && exit 7\n")
    command = "sh -c 'cat /f; read line; echo got:$line; echo to-stderr >&2; cat; exit 4'"
    done = await asyncio.to_thread(
        subprocess.run,
        _argv(running, ctx, "--on=error", "--invoke", command),
        input="hello\nrest-of-input\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # the step's failure; not the shell's 4
    assert done.stdout == "partial\ngot:hello\nrest-of-input\n"
    assert "to-stderr" in done.stderr
    assert "exit code: 7" in done.stderr
    await _nothing_left(running)


async def test_after_success_the_shell_runs_on_the_result_and_its_changes_go(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo built > /result-file\n")

    async def shell(commands: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            _argv(running, ctx, "--invoke", "/bin/sh"),
            input=commands,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=TIMEOUT,
            check=False,
        )

    first = await shell("cat /result-file; touch /shell-change; exit 5\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "built\n"
    assert "build finished: running /bin/sh (exit it to continue)" in first.stderr
    second = await shell("ls /shell-change || echo discarded-$((1+1))\n")
    assert second.returncode == 0, second.stderr
    assert "discarded-2" in second.stdout
    await _nothing_left(running)


async def test_on_error_opens_no_shell_after_success(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN true\n")
    done = await asyncio.to_thread(
        subprocess.run,
        _argv(running, ctx, "--invoke", "on-error"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "exit it to continue" not in done.stderr


async def test_a_shell_that_cannot_start_keeps_the_steps_error(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 5\n")
    argv = _argv(running, ctx, "--invoke", "/no/such/shell")
    session = await asyncio.to_thread(lambda: PtyCommand(argv).finish_keeping_tty())
    assert session.code == 1, session.output
    assert "--invoke: crun could not run ['/no/such/shell']" in session.output
    assert "did not complete successfully: exit code: 5" in session.output
    await _nothing_left(running)


async def test_a_client_killed_during_the_shell_leaves_nothing_on_the_daemon(
    running: DaemonProcess, tmp_path: Path
) -> None:
    marker = str(3000 + secrets.randbelow(5000))
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 2\n")
    command = f"sh -c 'echo ready-$((40+2)); exec sleep {marker}'"
    with (tmp_path / "client.err").open("wb") as err:
        client = await asyncio.create_subprocess_exec(
            *_argv(running, ctx, "--on=error", "--invoke", command),
            stdin=subprocess.PIPE,  # open to the end: the shell waits for no input
            stdout=subprocess.PIPE,
            stderr=err,
            env=ENV,
        )
    try:
        assert client.stdout is not None
        line = await asyncio.wait_for(client.stdout.readline(), TIMEOUT)
        assert line == b"ready-42\n", (tmp_path / "client.err").read_text()
        assert processes_with(f"sleep {marker}")  # the shell runs on the daemon's host
        assert _containers(running.state)
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()

    async def gone() -> bool:
        return not processes_with(f"sleep {marker}")

    await eventually(gone, 60)
    await _nothing_left(running)
    assert "cancelled by the client" in running.log_text()
    # the daemon serves on
    async with running.client() as daemon_client:
        await daemon_client.build(_context(tmp_path / "next", "FROM busybox\nRUN true\n"))


async def test_sigterm_during_a_terminal_shell_restores_the_terminal(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 2\n")
    argv = _argv(running, ctx, "--invoke", "/bin/sh")

    def drive() -> Session:
        cmd = PtyCommand(argv)
        assert cmd.read_until(b"exit it to continue"), cmd.data.decode(errors="replace")
        assert cmd.read_until(b"# ", after=len(cmd.data)), cmd.data.decode(errors="replace")
        assert termios_raw(cmd)  # the client's terminal is in raw mode meanwhile
        cmd.proc.send_signal(signal.SIGTERM)
        return cmd.finish_keeping_tty()

    session = await asyncio.to_thread(drive)
    assert session.code != 0
    await _nothing_left(running)


def termios_raw(cmd: PtyCommand) -> bool:
    return not termios.tcgetattr(cmd.slave)[3] & termios.ECHO


async def test_keys_typed_before_the_shell_runs_wait_for_it(
    running: DaemonProcess, tmp_path: Path
) -> None:
    # the client used to read its terminal (in raw mode) from the moment the daemon
    # asked for it, before the sandbox was even made: keys typed meanwhile went to a pty
    # no shell read yet. Now they wait in the terminal until the process runs, and reach
    # the shell once, in order
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN sleep 2; exit 7\n")
    argv = _argv(running, ctx, "--invoke", "/bin/sh")

    def drive() -> Session:
        cmd = PtyCommand(argv)
        assert cmd.read_until(b"RUN sleep 2"), cmd.data.decode(errors="replace")
        cmd.send("echo typed-$((6*7))-first\n")  # while the step runs
        assert cmd.read_until(b"exit it to continue"), cmd.data.decode(errors="replace")
        cmd.send("echo typed-$((6*8))-second\n")  # while the shell's sandbox is made
        assert cmd.read_until(b"typed-48-second"), cmd.data.decode(errors="replace")
        cmd.send("exit 3\n")
        return cmd.finish_keeping_tty()

    session = await asyncio.to_thread(drive)
    assert session.code == 1, session.output
    out = in_shell(session.output)
    assert out.count("typed-42-first") == 1  # ran once
    assert out.count("typed-48-second") == 1
    assert out.index("typed-42-first") < out.index("typed-48-second")  # in order
    await _nothing_left(running)


async def test_a_shell_that_never_runs_reads_no_key(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path
) -> None:
    # runc runs no terminal shell: the process never starts, so the client must neither
    # read what the user typed (it is the next program's) nor put the terminal in raw mode
    need_tools("runc")
    await asyncio.to_thread(daemon_config.write_text, '[worker]\nruntime = "runc"\n')
    await daemon.start()
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN exit 5\n")
    argv = _argv(daemon, ctx, "--invoke", "/bin/sh")

    def drive() -> tuple[Session, int]:
        cmd = PtyCommand(argv)
        cmd.send("typed-ahead\n")
        cmd.proc.wait(timeout=TIMEOUT)
        pending = _pending(cmd.slave)
        return cmd.finish_keeping_tty(), pending

    session, pending = await asyncio.to_thread(drive)
    assert session.code == 1, session.output
    assert "did not complete successfully: exit code: 5" in session.output
    assert "needs the crun runtime" in session.output
    assert pending == len(b"typed-ahead\n"), session.output  # left for the next program
    await _nothing_left(daemon)


def _pending(fd: int) -> int:
    import fcntl
    import struct

    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])
