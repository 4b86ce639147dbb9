"""buildx's ``vcs:*`` attributes of a local context in a git work tree
(:mod:`dockyard.client._vcs`): the commit, the tracked remote's URL without
credentials, the served directories' paths in the tree; nothing outside a work tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dockyard.client._vcs import git_attributes, strip_credentials
from dockyard.testing.gitserver import TestRepo


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("https://user:pw@example.com/app.git", "https://example.com/app.git"),
        ("https://token@example.com:8443/a/b.git?x=1#main", "https://example.com:8443/a/b.git?x=1#main"),
        ("https://example.com/app.git", "https://example.com/app.git"),
        ("git@github.com:org/app.git", "git@github.com:org/app.git"),
        ("ssh://git:secret@host/repo", "ssh://host/repo"),
    ],
)  # fmt: skip
def test_strip_credentials(url: str, stripped: str) -> None:
    assert strip_credentials(url) == stripped


@pytest.fixture
def repo(tmp_path: Path) -> TestRepo:
    if shutil.which("git") is None:
        pytest.fail("git is needed (Debian package git)")
    repo = TestRepo(tmp_path / "work")
    repo.commit({"app/Dockerfile": "FROM scratch\n", "README": "x\n"}, "one")
    return repo


async def test_commit_remote_and_local_dirs(repo: TestRepo, tmp_path: Path) -> None:
    repo.git("remote", "add", "upstream", "https://other.example.com/up.git")
    repo.git("remote", "add", "origin", "https://bot:s3cr3t@example.com/team/app.git")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    attrs = dict(
        await git_attributes(
            repo.path / "app",
            {"context": repo.path / "app", "dockerfile": repo.path / "app", "other": outside},
            env={},
        )
    )
    assert attrs == {
        "vcs:revision": repo.rev_parse("HEAD"),
        "vcs:source": "https://example.com/team/app.git",  # origin before upstream
        "vcs:localdir:context": "app",
        "vcs:localdir:dockerfile": "app",
    }
    assert "s3cr3t" not in str(attrs)


async def test_dirty_only_when_asked(repo: TestRepo) -> None:
    repo.write({"README": "changed\n"})
    clean = dict(await git_attributes(repo.path, {"context": repo.path}, env={}))
    assert clean["vcs:revision"] == repo.rev_parse("HEAD")
    assert clean["vcs:localdir:context"] == "."
    assert "vcs:source" not in clean  # no remote
    dirty = dict(await git_attributes(repo.path, {}, env={"BUILDX_GIT_CHECK_DIRTY": "true"}))
    assert dirty["vcs:revision"] == repo.rev_parse("HEAD") + "-dirty"


async def test_nothing_outside_a_work_tree_or_when_off(repo: TestRepo, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert await git_attributes(plain, {"context": plain}, env={}) == ()
    assert await git_attributes(repo.path, {}, env={"BUILDX_GIT_INFO": "false"}) == ()
    assert await git_attributes(tmp_path / "missing", {}, env={}) == ()


async def test_the_work_trees_config_runs_no_program(repo: TestRepo, tmp_path: Path) -> None:
    """A clone's .git/config may name a file-system monitor that ``git status`` runs (the
    dirty check): it stays off."""
    marker = tmp_path / "ran"
    hook = tmp_path / "monitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    repo.git("config", "core.fsmonitor", str(hook))
    repo.write({"README": "changed\n"})
    attrs = dict(await git_attributes(repo.path, {}, env={"BUILDX_GIT_CHECK_DIRTY": "true"}))
    assert attrs["vcs:revision"].endswith("-dirty")
    assert not marker.exists()
