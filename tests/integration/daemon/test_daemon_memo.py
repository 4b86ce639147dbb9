"""A no-op rebuild through a daemon is replayed by the client: the third identical build
sends the daemon no build (only an ``Info`` call for its state token); a prune on the
daemon or a changed context makes the build run again."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from dockyard.cli.main import main

from .conftest import DaemonProcess

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "greeting"


def builds_logged(daemon: DaemonProcess) -> int:
    return sum(1 for line in daemon.log.read_text().splitlines() if ": started (" in line)


async def build(daemon: DaemonProcess, ctx: Path, *args: str) -> int:
    argv = ["--addr", f"unix://{daemon.socket}", "build", "-t", "memo-daemon", *args, str(ctx)]
    return await asyncio.to_thread(main, argv)


async def test_a_no_op_build_on_a_daemon_is_replayed_by_the_client(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    await asyncio.to_thread(shutil.copytree, EXAMPLE, ctx)
    assert await build(running, ctx, "-q") == 0  # runs its steps
    first_id = capsys.readouterr().out.strip()
    assert await build(running, ctx, "-q") == 0  # all cached: remembered
    capsys.readouterr()
    assert builds_logged(running) == 2

    assert await build(running, ctx, "--progress", "plain") == 0
    err = capsys.readouterr().err
    assert builds_logged(running) == 2  # the daemon built nothing
    assert "CACHED" in err
    assert f"({first_id})" in err
    assert f"dockyardd at unix://{running.socket}" in err

    # a prune on the daemon changes its state token: the next build runs
    assert (
        await asyncio.to_thread(main, ["--addr", f"unix://{running.socket}", "prune", "--all"]) == 0
    )
    capsys.readouterr()
    assert await build(running, ctx, "-q") == 0
    assert builds_logged(running) == 3

    # so does a change of the context
    await asyncio.to_thread((ctx / "greet.sh.in").write_text, "#!/bin/sh\necho changed\n")
    assert await build(running, ctx, "-q") == 0
    assert builds_logged(running) == 4
    assert capsys.readouterr().out.strip().splitlines()[-1] != first_id
