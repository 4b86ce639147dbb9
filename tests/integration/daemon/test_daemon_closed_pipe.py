"""Through a daemon, a ``dockyard`` whose stdout or stderr reader went away ends as a
Go CLI does (by SIGPIPE, quietly) and its build is cancelled on the daemon: ``-o -``
into a closed pipe (the tarball streams back to the client), progress into one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from tests.integration.cli.ptycmd import DOCKYARD, ENV, TIMEOUT

from .conftest import DaemonProcess, eventually, processes_with


def _run(argv: list[str], *, closed: str) -> tuple[int, str]:
    read, broken = os.pipe()
    os.close(read)
    streams = (
        {"stdout": broken, "stderr": subprocess.PIPE}
        if closed == "stdout"
        else {"stdout": subprocess.DEVNULL, "stderr": broken}
    )
    try:
        proc = subprocess.Popen(argv, env=ENV, **streams)  # type: ignore[call-overload]
    finally:
        os.close(broken)
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, (err or b"").decode(errors="replace")


async def test_a_tarball_into_a_closed_stdout(running: DaemonProcess, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo x > /x\n")
    argv = [DOCKYARD, "--addr", f"unix://{running.socket}", "build", "--progress=plain"]
    code, err = await asyncio.to_thread(_run, [*argv, "-o", "-", str(ctx)], closed="stdout")
    assert code == -signal.SIGPIPE, err
    assert "ERROR: stdout was closed by its reader" in err  # the step says why it stopped
    assert "failed to solve" not in err  # and nothing else is said
    assert "Broken pipe" not in err


async def test_progress_into_a_closed_stderr_cancels_the_build(
    running: DaemonProcess, tmp_path: Path
) -> None:
    marker = f"closed-stderr-{os.getpid()}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN echo {marker}; sleep 60 # {marker}\n")
    argv = [DOCKYARD, "--addr", f"unix://{running.socket}", "build", "--progress=plain"]
    code, _ = await asyncio.to_thread(_run, [*argv, str(ctx)], closed="stderr")
    assert code == -signal.SIGPIPE

    async def stopped() -> bool:
        return not processes_with(marker) and "cancelled by the client" in running.log_text()

    await eventually(stopped, 30)
