"""``--load``'s ``docker load``: what its start makes is not left open when the start is
cancelled."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dockyard.client._client import _DockerLoad


def _pipe_fds() -> set[tuple[int, str]]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target.startswith("pipe:"):
            found.add((int(name), target))
    return found


async def test_a_cancelled_start_leaves_no_pipe_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while ``docker load`` starts: the process is gone (asyncio kills it) and
    the write end of its stdin pipe is closed too (it used to stay open, for nobody)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text("#!/bin/sh\nexec cat > /dev/null\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    before = _pipe_fds()
    starting = asyncio.ensure_future(_DockerLoad.start())
    await asyncio.sleep(0)  # docker load was started; its pipes are being connected
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert _pipe_fds() - before == set()
