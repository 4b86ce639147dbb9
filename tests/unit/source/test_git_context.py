"""A git repository as a remote build context (``dockyard build URL#ref:subdir``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.cache import CacheManager
from dockyard.snapshot.mount import mountpoints_under
from dockyard.source import GitContext, GitSource, fetch_git_context, parse_remote_context
from dockyard.testing.gitserver import GitDaemon, TestRepo


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[CacheManager]:
    manager = await CacheManager.open(tmp_path / "state", snapshotter="native")
    try:
        yield manager
        assert manager.statistics().in_use == 0, "cache records still in use"
    finally:
        await manager.close()
    assert not mountpoints_under(tmp_path), "mounts left behind"


def listing(root: Path) -> list[str]:
    return sorted(
        Path(d, n).relative_to(root).as_posix() for d, ds, fs in os.walk(root) for n in ds + fs
    )


async def test_git_context_at_ref_and_subdir(cache: CacheManager, tmp_path: Path) -> None:
    repo = TestRepo(tmp_path / "repos" / "app")
    repo.commit(
        {"Dockerfile": "FROM scratch\n", "web/Dockerfile": "FROM web\n", "web/index.html": "v1"}
    )
    repo.tag("v1")
    repo.commit({"web/index.html": "v2"})
    source = GitSource(cache=cache)
    with GitDaemon(tmp_path / "repos") as daemon:
        found = parse_remote_context(daemon.url("app") + "#v1:web")
        assert isinstance(found, GitContext)
        ref = await fetch_git_context(source, found)
        try:
            async with ref.mount() as root:
                assert listing(root) == ["Dockerfile", "index.html"]
                assert (root / "index.html").read_text() == "v1"
        finally:
            await ref.release()
        whole = parse_remote_context(daemon.url("app"), keep_git_dir=True)
        assert isinstance(whole, GitContext)
        ref = await fetch_git_context(source, whole)
        try:
            async with ref.mount() as root:
                assert (root / ".git").is_dir()
                assert (root / "web/index.html").read_text() == "v2"
        finally:
            await ref.release()
