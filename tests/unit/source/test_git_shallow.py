"""Shallow fetches where the server allows (issue 8): a branch of a repository with
history is fetched into the repository cache as one commit deep, over ``file://``,
``git daemon`` and git's smart HTTP; a moved branch is fetched shallow again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cache import CacheManager
from dockyard.source import GitSource, GitSpec
from dockyard.testing.gitserver import GitDaemon, GitHttpServer, TestRepo

from .test_git_source import cache, read

__all__ = ["cache"]  # the fixture


@pytest.fixture
def history(tmp_path: Path) -> TestRepo:
    repo = TestRepo(tmp_path / "repos" / "proj")
    for n in range(5):
        repo.commit({"README": f"commit {n}\n"}, f"commit {n}")
    return repo


@pytest.fixture(params=["file", "git-daemon", "smart-http"])
def remote(request: pytest.FixtureRequest, history: TestRepo) -> Iterator[str]:
    repos = history.path.parent
    if request.param == "file":
        yield "file://" + str(history.path)
    elif request.param == "git-daemon":
        with GitDaemon(repos) as daemon:
            yield daemon.url("proj")
    else:
        with GitHttpServer(repos) as http:
            yield http.url("proj")


def depth(repo: Path, commit: str) -> int:
    done = subprocess.run(
        ["git", f"--git-dir={repo}", "rev-list", "--count", commit],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


async def test_a_branch_is_fetched_one_commit_deep(
    cache: CacheManager, history: TestRepo, remote: str
) -> None:
    source = GitSource(cache=cache)
    spec = GitSpec.parse_url(remote + "#main")
    _, ref = await source.fetch(spec)
    assert (await read(ref))["README"] == (b"commit 4\n", 0o644)
    head = history.rev_parse("HEAD")
    async with source._repository(spec) as repo:
        assert (repo / "shallow").read_text().split() == [head]
        assert depth(repo, head) == 1  # not the five commits of the history

    moved = history.commit({"README": "commit 5\n"}, "commit 5")
    _, ref = await source.fetch(spec)
    assert (await read(ref))["README"] == (b"commit 5\n", 0o644)
    async with source._repository(spec) as repo:
        assert depth(repo, moved) == 1
    assert source.statistics().fetches == 2
