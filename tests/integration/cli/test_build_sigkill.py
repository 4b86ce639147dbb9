"""``dockyard build`` killed by SIGKILL while a RUN step runs (the engine in the CLI's
own process): the step's container does not outlive it, and the next command reaps
what was left on disk. (The warm server's child: tests/integration/cli/test_warm.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dockyard.testing.processes import processes_with, wait_for

DOCKYARD = str(Path(sys.executable).parent / "dockyard")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root")


def _running(marker: str) -> bool:
    return bool(processes_with(marker))


def _context(path: Path, dockerfile: str) -> Path:
    path.mkdir()
    (path / "Dockerfile").write_text(dockerfile)
    return path


def test_sigkill_of_the_build_kills_its_run_step(state: Path, tmp_path: Path) -> None:
    marker = "dockyard-build-sigkill-" + uuid.uuid4().hex
    ctx = _context(tmp_path / "slow", f"FROM busybox\nRUN sleep 100000 && echo {marker}\n")
    env = {**os.environ, "DOCKYARD_WARM": "0"}  # the engine in this very process
    with open(tmp_path / "build.log", "wb") as log:
        build = subprocess.Popen(
            [DOCKYARD, "build", "--progress=plain", "--state-dir", str(state), str(ctx)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        started = wait_for(lambda: _running(marker), 60)
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    assert started, (tmp_path / "build.log").read_text()
    gone = wait_for(lambda: not _running(marker), 20)
    # the next command's engine reaps the bundle and its mounts (and the container, on
    # failure: the fixture checks mounts)
    after = subprocess.run(
        [
            DOCKYARD,
            "build",
            "--state-dir",
            str(state),
            str(_context(tmp_path / "next", "FROM busybox\n")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert gone, "the RUN step outlived its SIGKILLed build"
    assert after.returncode == 0, after.stderr
