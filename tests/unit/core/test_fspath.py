from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core import DockyardError, NotFoundError, PathEscapeError, PatternError
from dockyard.core.fspath import (
    clean_rel,
    contains_wildcards,
    join_within,
    match_wildcards,
    mkdir_all_in_root,
    open_dir_in_root,
    open_in_root,
    resolve_in_root,
    split_wildcards,
    wildcard_regex,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a/b/file, links pointing out of the root in several ways; outside/ beside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_text("inside")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root-passwd")
    os.symlink("/etc/passwd", root / "abs")  # absolute: means root/etc/passwd
    os.symlink("../../../../../etc", root / "up")  # climbs: clamped at root
    os.symlink(str(outside), root / "hostdir")  # absolute host path: root/<that path>
    os.symlink("a/b", root / "rel")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/missing/dir", root / "dangling")
    os.symlink("../..", root / "a" / "dotdot")
    return root


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b/file", "a/b/file"),
        ("/a/b/file", "a/b/file"),
        ("../../a/b/file", "a/b/file"),
        ("a/../../../etc/passwd", "etc/passwd"),
        ("abs", "etc/passwd"),
        ("up/passwd", "etc/passwd"),
        ("rel/file", "a/b/file"),
        ("a/dotdot/etc/passwd", "etc/passwd"),
        ("dangling/x", "missing/dir/x"),
        ("nope/../a", "a"),
        ("", ""),
        (".", ""),
        ("/", ""),
    ],
)
def test_resolve_in_root(tree: Path, path: str, expected: str) -> None:
    assert resolve_in_root(tree, path) == (tree / expected if expected else tree)


def test_resolve_host_absolute_symlink_stays_inside(tree: Path) -> None:
    got = resolve_in_root(tree, "hostdir/secret")
    assert str(got).startswith(str(tree) + "/")
    assert not got.exists()


def test_resolve_final_symlink_not_followed(tree: Path) -> None:
    assert resolve_in_root(tree, "abs", follow_final=False) == tree / "abs"
    assert resolve_in_root(tree, "rel/file", follow_final=False) == tree / "a/b/file"


def test_resolve_loop(tree: Path) -> None:
    with pytest.raises(DockyardError, match="symbolic links"):
        resolve_in_root(tree, "loop1/x")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b", "a/b"),
        ("/a//b/", "a/b"),
        ("a/./b/../c", "a/c"),
        ("", "."),
        ("/", "."),
        ("a/..", "."),
    ],
)
def test_clean_rel(path: str, expected: str) -> None:
    assert clean_rel(path) == expected


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "/../etc"])
def test_clean_rel_rejects_escapes(path: str) -> None:
    with pytest.raises(PathEscapeError):
        clean_rel(path)
    with pytest.raises(PathEscapeError):
        join_within("/r", path)


def test_join_within(tmp_path: Path) -> None:
    assert join_within(tmp_path, "/x/./y") == tmp_path / "x/y"
    assert join_within(tmp_path, ".") == tmp_path


def _read(fd: int) -> str:
    with os.fdopen(fd) as f:
        return f.read()


def test_open_in_root_follows_links_inside(tree: Path) -> None:
    assert _read(open_in_root(tree, "abs")) == "root-passwd"
    assert _read(open_in_root(tree, "up/passwd")) == "root-passwd"
    assert _read(open_in_root(tree, "rel/file")) == "inside"
    assert _read(open_in_root(tree, "a/dotdot/a/b/file")) == "inside"
    with pytest.raises(NotFoundError):
        open_in_root(tree, "hostdir/secret")


def test_open_in_root_nofollow_final(tree: Path) -> None:
    with pytest.raises(DockyardError):
        open_in_root(tree, "abs", follow_final=False)
    fd = open_in_root(tree, "abs", os.O_PATH, follow_final=False)
    try:
        assert os.readlink("", dir_fd=fd) == "/etc/passwd"
    finally:
        os.close(fd)


