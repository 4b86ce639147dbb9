"""Properties of content checksums, on plain directories (no snapshotter needed)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.cache import NO_MATCH
from dockyard.cache._checksum import Selector, StatCache, compute_checksum
from dockyard.core import DockyardError, NotFoundError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes file owners")


def digest(root: Path, path: str = "/", **kw: Any) -> str:
    return str(compute_checksum(str(root), Selector(path=path, **kw)).digest)


def make_tree(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "src" / "pkg" / "data.txt").write_text("data\n")
    (root / "README.md").write_text("readme\n")
    (root / "notes.txt").write_text("notes\n")
    (root / "logs").mkdir()
    (root / "logs" / "a.log").write_text("log a\n")
    os.symlink("src/main.py", root / "link")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    make_tree(root)
    return root


def test_digest_form_and_determinism(tree: Path, tmp_path: Path) -> None:
    d = digest(tree)
    assert d.startswith("sha256:")
    assert len(d) == 71
    assert digest(tree) == d
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, symlinks=True)
    assert digest(copy) == d  # a copy (new inodes, new times) has the same digest


def test_mtime_and_atime_do_not_count(tree: Path) -> None:
    before = {p: digest(tree, p) for p in ("/", "/src", "/src/main.py", "/link")}
    for path in [*tree.rglob("*"), tree]:
        os.utime(path, (1_000_000, 2_000_000), follow_symlinks=False)
    after = {p: digest(tree, p) for p in before}
    assert after == before


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: (r / "src" / "main.py").write_text("print('bye')\n"), id="content"),
        pytest.param(lambda r: os.chmod(r / "src" / "main.py", 0o755), id="mode"),
        pytest.param(lambda r: os.chmod(r / "src", 0o700), id="dir-mode"),
        pytest.param(lambda r: os.chmod(r / "src" / "main.py", 0o4644), id="setuid"),
        pytest.param(lambda r: (r / "src" / "new").write_text(""), id="added-empty-file"),
        pytest.param(lambda r: (r / "src" / "pkg" / "data.txt").unlink(), id="removed"),
        pytest.param(
            lambda r: (r / "src" / "pkg" / "data.txt").rename(r / "src" / "pkg" / "data2.txt"),
            id="renamed",
        ),
        pytest.param(lambda r: (r / "src" / "empty").mkdir(), id="added-empty-dir"),
        pytest.param(lambda r: os.setxattr(r / "src" / "main.py", "user.tag", b"v"), id="xattr"),
    ],
)
def test_changes_that_count(tree: Path, change: Callable[[Path], object]) -> None:
    before = digest(tree)
    before_src = digest(tree, "/src")
    change(tree)
    assert digest(tree) != before
    assert digest(tree, "/src") != before_src


def test_xattrs_can_be_left_out(tree: Path) -> None:
    before = digest(tree, xattrs=False)
    os.setxattr(tree / "src" / "main.py", "user.tag", b"v")
    assert digest(tree, xattrs=False) == before


@needs_root
@pytest.mark.parametrize("ids", [(1000, 0), (0, 1000)], ids=["uid", "gid"])
def test_owner_counts(tree: Path, ids: tuple[int, int]) -> None:
    before = digest(tree, "/src/main.py")
    os.lchown(tree / "src" / "main.py", *ids)
    assert digest(tree, "/src/main.py") != before
    os.lchown(tree / "link", *ids)
    assert digest(tree, "/link") != digest(tree, "/link", follow_links=True)


def test_symlink_is_hashed_as_link_unless_followed(tree: Path) -> None:
    link = digest(tree, "/link")
    followed = digest(tree, "/link", follow_links=True)
    assert followed == digest(tree, "/src/main.py")
    assert link != followed
    # retargeting the link changes its digest, not the target's
    os.unlink(tree / "link")
    os.symlink("src/pkg/mod.py", tree / "link")
    assert digest(tree, "/link") != link
    # a file with the link's target as content is not a link
    os.unlink(tree / "link")
    (tree / "link").write_text("src/main.py")
    assert digest(tree, "/link") != link


def test_file_types_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").mkdir()
    (b / "x").write_text("")
    os.chmod(b / "x", stat.S_IMODE(os.stat(a / "x").st_mode))
    assert digest(a) != digest(b)
    os.mkfifo(tmp_path / "fifo")
    assert digest(tmp_path, "/fifo") != digest(b, "/x")


def test_hard_links_hash_like_copies(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("same")
    os.link(a / "f", a / "g")
    (b / "f").write_text("same")
    (b / "g").write_text("same")
    assert digest(a) == digest(b)


def test_parent_symlinks_resolve_inside_root(tree: Path) -> None:
    os.symlink("src", tree / "srclink")
    assert digest(tree, "/srclink/pkg") == digest(tree, "/src/pkg")
    assert digest(tree, "srclink/../src/main.py") == digest(tree, "/src/main.py")


def test_symlink_escapes_are_contained(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "secret").write_text("inner")
    (root / "outside").mkdir()
    (root / "outside" / "secret").write_text("inner")
    os.symlink("../outside/secret", root / "rel")
    os.symlink(str(outside / "secret"), root / "abs")
    os.symlink("/etc", root / "etcdir")
    os.symlink("../../../../..", root / "up")
    inner = digest(root, "/etc/secret")
    # followed links resolve as if root were /: never the host's files
    assert digest(root, "/rel", follow_links=True) == digest(root, "/outside/secret")
    assert digest(root, "/etcdir/secret") == inner
    assert digest(root, "/up/etc/secret") == inner
    assert digest(root, "/../../etc/secret") == inner
    with pytest.raises(NotFoundError):
        digest(root, "/abs", follow_links=True)  # <root>/<tmp>/outside/secret is not there
    # a link inside a walked tree is hashed as a link, never followed
    whole = digest(root)
    (outside / "secret").write_text("changed on the host")
    assert digest(root) == whole


def test_missing_path(tree: Path) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        digest(tree, "/nope")
    with pytest.raises(NotFoundError):
        digest(tree, "/README.md/inside")


def test_exclude_patterns_scope_the_digest(tree: Path) -> None:
    kw: dict[str, Any] = {"exclude_patterns": ("*.txt", "logs")}
    before = digest(tree, **kw)
    (tree / "notes.txt").write_text("changed")
    (tree / "logs" / "b.log").write_text("new log")
    (tree / "extra.txt").write_text("x")
    assert digest(tree, **kw) == before
    # deeper .txt files are not matched by "*.txt" (patterns are anchored)
    (tree / "src" / "pkg" / "data.txt").write_text("changed")
    assert digest(tree, **kw) != before


def test_exclude_with_exception_and_double_star(tree: Path) -> None:
    kw: dict[str, Any] = {"exclude_patterns": ("**/*.txt", "!src/pkg/data.txt")}
    before = digest(tree, **kw)
    (tree / "notes.txt").write_text("changed")
    assert digest(tree, **kw) == before
    (tree / "src" / "pkg" / "data.txt").write_text("changed")
    assert digest(tree, **kw) != before


def test_excluded_dir_kept_for_reincluded_child(tree: Path) -> None:
    kw: dict[str, Any] = {"exclude_patterns": ("logs", "!logs/a.log")}
    before = digest(tree, **kw)
    (tree / "logs" / "b.log").write_text("ignored")
    assert digest(tree, **kw) == before
    (tree / "logs" / "a.log").write_text("counted")
    assert digest(tree, **kw) != before


def test_include_patterns_scope_the_digest(tree: Path) -> None:
    kw: dict[str, Any] = {"include_patterns": ("src/pkg", "*.md")}
    before = digest(tree, **kw)
    (tree / "notes.txt").write_text("changed")
    (tree / "src" / "main.py").write_text("changed")
    (tree / "logs" / "a.log").write_text("changed")
    assert digest(tree, **kw) == before
    (tree / "src" / "pkg" / "mod.py").write_text("changed")
    assert digest(tree, **kw) != before
    after = digest(tree, **kw)
    (tree / "README.md").write_text("changed")
    assert digest(tree, **kw) != after
    # the parent of an included path counts with its metadata
    after = digest(tree, **kw)
    os.chmod(tree / "src", 0o700)
    assert digest(tree, **kw) != after


def test_patterns_are_relative_to_the_selected_path(tree: Path) -> None:
    kw: dict[str, Any] = {"exclude_patterns": ("*.txt",)}
    before = digest(tree, "/src/pkg", **kw)
    (tree / "src" / "pkg" / "data.txt").write_text("changed")
    assert digest(tree, "/src/pkg", **kw) == before
    (tree / "src" / "pkg" / "mod.py").write_text("changed")
    assert digest(tree, "/src/pkg", **kw) != before


def test_filtering_nothing_equals_unfiltered(tree: Path) -> None:
    assert digest(tree, exclude_patterns=("nothing-matches",)) == digest(tree)
    assert digest(tree, include_patterns=("**",)) == digest(tree)


def test_invalid_pattern(tree: Path) -> None:
    with pytest.raises(DockyardError, match="pattern"):
        digest(tree, exclude_patterns=("[",))


def test_wildcards(tree: Path) -> None:
    kw: dict[str, Any] = {"wildcard": True}
    txt = digest(tree, "/*.txt", **kw)
    assert txt != NO_MATCH
    (tree / "README.md").write_text("not matched")
    (tree / "src" / "deep.txt").write_text("not matched either")
    assert digest(tree, "/*.txt", **kw) == txt
    (tree / "other.txt").write_text("matched")
    with_other = digest(tree, "/*.txt", **kw)
    assert with_other != txt
    (tree / "other.txt").rename(tree / "renamed.txt")
    assert digest(tree, "/*.txt", **kw) != with_other  # names of matches count
    # a component in the middle, a class, and no match at all
    assert digest(tree, "/src/*/mod.py", **kw) != NO_MATCH
    assert digest(tree, "/src/pk[a-g]", **kw) == digest(tree, "/src/pk[a-g]", **kw)
    assert digest(tree, "/*.none", **kw) == NO_MATCH
    assert digest(tree, "/missing/*", **kw) == NO_MATCH
    # a path without wildcards is a plain selection
    assert digest(tree, "/src/main.py", **kw) == digest(tree, "/src/main.py")
    with pytest.raises(NotFoundError):
        digest(tree, "/missing", **kw)


def test_wildcard_does_not_descend_through_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_text("f")
    os.symlink("real", root / "linked")
    one = digest(root, "/*/f", wildcard=True)
    (root / "real" / "f").write_text("g")
    two = digest(root, "/*/f", wildcard=True)
    assert one != two
    shutil.rmtree(root / "real")
    (root / "real").mkdir()
    (root / "real" / "f").write_text("g")
    assert digest(root, "/*/f", wildcard=True) == two  # only real/f ever matched


def make_many(root: Path, n: int) -> list[Path]:
    files = []
    for i in range(n):
        d = root / f"d{i // 500:03d}"
        if i % 500 == 0:
            d.mkdir()
        f = d / f"f{i:05d}.txt"
        f.write_bytes(b"%d\n" % i)
        files.append(f)
    return files


def test_stat_cache_rehashes_only_changed_files(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    files = make_many(root, 20_000)
    cache = StatCache(entries={}, racy_ns=0)
    sel = Selector(path="/")
    first = compute_checksum(str(root), sel, cache)
    assert first.files_hashed == 20_000
    again = compute_checksum(str(root), sel, cache)
    assert again.files_hashed == 0
    assert again.digest == first.digest
    files[12_345].write_bytes(b"changed\n")
    changed = compute_checksum(str(root), sel, cache)
    assert changed.files_hashed == 1
    assert changed.digest != first.digest
    assert changed.digest == compute_checksum(str(root), sel).digest
    # a touched file is read again (its mtime changed) and its digest is the same
    os.utime(files[7], (1, 1))
    touched = compute_checksum(str(root), sel, cache)
    assert touched.files_hashed == 1
    assert touched.digest == changed.digest
    # a file replaced by one of the same size, mode and mtime has a new inode and ctime
    st = files[99].stat()
    files[99].unlink()
    files[99].write_bytes(b"99\n".replace(b"9", b"8"))
    os.utime(files[99], ns=(st.st_atime_ns, st.st_mtime_ns))
    replaced = compute_checksum(str(root), sel, cache)
    assert replaced.files_hashed == 1
    assert replaced.digest != touched.digest


def test_stat_cache_with_filters_and_subpaths(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    make_many(root, 1_000)
    cache = StatCache(entries={}, racy_ns=0)
    compute_checksum(str(root), Selector(path="/"), cache)
    sub = compute_checksum(str(root), Selector(path="/d001"), cache)
    assert sub.files_hashed == 0
    assert sub.digest == compute_checksum(str(root), Selector(path="/d001")).digest
    filtered = compute_checksum(str(root), Selector(path="/", exclude_patterns=("d000",)), cache)
    assert filtered.files_hashed == 0


def test_racy_files_are_not_remembered(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    make_many(root, 10)
    cache = StatCache(entries={}, racy_ns=3600 * 10**9)
    compute_checksum(str(root), Selector(path="/"), cache)
    assert cache.entries == {}
    assert compute_checksum(str(root), Selector(path="/"), cache).files_hashed == 10


def test_stat_cache_forgets_removed_files(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    files = make_many(root, 10)
    cache = StatCache(entries={}, racy_ns=0)
    compute_checksum(str(root), Selector(path="/"), cache)
    assert "d000/f00000.txt" in cache.entries
    cache.take_changes()
    files[0].unlink()
    compute_checksum(str(root), Selector(path="/"), cache)
    assert "d000/f00000.txt" not in cache.entries
    _, removed = cache.take_changes()
    assert removed == {"d000/f00000.txt"}
