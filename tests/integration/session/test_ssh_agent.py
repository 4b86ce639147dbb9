"""SSH agent forwarding with a real ssh-agent: ``ssh-add -l`` against the forwarded
socket lists the client's key, in-process and over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core import SessionError
from dockyard.session import Session, SshAgents, SshSpec
from dockyard.testing.processes import processes_with
from tests.integration.conftest import need_tools
from tests.unit.session.harness import Harness, socket_dir


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An ed25519 key pair and its fingerprint."""
    tools = need_tools("ssh-keygen")
    path = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        [
            tools["ssh-keygen"],
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "dockyard-test",
            "-f",
            str(path),
        ],
        check=True,
    )
    fingerprint = subprocess.run(
        [tools["ssh-keygen"], "-l", "-f", str(path)], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    return path, fingerprint


@pytest.fixture
def agent(key: tuple[Path, str]) -> Iterator[Path]:
    """A real ssh-agent holding ``key``; yields its socket."""
    tools = need_tools("ssh-agent", "ssh-add")
    directory = socket_dir()
    sock = directory / "agent.sock"
    proc = subprocess.Popen([tools["ssh-agent"], "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if sock.exists():
                break
            proc.poll()
            assert proc.returncode is None, "ssh-agent exited"
            time.sleep(0.01)
        subprocess.run(
            [tools["ssh-add"], str(key[0])],
            check=True,
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
        )
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        sock.unlink(missing_ok=True)
        directory.rmdir()


async def ssh_add_list(sock: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ssh-add",
        "-l",
        env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_forwarded_agent_lists_the_key(
    harness: Harness, agent: Path, key: tuple[Path, str]
) -> None:
    agents = SshAgents([SshSpec()], environ={"SSH_AUTH_SOCK": str(agent)})
    async with harness.open(Session(ssh=agents)) as handle, handle.ssh.forward("default") as path:
        listing = await ssh_add_list(path)
        assert key[1] in listing
        assert "dockyard-test" in listing
        # several connections, one after the other and at once
        listings = await asyncio.gather(*(ssh_add_list(path) for _ in range(4)))
        assert all(key[1] in item for item in listings)


async def test_key_files_get_their_own_agent(harness: Harness, key: tuple[Path, str]) -> None:
    need_tools("ssh-agent", "ssh-add")
    agents = SshAgents([SshSpec.parse(f"deploy={key[0]}")])
    try:
        async with (
            harness.open(Session(ssh=agents)) as handle,
            handle.ssh.forward("deploy", uid=1000, gid=1000) as path,
        ):
            assert (path.stat().st_uid, path.stat().st_gid) == (1000, 1000)
            assert key[1] in await ssh_add_list(path)
    finally:
        await agents.aclose()


@pytest.fixture
def agents_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where key-file agents make their directories (short: a socket path is 108 bytes);
    their ssh-agents are found by it."""
    directory = socket_dir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    try:
        yield directory
    finally:
        for pid in processes_with(str(directory)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


async def _connected(agents: SshAgents, id: str) -> None:
    channel = await agents.connect(id)
    await channel.aclose()


async def test_a_cancelled_close_stops_every_agent(key: tuple[Path, str], agents_dir: Path) -> None:
    """Closing is cancelled (and perhaps cancelled again) while it stops the first agent:
    the others are stopped all the same (they used to be left running, forgotten)."""
    need_tools("ssh-agent", "ssh-add")
    agents = SshAgents([SshSpec.parse(f"{id}={key[0]}") for id in ("one", "two", "three")])
    for id in ("one", "two", "three"):
        await _connected(agents, id)
    assert len(processes_with(str(agents_dir))) == 3
    closing = asyncio.ensure_future(agents.aclose())
    await asyncio.sleep(0)  # it stops the first
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert processes_with(str(agents_dir)) == []
    assert os.listdir(agents_dir) == []


async def test_an_agent_started_as_the_agents_close_is_stopped(
    key: tuple[Path, str], agents_dir: Path
) -> None:
    """A connection that starts a key file's agent while the agents close: that agent
    does not outlive them (it used to be added after the close took the agents, and
    was never stopped)."""
    need_tools("ssh-agent", "ssh-add")
    agents = SshAgents([SshSpec.parse(f"late={key[0]}")])
    connecting = asyncio.ensure_future(_connected(agents, "late"))
    await asyncio.sleep(0)  # ssh-agent is starting
    assert len(processes_with(str(agents_dir))) == 1
    await agents.aclose()
    with contextlib.suppress(SessionError):  # refused, or connected before the close
        await connecting
    await agents.aclose()  # (nothing left to stop: the first close stopped it)
    assert processes_with(str(agents_dir)) == []
    assert os.listdir(agents_dir) == []
    with pytest.raises(SessionError, match="closed"):
        await agents.connect("late")
