"""The key under which a daemon keeps the synced copy of a client's context: another
user of the daemon must not be able to compute it (from the host name and the path, or
the URL), or they could attach with it, send stat entries equal to the owner's files,
and have the owner's file contents kept in their own build (security audit 2, row
110). As buildx mixes in its random node id (``.buildNodeID``), the client mixes in a
random identifier kept in the user's cache directory."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from pathlib import Path

import pytest

from dockyard.client import _context


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(_context, "_NODE_ID", None)
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def test_the_key_cannot_be_computed_from_the_host_and_path(tmp_path: Path) -> None:
    path = tmp_path / "ctx"
    guessable = f"{socket.gethostname()}:{os.path.abspath(path)}"
    key = _context.shared_key_of(path)
    assert key != hashlib.sha256(guessable.encode()).hexdigest()[:32]
    assert len(key) == 32
    assert _context.shared_key_of(path) == key  # stable: the engine's copy is reused


def test_the_identifier_is_random_private_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ctx"
    key = _context.shared_key_of(path)
    kept = tmp_path / "cache" / "dockyard" / "node-id"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    text = kept.read_text()
    assert len(text) == 32
    assert int(text, 16) >= 0
    monkeypatch.setattr(_context, "_NODE_ID", None)  # a new process reads it back
    assert _context.shared_key_of(path) == key
    # another user (another cache directory) gets another key for the same path
    monkeypatch.setattr(_context, "_NODE_ID", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    assert _context.shared_key_of(path) != key


def test_a_damaged_identifier_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = tmp_path / "cache" / "dockyard" / "node-id"
    kept.parent.mkdir(parents=True)
    kept.write_text("not hex")
    key = _context.shared_key_of(tmp_path)
    assert kept.read_text() != "not hex"
    monkeypatch.setattr(_context, "_NODE_ID", None)
    assert _context.shared_key_of(tmp_path) == key


def test_an_unwritable_cache_still_gives_a_private_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # cannot hold a directory
    guessable = f"{socket.gethostname()}:{os.path.abspath(tmp_path)}"
    key = _context.shared_key_of(tmp_path)
    assert key != hashlib.sha256(guessable.encode()).hexdigest()[:32]
    assert _context.shared_key_of(tmp_path) == key  # for this process


def test_url_contexts_are_keyed_privately_too() -> None:
    url = "https://example.com/private.git"
    key = _context.private_key(url)
    assert key != hashlib.sha256(url.encode()).hexdigest()[:32]
    assert _context.private_key(url) == key
