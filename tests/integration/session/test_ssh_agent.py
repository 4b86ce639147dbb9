"""SSH agent forwarding with a real ssh-agent: ``ssh-add -l`` against the forwarded
socket lists the client's key, in-process and over gRPC."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.session import Session, SshAgents, SshSpec
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
