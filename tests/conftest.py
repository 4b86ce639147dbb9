"""Fixtures for every test."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_cache_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's cache directory (``dockyard build`` remembers daemon builds there) is
    the test session's, never the home directory of whoever runs the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home(tmp_path_factory)))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_runtime_dir(tmp_path_factory)))


@pytest.fixture(autouse=True, scope="session")
def _stop_warm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``dockyard`` commands run by tests start warm servers (cli._warm) in the session's
    runtime directory; they end with the session."""
    yield
    stop_warm_servers(_runtime_dir(tmp_path_factory) / "dockyard")


def stop_warm_servers(directory: Path) -> None:
    """SIGTERM every warm server whose pid file is in ``directory``."""
    for pidfile in directory.glob("*.sock.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def _runtime_dir(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-run"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _cache_home(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-cache"
    path.mkdir(exist_ok=True)
    return path
