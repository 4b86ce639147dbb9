"""The test servers of ``dockyard.testing``: one whose start fails is not left running
(``__exit__`` does not run when ``__enter__`` raised, and nothing else would stop it)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing import gitserver, registry
from dockyard.testing.gitserver import GitDaemon, GitSshServer
from dockyard.testing.processes import processes_with


@pytest.fixture
def leftovers() -> Iterator[list[str]]:
    """Tokens of processes a test may leave behind (killed afterwards, whatever
    happened)."""
    tokens: list[str] = []
    yield tokens
    for token in tokens:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)


def _not_listening(port: int, proc: object, what: str) -> None:
    raise RuntimeError(f"{what} did not listen on port {port}")


def test_a_git_daemon_that_does_not_listen_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leftovers: list[str]
) -> None:
    root = tmp_path / "repos"
    root.mkdir()
    token = f"--base-path={root}"
    leftovers.append(token)
    monkeypatch.setattr(gitserver, "_wait_listening", _not_listening)
    with pytest.raises(RuntimeError, match="git daemon did not listen"), GitDaemon(root):
        pass
    assert processes_with(token) == []


def test_an_sshd_that_does_not_listen_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leftovers: list[str]
) -> None:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    work = tmp_path / "sshd"
    token = str(work / "sshd_config")
    leftovers.append(token)
    monkeypatch.setattr(gitserver, "_wait_listening", _not_listening)
    with (
        pytest.raises(RuntimeError, match="sshd did not listen"),
        GitSshServer(work, "", sshd=sshd),
    ):
        pass
    assert processes_with(token) == []


def test_a_registry_that_does_not_answer_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leftovers: list[str]
) -> None:
    token = str(tmp_path / "registry" / "config.yml")
    leftovers.append(token)

    def not_ready(self: registry.RegistryProcess) -> None:
        raise RuntimeError(f"docker-registry did not answer on {self.url}")

    monkeypatch.setattr(registry.RegistryProcess, "_wait_ready", not_ready)
    with pytest.raises(RuntimeError, match="did not answer"):
        registry.start_registry(tmp_path / "registry")
    assert processes_with(token) == []
