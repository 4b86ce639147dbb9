"""``dockyard build`` end to end, as root: a state directory holding the busybox base
image (``examples/busybox_image.py``), builds through the CLI's ``main``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import need_tools
from tests.integration.engine.conftest import store_busybox

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "greeting"


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds here run on the embedded engine of their state directory."""
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)


@pytest.fixture
async def state(busybox_rootfs: Path, tmp_path: Path, mountinfo_unchanged: None) -> Path:
    """A state directory whose image store holds busybox."""
    need_tools("crun")
    state = tmp_path / "state"
    await store_busybox(state, busybox_rootfs)
    return state


def all_bytes_under(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every regular file below ``root`` (symlinks not followed) and its content."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            yield path, path.read_bytes()


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
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
            "dockyard-build-test",
            "-f",
            str(path),
        ],
        check=True,
    )
    listing = subprocess.run(
        [tools["ssh-keygen"], "-l", "-f", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return path, listing.split()[1]


@pytest.fixture
def ssh_agent(ssh_key: tuple[Path, str]) -> Iterator[Path]:
    """A real ssh-agent holding ``ssh_key``; yields its socket (stopped by its pid)."""
    tools = need_tools("ssh-agent", "ssh-add")
    directory = Path(tempfile.mkdtemp(prefix="dy-agent-"))
    sock = directory / "agent.sock"
    proc = subprocess.Popen([tools["ssh-agent"], "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # only against a hang
        while not sock.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "ssh-agent exited"
            time.sleep(0.01)
        subprocess.run(
            [tools["ssh-add"], str(ssh_key[0])],
            check=True,
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
        )
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def ssh_add_context(ctx: Path) -> None:
    """Put this host's ``ssh-add`` and the libraries it loads under ``ctx/tools`` (at
    their absolute paths), for a busybox image to run it."""
    binary = need_tools("ssh-add")["ssh-add"]
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = [Path(binary)]
    for line in out.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/"):
                paths.append(Path(part))
                break
    for path in paths:
        dest = ctx / "tools" / path.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)  # follows symlinks: the real file at the linked name
