"""Fixtures for every test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_cache_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's cache directory (``dockyard build`` remembers daemon builds there) is
    the test session's, never the home directory of whoever runs the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home(tmp_path_factory)))


def _cache_home(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-cache"
    path.mkdir(exist_ok=True)
    return path
