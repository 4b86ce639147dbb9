"""Warm start (cli._warm): a later ``dockyard`` command runs in a child of a pre-imported
server, and behaves exactly as in its own process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli._warm import stop_servers
from dockyard.testing.processes import processes_with, wait_for

DOCKYARD = str(Path(sys.executable).parent / "dockyard")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of Dockyard's package, compiled, that this module's commands and servers
    run from. A server stops when its code changes, and the command then runs in its
    client: the tree the suite runs from may be edited meanwhile (by its developer, by
    git), which failed these tests for no fault of warm start (any edit under
    src/dockyard while a test ran)."""
    import compileall

    import dockyard

    root = tmp_path_factory.mktemp("code")
    shutil.copytree(
        Path(dockyard.__file__).parent,
        root / "dockyard",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    assert compileall.compile_dir(root / "dockyard", quiet=1)  # as installed: no compiling
    return root


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: Path) -> Iterator[Path]:
    """A runtime directory of this test's own (its warm server ends with the test); the
    commands run from :func:`code`."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.delenv("DOCKYARD_WARM", raising=False)
    yield path / "dockyard"
    stop_servers(path / "dockyard")


def _dockyard(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKYARD, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        input=input,
        pass_fds=pass_fds,
    )


def _wait_for_server(runtime: Path) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sockets = list(runtime.glob("warm-*.sock"))
        if sockets:
            return sockets[0]
        time.sleep(0.05)
    raise AssertionError(f"no warm server started in {runtime}")


def _children_ran(runtime: Path) -> str:
    """The modules the server's children reported: empty until a child ran."""
    learned = list(runtime.glob("warm-*.sock.modules"))
    return learned[0].read_text() if learned else ""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    return ctx


def _warm_up(runtime: Path, state: Path, context: Path) -> None:
    first = _dockyard("build", "-q", "--state-dir", str(state), str(context))
    assert first.returncode == 0, first.stderr
    _wait_for_server(runtime)


def test_a_later_command_runs_in_the_servers_child(
    runtime: Path, tmp_path: Path, context: Path
) -> None:
    state = tmp_path / "state"
    _warm_up(runtime, state, context)
    assert _children_ran(runtime) == ""
    out = tmp_path / "out"
    second = _dockyard(
        "build", "-q", "--state-dir", str(state), "-o", f"type=local,dest={out}", ".", cwd=context
    )
    assert second.returncode == 0, second.stderr
    assert (out / "hello.txt").read_text() == "hello\n"
    assert "dockyard." in _children_ran(runtime)


def test_exit_code_and_errors_are_the_commands(
    runtime: Path, tmp_path: Path, context: Path
) -> None:
    state = tmp_path / "state"
    _warm_up(runtime, state, context)
    (context / "Dockerfile").write_text("FROM scratch\nBOGUS x\n")
    warm = _dockyard("build", "--progress=plain", "--state-dir", str(state), str(context))
    cold = _dockyard(
        "build",
        "--progress=plain",
        "--state-dir",
        str(state),
        str(context),
        env={"DOCKYARD_WARM": "0"},
    )
    assert "dockyard." in _children_ran(runtime)
    assert warm.returncode == cold.returncode == 1
    assert "unknown instruction: BOGUS" in warm.stderr
    assert warm.stderr.splitlines()[-3:] == cold.stderr.splitlines()[-3:]
    usage = _dockyard("build", "--no-such-flag", str(context))
    assert usage.returncode == 2
    assert "No such option" in usage.stderr


