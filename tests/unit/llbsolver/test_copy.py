"""Copy actions on plain directories: the destination rules as a table
(``tests/data/llbsolver/copy_cases.json``), then metadata, hard links, special files and
hostile trees."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

import dockyard.core as core
from dockyard.core import CancelledError, DockyardError, NotFoundError
from dockyard.llbsolver._actions import CopyAction
from dockyard.llbsolver._copy import copy
from dockyard.llbsolver._mode import FileMode
from dockyard.llbsolver._owner import Owner

from .trees import make_tree, read_tree

DATA = Path(__file__).parents[2] / "data" / "llbsolver"
CASES: list[dict[str, Any]] = json.loads((DATA / "copy_cases.json").read_text())
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="chown to other users needs root")


def _roots(tmp_path: Path, src: dict[str, Any], dest: dict[str, Any]) -> tuple[Path, Path]:
    return make_tree(tmp_path / "src", src), make_tree(tmp_path / "dest", dest)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_copy_table(tmp_path: Path, case: dict[str, Any]) -> None:
    src, dest = _roots(tmp_path, case["src"], case["dest"])
    action = CopyAction(**case["action"])
    before_src = read_tree(src)
    if "error" in case:
        error = getattr(core, case["error"])
        with pytest.raises(error) as info:
            copy(src, dest, action, None)
        assert str(tmp_path) not in str(info.value)  # messages name tree paths, not host paths
    else:
        copy(src, dest, action, None)
        assert read_tree(dest) == case["expect"]
    assert read_tree(src) == before_src  # the source is never changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "src"]  # nothing outside


def test_copy_keeps_modes_times_and_owner(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"d/": None, "d/f": "x", "d/s": {"link": "f"}}, {})
    os.chmod(src / "d/f", 0o751)
    os.chmod(src / "d", 0o705)
    os.utime(src / "d/f", ns=(1_000_000_001, 2_000_000_002))
    os.utime(src / "d", ns=(3_000_000_000, 4_000_000_000))
    os.utime(src / "d/s", ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
    copy(src, dest, CopyAction(src="/d", dest="/d"), None)
    f = os.lstat(dest / "d/f")
    assert stat.S_IMODE(f.st_mode) == 0o751
    assert f.st_mtime_ns == 2_000_000_002
    assert f.st_uid == os.lstat(src / "d/f").st_uid
    d = os.lstat(dest / "d")
    assert stat.S_IMODE(d.st_mode) == 0o705
    assert d.st_mtime_ns == 4_000_000_000  # set after its entries were copied in
    assert os.lstat(dest / "d/s").st_mtime_ns == 6_000_000_000


def test_copy_timestamp_override_applies_to_everything_made(tmp_path: Path) -> None:
    src, dest = _roots(
        tmp_path, {"d/": None, "d/sub/": None, "d/sub/f": "x", "d/l": {"link": "x"}}, {}
    )
    ts = 1_234_567_890_123_456_789
    copy(src, dest, CopyAction(src="/d", dest="/a/b/c", create_dest_path=True, timestamp=ts), None)
    for rel in ("a", "a/b", "a/b/c", "a/b/c/sub", "a/b/c/sub/f", "a/b/c/l"):
        st = os.lstat(dest / rel)
        assert st.st_mtime_ns == ts, rel
        assert st.st_atime_ns == ts, rel


def test_copy_mode_override_exact_and_symbolic(tmp_path: Path) -> None:
    src, dest = _roots(
        tmp_path, {"d/": None, "d/run": "x", "d/data": "y", "d/l": {"link": "run"}}, {}
    )
    os.chmod(src / "d/run", 0o755)
    os.chmod(src / "d/data", 0o640)
    os.chmod(src / "d", 0o750)
    copy(src, dest, CopyAction(src="/d", dest="/exact", mode=FileMode.bits(0o4711)), None)
    assert stat.S_IMODE(os.lstat(dest / "exact/run").st_mode) == 0o4711
    assert stat.S_IMODE(os.lstat(dest / "exact/data").st_mode) == 0o4711
    assert stat.S_IMODE(os.lstat(dest / "exact").st_mode) == 0o4711  # directories too
    assert os.path.islink(dest / "exact/l")
    copy(src, dest, CopyAction(src="/d", dest="/sym", mode=FileMode.parse("go-rwx,u+X")), None)
    assert stat.S_IMODE(os.lstat(dest / "sym/run").st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(dest / "sym/data").st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(dest / "sym").st_mode) == 0o700


def test_created_parents_are_0755(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"f": "x"}, {})
    os.chmod(src / "f", 0o600)
    copy(src, dest, CopyAction(src="/f", dest="/p/q/f", create_dest_path=True), None)
    assert stat.S_IMODE(os.lstat(dest / "p").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest / "p/q").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest / "p/q/f").st_mode) == 0o600


def test_existing_destination_directory_metadata_is_kept(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"d/": None, "d/f": "x"}, {"out/": None})
    os.chmod(src / "d", 0o700)
    os.chmod(dest / "out", 0o755)
    copy(src, dest, CopyAction(src="/d", dest="/out", dir_contents_only=True), None)
    assert stat.S_IMODE(os.lstat(dest / "out").st_mode) == 0o755


@needs_root
def test_copy_owner_override(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"d/": None, "d/f": "x", "d/l": {"link": "f"}}, {})
    os.chown(src / "d/f", 1000, 1000)
    copy(src, dest, CopyAction(src="/d", dest="/keep"), None)
    assert (os.lstat(dest / "keep/f").st_uid, os.lstat(dest / "keep/f").st_gid) == (1000, 1000)
    copy(src, dest, CopyAction(src="/d", dest="/x/y", create_dest_path=True), Owner(uid=42, gid=43))
    for rel in ("x", "x/y", "x/y/f", "x/y/l"):
        st = os.lstat(dest / rel)
        assert (st.st_uid, st.st_gid) == (42, 43), rel


@needs_root
def test_setuid_survives_the_owner_change(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"f": "x"}, {})
    os.chmod(src / "f", 0o4755)
    copy(src, dest, CopyAction(src="/f", dest="/f"), Owner(uid=5, gid=5))
    assert stat.S_IMODE(os.lstat(dest / "f").st_mode) == 0o4755


def test_hard_links_are_preserved_within_a_copy(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"d/": None, "d/a": "data", "d/sub/": None}, {})
    os.link(src / "d/a", src / "d/sub/b")
    copy(src, dest, CopyAction(src="/d", dest="/d"), None)
    a, b = os.lstat(dest / "d/a"), os.lstat(dest / "d/sub/b")
    assert a.st_ino == b.st_ino
    assert a.st_nlink == 2
    assert os.lstat(src / "d/a").st_ino != a.st_ino


def test_special_files(tmp_path: Path) -> None:
    """Pipes and sockets are left out, as BuildKit's copy leaves them out (docker 20.10's
    BuildKit: COPY of a context with a FIFO gives no FIFO, COPY of the FIFO alone gives
    nothing); a file the FIFO would replace is still removed, as there. Device nodes are
    copied."""
    src, dest = _roots(tmp_path, {"d/": None, "d/f": "x"}, {"alone": "old"})
    os.mkfifo(src / "d/fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "d/sock"))
        copy(src, dest, CopyAction(src="/d", dest="/d"), None)
        copy(src, dest, CopyAction(src="/d/fifo", dest="/alone"), None)
    assert sorted(os.listdir(dest / "d")) == ["f"]
    assert not os.path.lexists(dest / "alone")
    if ROOT:
        os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        copy(src, dest, CopyAction(src="/null", dest="/null"), None)
        assert os.lstat(dest / "null").st_rdev == os.makedev(1, 3)


def test_xattrs_are_copied(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"f": "x"}, {})
    try:
        os.setxattr(src / "f", "user.dockyard", b"v")
    except OSError:
        pytest.skip("the file system of the test directory has no user xattrs")
    copy(src, dest, CopyAction(src="/f", dest="/f"), None)
    assert os.getxattr(dest / "f", "user.dockyard") == b"v"


def test_large_file_content(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {}, {})
    data = os.urandom(3 << 20) + b"tail"
    (src / "big").write_bytes(data)
    copy(src, dest, CopyAction(src="/big", dest="/big"), None)
    assert (dest / "big").read_bytes() == data


def test_copy_from_a_tree_into_itself_elsewhere(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"a/": None, "a/f": "F"})
    copy(root, root, CopyAction(src="/a", dest="/b"), None)
    assert read_tree(root) == {"a/": None, "a/f": "F", "b/": None, "b/f": "F"}


def test_cancelled_copy_stops(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"d/": None, "d/f": "x"}, {})
    event = threading.Event()
    event.set()
    with pytest.raises(CancelledError):
        copy(src, dest, CopyAction(src="/d", dest="/d"), None, cancelled=event)


def test_symlink_loop_in_source_path_is_an_error(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"a": {"link": "b"}, "b": {"link": "a"}}, {})
    with pytest.raises(DockyardError, match="symbolic links"):
        copy(src, dest, CopyAction(src="/a/x", dest="/x"), None)


def test_hostile_source_tree_never_reads_outside(tmp_path: Path) -> None:
    """Links to host files at every level: copied as links or resolved inside the root."""
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    src, dest = _roots(
        tmp_path,
        {
            "abs": {"link": str(secret)},
            "rel": {"link": "../secret"},
            "dirlink": {"link": str(tmp_path)},
            "d/": None,
            "d/up": {"link": "../../../.."},
        },
        {},
    )
    copy(src, dest, CopyAction(src="/", dest="/all", dir_contents_only=True), None)
    tree = read_tree(dest)
    assert "host secret" not in tree.values()
    assert tree["all/abs"] == {"link": str(secret)}
    for name in ("abs", "rel"):
        with pytest.raises(NotFoundError):
            copy(src, dest, CopyAction(src=f"/{name}", dest=f"/{name}", follow_symlinks=True), None)
    with pytest.raises(NotFoundError):
        copy(src, dest, CopyAction(src="/dirlink/secret", dest="/s"), None)
    with pytest.raises(NotFoundError):
        copy(src, dest, CopyAction(src="/d/up/secret", dest="/s"), None)
    assert secret.read_text() == "host secret"


def test_files_of_the_source_layer_are_linked_when_the_copy_would_not_change_them(
    tmp_path: Path,
) -> None:
    src, dest = _roots(tmp_path, {"d/": None, "d/same": "x", "d/moded": "y"}, {})
    layer = src  # the source's own directory: here its whole tree (as the native snapshotter)
    copy(src, dest, CopyAction(src="/d", dest="/d"), None, source_layer=layer)
    assert os.lstat(dest / "d/same").st_ino == os.lstat(src / "d/same").st_ino
    assert read_tree(dest / "d") == read_tree(src / "d")

    other = make_tree(tmp_path / "other", {})
    copy(src, other, CopyAction(src="/d", dest="/d", mode=FileMode.parse("0600")), None,
         source_layer=layer)  # fmt: skip
    assert os.lstat(other / "d/same").st_ino != os.lstat(src / "d/same").st_ino  # a new mode
    assert stat.S_IMODE(os.lstat(src / "d/same").st_mode) != 0o600  # the source is untouched

    stamped = make_tree(tmp_path / "stamped", {})
    copy(src, stamped, CopyAction(src="/d", dest="/d", timestamp=1_000_000_000), None,
         source_layer=layer)  # fmt: skip
    assert os.lstat(stamped / "d/same").st_ino != os.lstat(src / "d/same").st_ino  # new times


def test_files_only_in_lower_layers_or_marked_by_overlayfs_are_copied(tmp_path: Path) -> None:
    src, dest = _roots(tmp_path, {"low": "lower", "top": "upper", "marked": "m"}, {})
    layer = make_tree(tmp_path / "layer", {"top": "upper", "marked": "m"})
    for name in ("top", "marked"):  # the layer's files are the tree's (same metadata)
        st = os.lstat(src / name)
        os.utime(layer / name, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(layer / name, stat.S_IMODE(st.st_mode))
    if ROOT:
        os.setxattr(layer / "marked", "trusted.overlay.origin", b"\0")
    copy(src, dest, CopyAction(src="/", dest="/"), None, source_layer=layer)
    assert os.lstat(dest / "top").st_ino == os.lstat(layer / "top").st_ino
    assert os.lstat(dest / "low").st_nlink == 1
    if ROOT:
        assert os.lstat(dest / "marked").st_ino != os.lstat(layer / "marked").st_ino
    assert read_tree(dest) == read_tree(src)


@pytest.mark.parametrize("linked", [("x.txt", "y.txt"), ("x.txt",), ("y.txt",)])
def test_later_sources_onto_one_name_win_over_deferred_links(
    tmp_path: Path, linked: tuple[str, ...]
) -> None:
    # COPY *.txt /glob with two matches: each is copied to /glob in turn and the last
    # one stays (BuildKit v0.8 in dockerd 20.10: /glob holds y.txt's content). A match
    # whose file is linked after the unmount must not collide with a later one.
    from dockyard.llbsolver._copy import link_deferred

    src, dest = _roots(tmp_path, {"x.txt": "x", "y.txt": "y"}, {})
    layer = make_tree(tmp_path / "layer", {name: name[0] for name in linked})
    for name in linked:
        st = os.lstat(src / name)
        os.utime(layer / name, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(layer / name, stat.S_IMODE(st.st_mode))
    deferred: list[tuple[str, str]] = []
    action = CopyAction(src="/*.txt", dest="/glob", allow_wildcard=True, create_dest_path=True)
    copy(src, dest, action, None, source_layer=layer, deferred=deferred)
    link_deferred(dest, deferred)
    assert (dest / "glob").read_text() == "y"
    assert sorted(p.name for p in dest.iterdir()) == ["glob"]


def test_hard_links_are_not_made_between_sources(tmp_path: Path) -> None:
    # BuildKit copies each source (wildcard match, copy action) on its own: files that
    # are links of one inode in the source become separate files when they are separate
    # sources (v0.8 in dockerd 20.10: COPY --from=s /o/* /d/ with a, its hard link ha
    # and la -> a gives three regular files), while a directory source keeps its links
    src, dest = _roots(tmp_path, {"o/": None, "o/a": "1", "o/la": {"link": "a"}}, {})
    os.link(src / "o/a", src / "o/ha")
    copy(src, dest, CopyAction(src="/o/*", dest="/w/", allow_wildcard=True), None)
    inodes = {os.lstat(dest / "w" / name).st_ino for name in ("a", "ha", "la")}
    assert len(inodes) == 3
    assert (dest / "w/la").read_text() == "1"
    copy(src, dest, CopyAction(src="/o", dest="/whole"), None)
    assert os.lstat(dest / "whole/a").st_ino == os.lstat(dest / "whole/ha").st_ino

    # linked from the source's own layer, across two copies into one layer
    layered = make_tree(tmp_path / "layered", {})
    claims: dict[tuple[int, int], object] = {}
    for name in ("a", "ha"):
        copy(src, layered, CopyAction(src=f"/o/{name}", dest="/m/"), None,
             source_layer=src, claims=claims)  # fmt: skip
    assert os.lstat(layered / "m/a").st_ino != os.lstat(layered / "m/ha").st_ino
    assert os.lstat(layered / "m/a").st_ino == os.lstat(src / "o/a").st_ino  # one still linked