def test_create_through_dangling_symlink_lands_inside(tree: Path, tmp_path: Path) -> None:
    os.symlink(str(tmp_path / "outside" / "created"), tree / "evil")
    fd = open_in_root(tree, "evil", os.O_WRONLY | os.O_CREAT, 0o644, create_parents=True)
    os.write(fd, b"x")
    os.close(fd)
    assert not (tmp_path / "outside" / "created").exists()
    inside = tree / str(tmp_path / "outside" / "created").lstrip("/")
    assert inside.read_text() == "x"


def test_mkdir_all_through_symlinks(tree: Path, tmp_path: Path) -> None:
    mkdir_all_in_root(tree, "hostdir/new/deeper")
    assert not (tmp_path / "outside" / "new").exists()
    assert (tree / str(tmp_path / "outside").lstrip("/") / "new" / "deeper").is_dir()
    mkdir_all_in_root(tree, "up/sub")
    assert (tree / "etc" / "sub").is_dir()
    mkdir_all_in_root(tree, "a/b")  # existing: fine
    with pytest.raises(DockyardError, match="not a directory"):
        mkdir_all_in_root(tree, "a/b/file/x")


def test_open_dir_in_root(tree: Path) -> None:
    fd = open_dir_in_root(tree, "rel")
    try:
        assert os.path.realpath(f"/proc/self/fd/{fd}") == str(tree / "a" / "b")
    finally:
        os.close(fd)
    fd = open_dir_in_root(tree, "../..")
    try:
        assert os.path.realpath(f"/proc/self/fd/{fd}") == str(tree)
    finally:
        os.close(fd)
    with pytest.raises(NotFoundError):
        open_dir_in_root(tree, "nope")


def test_open_in_root_with_root_fd(tree: Path) -> None:
    rfd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _read(open_in_root(rfd, "/abs")) == "root-passwd"
    finally:
        os.close(rfd)


def test_open_in_root_missing_root(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        open_in_root(tmp_path / "none", "x")


def test_wildcard_helpers() -> None:
    assert all(contains_wildcards(name) for name in ("a*", "[ab]", "?"))
    assert not any(contains_wildcards(name) for name in ("a\\*b", "plain"))
    assert split_wildcards("/a/b/*.txt/c") == ("/a/b", "*.txt/c")
    assert split_wildcards("a//b") == ("/a/b", "")
    assert wildcard_regex("f[a-c]?.*").fullmatch("fb1.py")
    assert not wildcard_regex("[^a]").fullmatch("a")
    for bad in ("[a", "a\\", "[]"):
        with pytest.raises(PatternError, match="bad pattern"):
            wildcard_regex(bad)


def test_match_wildcards(tmp_path: Path) -> None:
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "b" / "x").mkdir(parents=True)
    (tmp_path / "a" / "x" / "f").write_text("f")
    (tmp_path / "b.txt").write_text("b")
    os.symlink("a", tmp_path / "link")
    found = match_wildcards(tmp_path, "*/x")
    assert found == [str(tmp_path / "a" / "x"), str(tmp_path / "b" / "x")]  # no link/x
    assert match_wildcards(tmp_path, "*.txt") == [str(tmp_path / "b.txt")]
    assert match_wildcards(tmp_path / "missing", "*") == []
    assert match_wildcards(tmp_path / "b.txt", "*") == []
    assert match_wildcards(tmp_path / "link", "*") == []  # the start is not followed
    with pytest.raises(PatternError):
        match_wildcards(tmp_path / "missing", "[")


def test_wildcards_do_not_backtrack(tmp_path: Path) -> None:
    # COPY *a*a*a*a*a*a*b against a 250-character name did not finish with re
    import time

    (tmp_path / ("a" * 250)).write_text("x")
    (tmp_path / ("a" * 249 + "b")).write_text("y")
    started = time.perf_counter()
    assert match_wildcards(tmp_path, "*a" * 6 + "*b") == [str(tmp_path / ("a" * 249 + "b"))]
    assert not wildcard_regex("*a" * 8 + "*b").fullmatch("a" * 250)
    assert wildcard_regex("*[a-c]*[^x]*?").fullmatch("abc")
    assert time.perf_counter() - started < 1.0