def test_stdin_environment_directory_and_descriptors_are_the_clients(
    runtime: Path, tmp_path: Path, context: Path
) -> None:
    state = tmp_path / "state"
    _warm_up(runtime, state, context)
    # the Dockerfile on stdin, a build arg from the environment, the context relative
    # to the working directory, the image ID into a descriptor the client holds
    read_end, write_end = os.pipe()
    dockerfile = b"FROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY hello.txt /\n"
    try:
        result = _dockyard(
            "build",
            "--state-dir",
            str(state),
            "-q",
            "-t",
            "warm/env",
            "--build-arg",
            "GREETING",
            "--iidfile",
            f"/dev/fd/{write_end}",
            "-f",
            "-",
            ".",
            cwd=context,
            env={"GREETING": "from-the-client"},
            input=dockerfile.decode(),
            pass_fds=(write_end,),
        )
        os.close(write_end)
        written = os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
    assert result.returncode == 0, result.stderr
    assert "dockyard." in _children_ran(runtime)
    assert written.startswith("sha256:")
    assert result.stdout.strip() == written
    inspect = _dockyard("image", "inspect", "--state-dir", str(state), "warm/env")
    assert "from-the-client" in inspect.stdout


def _start_sleeping_build(
    state: Path, tmp_path: Path, marker: str, seconds: int = 30
) -> subprocess.Popen[bytes]:
    """``dockyard build`` (in its own session) of a RUN step that sleeps ``seconds``,
    then echoes ``marker`` (its command line names ``marker`` while it sleeps)."""
    ctx = tmp_path / "sleep"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN sleep {seconds} && echo {marker}\n")
    return subprocess.Popen(
        [DOCKYARD, "build", "--progress=plain", "--state-dir", str(state), str(ctx)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _sleeping_build(
    runtime: Path, state: Path, tmp_path: Path, context: Path, marker: str
) -> subprocess.Popen[bytes]:
    _warm_up(runtime, state, context)
    build = _start_sleeping_build(state, tmp_path, marker)
    assert wait_for(lambda: _running(marker), 60), "the RUN step never started"
    return build


def _running(marker: str) -> bool:
    return bool(processes_with(marker))


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"]
)
def test_a_signal_to_the_client_cancels_the_command(
    runtime: Path, state: Path, tmp_path: Path, context: Path, signum: int, code: int
) -> None:
    marker = f"warm-signal-{os.getpid()}-{signum}"
    build = _sleeping_build(runtime, state, tmp_path, context, marker)
    build.send_signal(signum)
    out, _ = build.communicate(timeout=60)
    assert build.returncode == code, out.decode()
    assert b"Aborted." in out
    assert "dockyard." in _children_ran(runtime)
    assert wait_for(lambda: not _running(marker), 20), "the RUN step outlived its build"


def test_a_killed_client_cancels_the_command(
    runtime: Path, state: Path, tmp_path: Path, context: Path
) -> None:
    marker = f"warm-kill-{os.getpid()}"
    build = _sleeping_build(runtime, state, tmp_path, context, marker)
    build.kill()
    build.communicate(timeout=60)  # the child holds the output until it ends
    assert wait_for(lambda: not _running(marker), 20), "the RUN step outlived its client"
    # the state directory is free again: a build on it runs
    again = _dockyard("build", "-q", "--state-dir", str(state), str(context))
    assert again.returncode == 0, again.stderr


def test_warm_start_can_be_turned_off(runtime: Path, tmp_path: Path, context: Path) -> None:
    state = tmp_path / "state"
    for _ in range(2):
        result = _dockyard(
            "build", "-q", "--state-dir", str(state), str(context), env={"DOCKYARD_WARM": "0"}
        )
        assert result.returncode == 0, result.stderr
    assert not runtime.exists() or not list(runtime.iterdir())


def _watch_short_lived_server(runtime: Path, state: Path, context: Path) -> tuple[int, int]:
    """Run the first command (which starts a server) and watch, while it runs, for the
    server's socket and its spare (its first child): with a short idle time the server
    may have ended before the command did (a look after it, as :func:`_warm_up` does,
    found no server, once in ten runs under load). The server's pid and the spare's."""
    first = subprocess.Popen(
        [DOCKYARD, "build", "-q", "--state-dir", str(state), str(context)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = spare = 0
    try:
        deadline = time.monotonic() + 60
        while not spare and time.monotonic() < deadline:
            if not server and list(runtime.glob("warm-*.sock")):
                with contextlib.suppress(StopIteration, OSError, ValueError):
                    server = _server_pid(runtime)  # (unless it ended meanwhile)
            if server:
                spare = next(iter(_children_of(server)), 0)
            time.sleep(0.01)
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    assert server, "no warm server started"
    assert spare, "the server made no spare"
    return server, spare


def test_an_idle_server_ends(
    runtime: Path, tmp_path: Path, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_WARM_IDLE", "1")
    _watch_short_lived_server(runtime, tmp_path / "state", context)
    assert wait_for(lambda: not list(runtime.glob("warm-*.sock")), 30), "the server stayed"
    # the server removes its pid file after its socket, as it exits
    assert wait_for(lambda: not list(runtime.glob("warm-*.sock.pid")), 10), "pid file left"


def test_a_client_with_fewer_rights_runs_alone(
    runtime: Path, tmp_path: Path, context: Path
) -> None:
    """A client under no_new_privs (a sandbox) must not borrow the server's rights: it
    runs the command in its own process."""
    state = tmp_path / "state"
    _warm_up(runtime, state, context)
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux's setpriv is missing"
    spare = _ready_spare(runtime)
    result = subprocess.run(
        [setpriv, "--no-new-privs", DOCKYARD, "build", "-q", "--state-dir", str(state), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _children_ran(runtime) == ""  # refused: nothing ran in a child
    assert _waiting_spare(_server_pid(runtime)) == spare  # nor reached the spare
    plain = _dockyard("build", "-q", "--state-dir", str(state), ".", cwd=context)
    assert plain.returncode == 0, plain.stderr
    assert "dockyard." in _children_ran(runtime)
    assert _ready_spare(runtime, other_than=spare) != spare  # the spare took it


# -- spares: a pre-forked child takes the next command ------------------------------------


def _server_pid(runtime: Path) -> int:
    pidfile = next(runtime.glob("warm-*.sock.pid"))
    return int(pidfile.read_text())


def _parent(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _children_of(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent(int(p.name)) == pid
    ]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and _parent(pid) != 0


def _waiting_spare(server: int) -> int | None:
    """The server's spare once it is ready: blocked reading its channel."""
    for child in _children_of(server):
        try:
            wchan = Path(f"/proc/{child}/wchan").read_text()
        except OSError:
            continue
        if "unix_stream_read" in wchan:
            return child
    return None


def _ready_spare(runtime: Path, *, other_than: int = 0) -> int:
    server = _server_pid(runtime)
    found: list[int] = []

    def ready() -> bool:
        spare = _waiting_spare(server)
        if spare is None or spare == other_than:
            return False
        found.append(spare)
        return True

    assert wait_for(ready, 30), "the server made no spare"
    return found[-1]


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        pid = _parent(pid)
        out.append(pid)
    return out


def _pids_of(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(p) for p in found.stdout.split()]


def test_a_command_runs_in_the_ready_spare_and_another_follows(
    runtime: Path, state: Path, tmp_path: Path, context: Path
) -> None:
    _warm_up(runtime, state, context)
    spare = _ready_spare(runtime)
    # it copied its pages at idle priority; it waits, and runs commands, at normal priority
    assert os.sched_getscheduler(spare) == os.SCHED_OTHER
    marker = f"warm-spare-{os.getpid()}"
    build = _start_sleeping_build(state, tmp_path, marker)
    try:
        assert wait_for(lambda: _running(marker), 60), "the RUN step never started"
        assert any(spare in _ancestors(pid) for pid in _pids_of(marker))
        assert os.sched_getscheduler(spare) == os.SCHED_OTHER
        # no new spare while a command runs (its fork and copies would slow the command)
        assert _waiting_spare(_server_pid(runtime)) is None
    finally:
        build.send_signal(signal.SIGINT)
        out, _ = build.communicate(timeout=60)
    assert build.returncode == 130, out.decode()
    assert "dockyard." in _children_ran(runtime)
    assert _ready_spare(runtime, other_than=spare) != spare
    assert not _alive(spare)


def test_a_command_in_a_spare_outlives_its_server(
    runtime: Path, state: Path, tmp_path: Path, context: Path
) -> None:
    """A spare dies with its server, but not once it became a command (as a forked
    child does, it ends with its client)."""
    _warm_up(runtime, state, context)
    spare = _ready_spare(runtime)
    marker = f"warm-outlive-{os.getpid()}"
    build = _start_sleeping_build(state, tmp_path, marker)
    try:
        assert wait_for(lambda: _running(marker), 60), "the RUN step never started"
        assert any(spare in _ancestors(pid) for pid in _pids_of(marker))
        os.kill(_server_pid(runtime), signal.SIGKILL)
        time.sleep(1)
        assert _alive(spare)
        assert _running(marker)
    finally:
        build.send_signal(signal.SIGINT)
        out, _ = build.communicate(timeout=60)
    assert build.returncode == 130, out.decode()
    assert wait_for(lambda: not _running(marker), 20), "the RUN step outlived its build"


def test_sigkill_of_the_command_kills_its_run_step(
    runtime: Path, state: Path, tmp_path: Path, context: Path
) -> None:
    """The server's child that runs the build (and its engine) dies by SIGKILL: the RUN
    step's container goes with it; the next command reaps what it left on disk."""
    _warm_up(runtime, state, context)
    marker = f"warm-sigkill-{os.getpid()}"
    build = _start_sleeping_build(state, tmp_path, marker, seconds=100_000)
    try:
        assert wait_for(lambda: _running(marker), 60), "the RUN step never started"
        (step,) = _pids_of(marker)
        command = _parent(_parent(step))  # the step's runtime's parent: the engine's process
        assert _server_pid(runtime) in _ancestors(command)
        os.kill(command, signal.SIGKILL)
        out, _ = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.send_signal(signal.SIGINT)
            build.communicate(timeout=60)
    assert build.returncode == 1, out.decode()
    gone = wait_for(lambda: not _running(marker), 20)
    after = _dockyard("build", "-q", "--state-dir", str(state), str(context))
    assert gone, "the RUN step outlived the process that ran its build"
    assert after.returncode == 0, after.stderr


def test_a_spare_dies_with_its_server(runtime: Path, state: Path, context: Path) -> None:
    _warm_up(runtime, state, context)
    spare = _ready_spare(runtime)
    os.kill(_server_pid(runtime), signal.SIGKILL)  # no chance to clean up: the kernel's job
    assert wait_for(lambda: not _alive(spare), 20), "the spare outlived its server"


def test_an_idle_server_ends_its_spare(
    runtime: Path, state: Path, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_WARM_IDLE", "2")
    # the spare, ready or still copying its pages (at idle priority, under load, it may
    # take longer than the server's idle time)
    _, spare = _watch_short_lived_server(runtime, state, context)
    assert wait_for(lambda: not list(runtime.glob("warm-*.sock")), 30), "the server stayed"
    assert wait_for(lambda: not _alive(spare), 10), "the spare outlived its server"


def test_a_spare_of_old_code_never_runs_a_command(
    runtime: Path, state: Path, tmp_path: Path, context: Path
) -> None:
    """After Dockyard's code changed, the server stops (and its spare with it) and the
    client runs the command itself; the spare made from the old code runs nothing."""
    import dockyard

    copy = tmp_path / "src"
    shutil.copytree(
        Path(dockyard.__file__).parent,
        copy / "dockyard",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {"PYTHONPATH": str(copy), "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    first = _dockyard("build", "-q", "--state-dir", str(state), str(context), env=env)
    assert first.returncode == 0, first.stderr
    _wait_for_server(runtime)
    server = _server_pid(runtime)
    spare = _ready_spare(runtime)
    (copy / "dockyard" / "cli" / "_changed.py").write_text("CHANGED = True\n")
    out = tmp_path / "out"
    second = _dockyard(
        "build",
        "-q",
        "--state-dir",
        str(state),
        "-o",
        f"type=local,dest={out}",
        str(context),
        env=env,
    )
    assert second.returncode == 0, second.stderr
    assert (out / "hello.txt").read_text() == "hello\n"
    assert _children_ran(runtime) == ""  # the client ran it: no child, no spare
    assert wait_for(lambda: not _alive(spare) and not _alive(server), 20)
