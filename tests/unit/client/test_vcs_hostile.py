"""The ``vcs:*`` attributes' git in a work tree whose config (anyone's clone, a directory
someone else made) names programs: the dirty check (``git status``) runs none of them —
content filters of the tree or of a submodule — and still sees changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dockyard.client._vcs import git_attributes
from dockyard.testing.gitserver import TestRepo

DIRTY = {"BUILDX_GIT_CHECK_DIRTY": "true"}


def _program(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A filter command that leaves a marker when run (and passes content through)."""
    marker = tmp_path / f"{name}-ran"
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexec cat\n")
    script.chmod(0o755)
    return script, marker


def _touch_later(path: Path) -> None:
    """Change a file's stat data but not its content (git then re-reads it through the
    file's filter to compare)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def repo(tmp_path: Path) -> TestRepo:
    if shutil.which("git") is None:
        pytest.fail("git is needed (Debian package git)")
    repo = TestRepo(tmp_path / "work")
    repo.commit({".gitattributes": "*.txt filter=evil\n", "a.txt": "a\n"}, "one")
    return repo


@pytest.mark.parametrize("kind", ["clean", "process"])
async def test_a_content_filter_of_the_config_is_not_run(
    repo: TestRepo, tmp_path: Path, kind: str
) -> None:
    script, marker = _program(tmp_path, "filter")
    repo.git("config", f"filter.evil.{kind}", str(script))
    _touch_later(repo.path / "a.txt")
    attrs = dict(await git_attributes(repo.path, {}, env=DIRTY))
    assert not marker.exists()
    assert attrs["vcs:revision"] == repo.rev_parse("HEAD")  # unchanged content: clean
    repo.write({"a.txt": "changed\n"})
    _touch_later(repo.path / "a.txt")
    attrs = dict(await git_attributes(repo.path, {}, env=DIRTY))
    assert not marker.exists()
    assert attrs["vcs:revision"] == repo.rev_parse("HEAD") + "-dirty"


async def test_a_filter_of_an_included_file_is_not_run_either(
    repo: TestRepo, tmp_path: Path
) -> None:
    script, marker = _program(tmp_path, "included")
    extra = tmp_path / "extra.gitconfig"
    extra.write_text(f'[filter "evil"]\n\tclean = {script}\n')
    repo.git("config", "include.path", str(extra))
    _touch_later(repo.path / "a.txt")
    await git_attributes(repo.path, {}, env=DIRTY)
    assert not marker.exists()


async def test_a_filter_name_git_c_cannot_carry_counts_as_dirty(
    repo: TestRepo, tmp_path: Path
) -> None:
    script, marker = _program(tmp_path, "odd")
    repo.write({".gitattributes": "*.txt filter=a=b\n"})
    repo.git("config", "filter.a=b.clean", str(script))
    repo.git("add", ".gitattributes")
    repo.git("-c", "filter.a=b.clean=cat", "commit", "-q", "-m", "odd")
    marker.unlink(missing_ok=True)
    _touch_later(repo.path / "a.txt")
    attrs = dict(await git_attributes(repo.path, {}, env=DIRTY))
    assert not marker.exists()
    assert attrs["vcs:revision"].endswith("-dirty")


async def test_a_submodules_own_config_is_not_run(repo: TestRepo, tmp_path: Path) -> None:
    sub = TestRepo(tmp_path / "sub")
    sub.commit({".gitattributes": "*.txt filter=evil2\n", "s.txt": "s\n"}, "sub")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "sub")
    repo.git("commit", "-q", "-m", "add sub")
    script, marker = _program(tmp_path, "subfilter")
    inner = TestRepo(repo.path / "sub")
    inner.git("config", "filter.evil2.clean", str(script))
    inner.git("config", "core.fsmonitor", str(script))
    _touch_later(repo.path / "sub" / "s.txt")
    attrs = dict(await git_attributes(repo.path, {}, env=DIRTY))
    assert not marker.exists()
    assert attrs["vcs:revision"] == repo.rev_parse("HEAD")


async def test_a_submodule_at_another_commit_is_still_dirty(repo: TestRepo, tmp_path: Path) -> None:
    sub = TestRepo(tmp_path / "sub")
    sub.commit({"s.txt": "s\n"}, "sub")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "sub")
    repo.git("commit", "-q", "-m", "add sub")
    inner = TestRepo(repo.path / "sub")
    inner.commit({"s.txt": "moved\n"}, "moved")  # the superproject records the old commit
    attrs = dict(await git_attributes(repo.path, {}, env=DIRTY))
    assert attrs["vcs:revision"] == repo.rev_parse("HEAD") + "-dirty"
