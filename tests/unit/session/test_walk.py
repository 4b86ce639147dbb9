"""The sender's walk: order, file types, hard links, and what patterns and follow paths
select (fsutil's rules, as ``docker build`` sends a context)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from dockyard.core import NotFoundError
from dockyard.session import SyncRequest, walk
from dockyard.session._walk import ContentReader, follow_links

from .trees import write


def paths(root: Path, **kw: tuple[str, ...]) -> list[str]:
    return [e.path for e in walk(root, SyncRequest(name="x", **kw))]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    for rel in (
        "Dockerfile",
        "a-b",
        "a/b",
        "a/c/d.txt",
        "app/keep.log",
        "app/x.log",
        "app/main.py",
        "node_modules/m/index.js",
        "node_modules/m/README",
        "docs/guide/intro.md",
        "docs/guide/tmp.tmp",
    ):
        write(root, rel, rel)
    return root


def test_walk_order_is_component_wise(tree: Path) -> None:
    got = paths(tree)
    assert got == sorted(got, key=lambda p: p.split("/"))
    assert got.index("a") < got.index("a/b") < got.index("a/c") < got.index("a-b")


def test_types_links_and_sockets(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    write(root, "f", "12345", mode=0o600)
    os.symlink("f", root / "l")
    os.link(root / "f", root / "h")
    os.mkfifo(root / "p")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "s"))
        entries = {e.path: e for e in walk(root)}
    assert set(entries) == {"f", "h", "l", "p"}  # sockets are skipped
    assert entries["f"].size == 5
    assert stat.S_IMODE(entries["f"].mode) == 0o600
    assert entries["h"].is_hardlink
    assert entries["h"].linkname == "f"
    assert entries["l"].is_symlink
    assert entries["l"].linkname == "f"
    assert entries["l"].size == 0
    assert stat.S_ISFIFO(entries["p"].mode)


def test_exclude_patterns(tree: Path) -> None:
    got = paths(tree, exclude_patterns=("node_modules", "**/*.log", "!app/keep.log", "*/*/*.tmp"))
    assert "node_modules" not in got
    assert not any(p.startswith("node_modules/") for p in got)
    assert "app/keep.log" in got
    assert "app/x.log" not in got
    assert "docs/guide/tmp.tmp" not in got
    assert "docs/guide/intro.md" in got


def test_excluded_directory_with_exception_is_sent_lazily(tree: Path) -> None:
    got = paths(tree, exclude_patterns=("node_modules", "!node_modules/m/README"))
    assert [p for p in got if p.startswith("node_modules")] == [
        "node_modules",
        "node_modules/m",
        "node_modules/m/README",
    ]
    # an exception that matches nothing: the directory is not sent at all
    got = paths(tree, exclude_patterns=("docs", "!docs/nothing"))
    assert not any(p.startswith("docs") for p in got)


def test_include_patterns(tree: Path) -> None:
    assert paths(tree, include_patterns=("app",)) == [
        "app",
        "app/keep.log",
        "app/main.py",
        "app/x.log",
    ]
    assert paths(tree, include_patterns=("*/c/*.txt",)) == ["a", "a/c", "a/c/d.txt"]
    assert paths(tree, include_patterns=("app",), exclude_patterns=("**/*.log",)) == [
        "app",
        "app/main.py",
    ]
    assert paths(tree, include_patterns=("nothing",)) == []


def test_follow_paths(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    write(root, "real/Dockerfile", "FROM x")
    write(root, "real/other", "o")
    write(root, "unrelated", "u")
    os.symlink("real/Dockerfile", root / "Dockerfile")
    os.symlink("/real", root / "absdir")  # absolute: resolved inside the root
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert paths(root, include_patterns=("Dockerfile",), follow_paths=("Dockerfile",)) == [
        "Dockerfile",
        "real",
        "real/Dockerfile",
    ]
    assert follow_links(root, ("absdir/other",)) == ["absdir", "real/other"]
    assert sorted(follow_links(root, ("loop1",))) == ["loop1", "loop2"]
    # a wildcard stays a pattern; the targets of the symlinks it matches are added
    assert follow_links(root, ("Docker*",)) == ["Docker*", "real/Dockerfile"]
    assert follow_links(root, (".",)) == []


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        walk(tmp_path / "nope")
    write(tmp_path, "file", "x")
    with pytest.raises(NotFoundError, match="not a directory"):
        walk(tmp_path / "file")


def test_content_reader_batches(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    write(root, "big", b"x" * 2_500_000)
    write(root, "empty", b"")
    write(root, "small", b"abc")
    entries = walk(root)
    ids = [i for i, e in enumerate(entries)]
    reader = ContentReader(root, entries, ids)
    batches = []
    while batch := reader.next_batch(1 << 20):
        batches.append(batch)
    reader.close()
    chunks = [c for b in batches for c in b]
    assert len(batches) >= 3
    assert b"".join(c.data for c in chunks if c.id == 0) == b"x" * 2_500_000
    assert [c.id for c in chunks if c.eof] == ids
    assert [c.data for c in chunks if c.id == 2] == [b"abc"]
    # a file that vanished arrives empty
    (root / "small").unlink()
    reader = ContentReader(root, entries, [2])
    assert reader.next_batch() == [(2, b"", True)]


@pytest.mark.parametrize(
    "include",
    [
        ("src",),
        ("src", "!src/b/skip.txt"),
        ("src/b",),
        ("src/*/*.txt",),
        ("src", "!src/b"),
        ("**/keep.txt", "src/a"),
    ],
)
def test_everything_below_an_included_directory_is_walked_as_matching_says(
    tmp_path: Path, include: tuple[str, ...]
) -> None:
    """The walk stops matching inside a directory an include pattern took whole (no "!"
    patterns); what it sends must equal what the matcher says for every path."""
    from dockyard.core.pathmatch import PatternMatcher

    root = tmp_path / "ctx"
    for rel in ("src/a/x.txt", "src/a/deep/y.txt", "src/b/skip.txt", "src/b/keep.txt", "top.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    got = paths(root, include_patterns=include)
    matcher = PatternMatcher(list(include))
    every = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    files = [p for p in got if (root / p).is_file()]
    assert files == [p for p in every if matcher.matches(p)]
    for path in got:  # each directory sent leads to something sent
        if (root / path).is_dir():
            assert any(f.startswith(path + "/") for f in files)


def test_owners_travel_unless_asked_to_send_root(tmp_path: Path) -> None:
    """``docker build`` and buildx send a local context as owned by 0:0 (their
    ``resetUIDAndGID``); the walk does the same with ``owners=False``."""
    root = tmp_path / "ctx"
    write(root, "d/f", "x")
    os.symlink("f", root / "d/l")
    if os.geteuid() == 0:
        for rel in ("d", "d/f"):
            os.chown(root / rel, 1234, 5678)
        os.lchown(root / "d/l", 42, 43)
    owned = {e.path: (e.uid, e.gid) for e in walk(root)}
    assert owned == {
        rel: (os.lstat(root / rel).st_uid, os.lstat(root / rel).st_gid)
        for rel in ("d", "d/f", "d/l")
    }
    assert any(ids != (0, 0) for ids in owned.values())
    assert {(e.uid, e.gid) for e in walk(root, owners=False)} == {(0, 0)}
