"""A command whose stdout or stderr reader goes away (``dockyard images | head -1``,
``dockyard build --progress=plain 2>&1 | head``) ends as a Go CLI ends: killed by
SIGPIPE (the shell sees 141), nothing on stderr — no traceback, no "Exception ignored",
no exit 1 of click's. A build is cancelled at once (its running step stopped, nothing
left mounted), not run to its end. In its own process and in a warm server's child,
whose client then ends by the same signal. The pipes here are real: their reader is
closed before the command writes."""

from __future__ import annotations

import os
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


@pytest.fixture(params=["cold", "warm"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of the commands: warm start off, or a warm server of the test's
    own (started by a first command, waited for)."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    environ = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    environ.pop("DOCKYARD_HOST", None)
    if request.param == "cold":
        environ["DOCKYARD_WARM"] = "0"
        yield environ
        return
    environ.pop("DOCKYARD_WARM", None)
    subprocess.run(
        [DOCKYARD, "images", "--state-dir", str(tmp_path / "warm-up")],
        env=environ,
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert wait_for(lambda: any((runtime / "dockyard").glob("warm-*.sock")), 60)
    yield environ
    stop_servers(runtime / "dockyard")


def _closed_pipe() -> int:
    """The write end of a pipe whose reader is gone."""
    read, write = os.pipe()
    os.close(read)
    return write


def _run(args: list[str], env: dict[str, str], *, closed: str) -> tuple[int, str, float]:
    """Run ``dockyard ARGS`` with ``closed`` (``stdout``, ``stderr`` or ``both``) a pipe
    without a reader; the return code, what reached the other stream, the seconds."""
    broken = _closed_pipe()
    other = subprocess.PIPE
    streams = {
        "stdout": {"stdout": broken, "stderr": other},
        "stderr": {"stdout": subprocess.DEVNULL, "stderr": broken},
        "both": {"stdout": broken, "stderr": broken},
    }[closed]
    start = time.monotonic()
    try:
        proc = subprocess.Popen([DOCKYARD, *args], env=env, **streams)  # type: ignore[call-overload]
    finally:
        os.close(broken)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, (err or b"").decode(errors="replace"), time.monotonic() - start


@pytest.fixture
def dockerfile(tmp_path: Path) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM scratch\nCOPY Dockerfile /\n")
    return path


@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["build", "--help"], ["images"], ["du"], ["debug", "dump-ast"]],
    ids=["version", "help", "build-help", "images", "du", "dump-ast"],
)
def test_a_closed_stdout_ends_the_command_by_sigpipe(
    env: dict[str, str], tmp_path: Path, dockerfile: Path, args: list[str]
) -> None:
    if args[0] in ("images", "du"):
        args = [*args, "--state-dir", str(tmp_path / "state")]
    elif args[0] == "debug":
        args = [*args, str(dockerfile)]
    code, err, _ = _run(args, env, closed="stdout")
    assert code == -signal.SIGPIPE, err
    assert err == ""


def test_a_quiet_build_and_a_tarball_to_a_closed_stdout(
    env: dict[str, str], tmp_path: Path, dockerfile: Path
) -> None:
    state = str(tmp_path / "state")
    context = str(dockerfile.parent)
    code, err, _ = _run(["build", "-q", "--state-dir", state, context], env, closed="stdout")
    assert (code, err) == (-signal.SIGPIPE, "")
    code, err, _ = _run(
        ["build", "--call=outline", "--progress=quiet", "--state-dir", state, context],
        env,
        closed="stdout",
    )
    assert (code, err) == (-signal.SIGPIPE, "")
    # the tarball's step says why it stopped; nothing else is reported
    code, err, _ = _run(
        ["build", "--progress=plain", "-o", "-", "--state-dir", state, context],
        env,
        closed="stdout",
    )
    assert code == -signal.SIGPIPE, err
    assert "ERROR: stdout was closed by its reader" in err
    assert "Traceback" not in err
    assert "failed to solve" not in err


def test_a_closed_stderr_cancels_the_build(
    env: dict[str, str], state: Path, dockerfile: Path
) -> None:
    # (state: the project's own busybox in the image store; no peer registry needed)
    marker = f"closed-pipe-{os.getpid()}-{time.monotonic_ns()}"
    dockerfile.write_text(f"FROM busybox\nRUN echo {marker}; sleep 60 # {marker}\n")
    code, _, seconds = _run(
        ["build", "--progress=plain", "--state-dir", str(state), str(dockerfile.parent)],
        env,
        closed="both",
    )
    assert code == -signal.SIGPIPE
    assert seconds < 45, "the build ran on after its output was gone"
    assert wait_for(lambda: not processes_with(marker), 20), "the RUN step outlived its build"
    assert str(state) not in Path("/proc/self/mountinfo").read_text()
