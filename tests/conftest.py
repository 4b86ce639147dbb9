"""Fixtures for every test."""

from __future__ import annotations

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
    from dockyard.cli._warm import stop_servers

    stop_servers(_runtime_dir(tmp_path_factory) / "dockyard")


def _runtime_dir(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-run"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _cache_home(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-cache"
    path.mkdir(exist_ok=True)
    return path
