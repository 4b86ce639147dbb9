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


async def test_the_state_token_from_the_daemons_files_is_the_one_it_answers(
    daemon: DaemonProcess,
) -> None:
    from dockyard.cli import _memo

    state_file = daemon.socket.with_name(daemon.socket.name + ".state")
    await daemon.start()
    modes = await asyncio.to_thread(lambda: (state_file.stat(), daemon.socket.stat()))
    assert oct(modes[0].st_mode & 0o777) == oct(modes[1].st_mode & 0o777)
    address = f"unix://{daemon.socket}"
    from_files = await asyncio.to_thread(_memo._token_from_files, str(daemon.socket))
    assert from_files is not None
    moved = daemon.socket.with_name("elsewhere")
    await asyncio.to_thread(state_file.rename, moved)  # no file: the token comes from Info
    assert await asyncio.to_thread(_memo.daemon_token, address) == from_files
    await asyncio.to_thread(moved.rename, state_file)

    # a prune that removes something changes both
    assert await build(daemon, EXAMPLE, "-q") == 0
    assert await asyncio.to_thread(main, ["--addr", address, "prune", "--all"]) == 0
    assert await asyncio.to_thread(_memo.daemon_token, address) != from_files

    await daemon.stop()
    assert not await asyncio.to_thread(state_file.exists)  # removed with the socket
    assert await asyncio.to_thread(_memo.daemon_token, address) is None
