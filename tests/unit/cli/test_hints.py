"""The sync requests kept per context for the next build's prefetch (``cli._hints``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.cli._hints import MAX_REQUESTS, WalkHints
from dockyard.session import SyncRequest

REQUESTS = (
    SyncRequest(name="dockerfile", include_patterns=("Dockerfile",), follow_paths=("Dockerfile",)),
    SyncRequest(name="context", exclude_patterns=("*.log", "!keep.log"), follow_paths=("app",)),
)


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    return ctx


def test_saved_requests_come_back_for_the_same_context_and_dockerfile(context: Path) -> None:
    hints = WalkHints.load(str(context), None)
    assert hints is not None
    assert hints.requests == ()
    hints.save([*REQUESTS, REQUESTS[1]])  # a request made twice is kept once
    again = WalkHints.load(str(context), None)
    assert again is not None
    assert again.requests == REQUESTS
    assert again.path == hints.path
    staged = WalkHints.load(str(context), None, "build")
    assert staged is not None
    assert staged.requests == ()  # another target: its own
    other = WalkHints.load(str(context), str(context / "other.Dockerfile"))
    assert other is not None
    assert other.requests == ()


def test_unchanged_requests_are_not_written_again(context: Path) -> None:
    hints = WalkHints.load(str(context), None)
    assert hints is not None
    hints.save(REQUESTS)
    before = hints.path.stat().st_mtime_ns
    os.utime(hints.path, ns=(1, 1))
    WalkHints.load(str(context), None).save(REQUESTS)  # type: ignore[union-attr]
    assert hints.path.stat().st_mtime_ns == 1 != before
    many = [SyncRequest(name="context", follow_paths=(f"p{i}",)) for i in range(40)]
    hints.save(many)
    loaded = WalkHints.load(str(context), None)
    assert loaded is not None
    assert loaded.requests == tuple(many[:MAX_REQUESTS])


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"format": 99, "requests": []}',
        '{"format": 1, "requests": [{"name": "context"}]}',
        '{"format": 1, "requests": [{"name": 1, "include": [], "exclude": [], "follow": []}]}',
        '{"format": 1, "requests": [{"name": "c", "include": [1], "exclude": [], "follow": []}]}',
        '{"format": 1, "requests": [{"name": "c", "include": [], "exclude": ["["], "follow": []}]}',
        '{"format": 1, "requests": [{"name": "", "include": [], "exclude": [], "follow": []}]}',
        "[]",
    ],
)
def test_a_malformed_file_means_no_prefetch(context: Path, content: str) -> None:
    hints = WalkHints.load(str(context), None)
    assert hints is not None
    hints.path.parent.mkdir(parents=True)
    hints.path.write_text(content)
    loaded = WalkHints.load(str(context), None)
    assert loaded is not None
    assert loaded.requests == ()


def test_no_hints_for_a_context_that_is_not_a_directory(context: Path) -> None:
    assert WalkHints.load("-", None) is None
    assert WalkHints.load(str(context), "-") is None
    assert WalkHints.load("https://example.com/ctx.git", None) is None
    assert WalkHints.load(str(context / "missing"), None) is None
