"""mkdir, mkfile, rm and symlink on plain directories; owners from /etc files; parsing
LLB file actions into values."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.api import ops as pb
from dockyard.core import DockyardError, InvalidDefinitionError, NotFoundError, PathEscapeError
from dockyard.llbsolver._actions import (
    CopyAction,
    MkdirAction,
    MkfileAction,
    RmAction,
    SymlinkAction,
    parse_action,
)
from dockyard.llbsolver._fsops import mkdir, mkfile, rm, symlink
from dockyard.llbsolver._glob import resolve_wildcards, split_wildcards
from dockyard.llbsolver._mode import FileMode
from dockyard.llbsolver._owner import ChownSpec, Owner, UserRef, resolve_owner

from .trees import make_tree, read_tree

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="chown to other users needs root")
TS = 1_700_000_000_000_000_001


# -- mkdir --------------------------------------------------------------------------


def test_mkdir(tmp_path: Path) -> None:
    mkdir(tmp_path, MkdirAction(path="/d", mode=0o701, timestamp=TS), None)
    st = os.lstat(tmp_path / "d")
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o701  # exact: no umask
    assert st.st_mtime_ns == TS


def test_mkdir_existing_is_left_alone(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/": None, "f": "x"})
    os.chmod(tmp_path / "d", 0o700)
    mkdir(tmp_path, MkdirAction(path="/d", mode=0o755), None)
    mkdir(tmp_path, MkdirAction(path="/f", mode=0o755), None)  # BuildKit: EEXIST is fine
    assert stat.S_IMODE(os.lstat(tmp_path / "d").st_mode) == 0o700
    assert (tmp_path / "f").read_text() == "x"


def test_mkdir_without_parents_needs_the_parent(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="parent"):
        mkdir(tmp_path, MkdirAction(path="/a/b"), None)


def test_mkdir_parents(tmp_path: Path) -> None:
    mkdir(tmp_path, MkdirAction(path="/a/b/c", mode=0o711, parents=True, timestamp=TS), None)
    for rel in ("a", "a/b", "a/b/c"):
        st = os.lstat(tmp_path / rel)
        assert stat.S_IMODE(st.st_mode) == 0o711, rel
        assert st.st_mtime_ns == TS, rel  # parents keep their time after children appear


def test_mkdir_parents_through_a_file_fails(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": "file"})
    with pytest.raises(DockyardError, match="not a directory"):
        mkdir(tmp_path, MkdirAction(path="/a/b", parents=True), None)


def test_mkdir_through_an_absolute_symlink_stays_inside(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"etc": {"link": "/nonexistent/dir"}})
    mkdir(root, MkdirAction(path="/etc/sub", parents=True), None)
    assert os.path.isdir(root / "nonexistent/dir/sub")
    assert not Path("/nonexistent").exists()


@needs_root
def test_mkdir_owner(tmp_path: Path) -> None:
    mkdir(tmp_path, MkdirAction(path="/a/b", parents=True), Owner(uid=7, gid=8))
    for rel in ("a", "a/b"):
        st = os.lstat(tmp_path / rel)
        assert (st.st_uid, st.st_gid) == (7, 8)


# -- mkfile -------------------------------------------------------------------------


def test_mkfile(tmp_path: Path) -> None:
    mkfile(tmp_path, MkfileAction(path="/f", data=b"hello\0", mode=0o640, timestamp=TS), None)
    st = os.lstat(tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"hello\0"
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == TS
    assert sorted(os.listdir(tmp_path)) == ["f"]  # no staging file left


def test_mkfile_through_a_symlink_stays_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    root = make_tree(
        tmp_path / "root", {"f": {"link": str(outside)}, "g": {"link": "/data/g"}, "data/": None}
    )
    # BuildKit resolves a final link inside the root: the file goes where it points there
    with pytest.raises(NotFoundError):
        mkfile(root, MkfileAction(path="/f", data=b"new", mode=0o644), None)
    mkfile(root, MkfileAction(path="/g", data=b"new", mode=0o644), None)
    assert outside.read_text() == "untouched"
    assert (root / "data/g").read_text() == "new"
    assert os.readlink(root / "g") == "/data/g"


def test_mkfile_replaces_a_fifo_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    mkfile(tmp_path, MkfileAction(path="/p", data=b"x", mode=0o644), None)
    assert stat.S_ISREG(os.lstat(tmp_path / "p").st_mode)


def test_mkfile_errors(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/": None})
    with pytest.raises(NotFoundError, match="parent"):
        mkfile(tmp_path, MkfileAction(path="/missing/f"), None)
    with pytest.raises(DockyardError, match="directory"):
        mkfile(tmp_path, MkfileAction(path="/d"), None)
    with pytest.raises(DockyardError, match="directory"):
        mkfile(tmp_path, MkfileAction(path="/"), None)
    with pytest.raises(PathEscapeError):
        mkfile(tmp_path, MkfileAction(path="../f"), None)
    assert sorted(os.listdir(tmp_path)) == ["d"]
    assert os.listdir(tmp_path / "d") == []


@needs_root
def test_mkfile_owner(tmp_path: Path) -> None:
    mkfile(tmp_path, MkfileAction(path="/f", data=b"", mode=0o4755), Owner(uid=9, gid=10))
    st = os.lstat(tmp_path / "f")
    assert (st.st_uid, st.st_gid) == (9, 10)


# -- rm -----------------------------------------------------------------------------


def test_rm(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/": None, "d/x": "1", "f": "2", "keep": "3"})
    rm(tmp_path, RmAction(path="/d"))
    rm(tmp_path, RmAction(path="f"))
    assert read_tree(tmp_path) == {"keep": "3"}


def test_rm_missing(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        rm(tmp_path, RmAction(path="/nope"))
    rm(tmp_path, RmAction(path="/nope", allow_not_found=True))
    rm(tmp_path, RmAction(path="/nope/deeper", allow_not_found=True))


def test_rm_removes_a_symlink_not_its_target(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "root",
        {"d/": None, "d/x": "1", "l": {"link": "d"}, "dangling": {"link": "/nowhere"}},
    )
    rm(root, RmAction(path="/l"))
    rm(root, RmAction(path="/dangling"))  # exists as a link, though its target does not
    assert read_tree(root) == {"d/": None, "d/x": "1"}


def test_rm_through_a_symlinked_parent_stays_inside(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"victim": "v"})
    root = make_tree(tmp_path / "root", {"p": {"link": str(outside)}})
    rm(root, RmAction(path="/p/victim", allow_not_found=True))
    assert (outside / "victim").read_text() == "v"


def test_rm_wildcard(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.log": "", "b.log": "", "c.txt": "", "d/": None, "d/e.log": ""})
    rm(tmp_path, RmAction(path="/*.log", allow_wildcard=True))
    assert read_tree(tmp_path) == {"c.txt": "", "d/": None, "d/e.log": ""}
    rm(tmp_path, RmAction(path="/*.none", allow_wildcard=True))  # no match: nothing to do


def test_rm_root_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path, {"f": ""})
    for path in ("/", ".", "/..", "/."):
        with pytest.raises(DockyardError):
            rm(tmp_path, RmAction(path=path))
    assert read_tree(tmp_path) == {"f": ""}


# -- symlink ------------------------------------------------------------------------


def test_symlink(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/": None})
    symlink(tmp_path, SymlinkAction(oldpath="/etc/passwd", newpath="/d/pw", timestamp=TS), None)
    assert os.readlink(tmp_path / "d/pw") == "/etc/passwd"
    assert os.lstat(tmp_path / "d/pw").st_mtime_ns == TS


def test_symlink_errors(tmp_path: Path) -> None:
    make_tree(tmp_path, {"f": "x", "l": {"link": "/nowhere"}})
    with pytest.raises(DockyardError, match="exists"):
        symlink(tmp_path, SymlinkAction(oldpath="x", newpath="/f"), None)
    with pytest.raises(DockyardError, match="exists"):
        symlink(tmp_path, SymlinkAction(oldpath="x", newpath="/l"), None)  # not followed
    with pytest.raises(NotFoundError):
        symlink(tmp_path, SymlinkAction(oldpath="x", newpath="/missing/l"), None)
    assert not Path("/nowhere").exists()


@needs_root
def test_symlink_owner(tmp_path: Path) -> None:
    symlink(tmp_path, SymlinkAction(oldpath="t", newpath="/l"), Owner(uid=3, gid=4))
    st = os.lstat(tmp_path / "l")
    assert (st.st_uid, st.st_gid) == (3, 4)


# -- wildcards ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c", ("/a/b/c", "")),
        ("/a/*/c", ("/a", "*/c")),
        ("/*", ("/", "*")),
        ("/a/b?", ("/a", "b?")),
        ("/a/[x]y/z", ("/a", "[x]y/z")),
        ("/a/\\*/z", ("/a/\\*/z", "")),
    ],
)
def test_split_wildcards(path: str, expected: tuple[str, str]) -> None:
    assert split_wildcards(path) == expected


def test_resolve_wildcards_order_and_links(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"b/": None, "b/x": "", "a/": None, "a/x": "", "a/y": "", "l": {"link": "a"}, "c": ""},
    )
    assert resolve_wildcards(tmp_path, "/*/x", follow_links=False) == ["a/x", "b/x"]
    assert resolve_wildcards(tmp_path, "/*", follow_links=False) == ["a", "b", "c", "l"]
    # a symlinked directory is not searched, unless it is the base and links are followed
    assert resolve_wildcards(tmp_path, "/l/*", follow_links=False) == []
    assert resolve_wildcards(tmp_path, "/l/*", follow_links=True) == ["a/x", "a/y"]
    assert resolve_wildcards(tmp_path, "/missing/*", follow_links=False) == []


def test_bad_wildcard_pattern(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinitionError, match="bad pattern"):
        resolve_wildcards(tmp_path, "/[a", follow_links=False)


# -- owners -------------------------------------------------------------------------

PASSWD = "root:x:0:0::/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:app\n"


def _etc(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "etcroot", {"etc/": None, "etc/passwd": PASSWD, "etc/group": GROUP})


def test_resolve_owner(tmp_path: Path) -> None:
    root = _etc(tmp_path)

    def root_for(index: int) -> Path | None:
        return root if index == 0 else None

    def spec(user: UserRef | None, group: UserRef | None = None) -> ChownSpec:
        return ChownSpec(user=user, group=group)

    assert resolve_owner(None, root_for) is None
    assert resolve_owner(spec(UserRef(id=5)), root_for) == Owner(uid=5, gid=5)
    assert resolve_owner(spec(UserRef(name="app", input=0)), root_for) == Owner(uid=1000, gid=1001)
    assert resolve_owner(
        spec(UserRef(name="app", input=0), UserRef(name="staff", input=0)), root_for
    ) == Owner(uid=1000, gid=50)
    assert resolve_owner(spec(UserRef(id=5), UserRef(id=6)), root_for) == Owner(uid=5, gid=6)
    assert resolve_owner(spec(None, UserRef(name="staff", input=0)), root_for) == Owner(
        uid=0, gid=50
    )
    with pytest.raises(NotFoundError, match="'nobody' not found"):
        resolve_owner(spec(UserRef(name="nobody", input=0)), root_for)
    with pytest.raises(NotFoundError, match="group 'wheel'"):
        resolve_owner(spec(UserRef(id=1), UserRef(name="wheel", input=0)), root_for)
    with pytest.raises(NotFoundError, match="empty"):
        resolve_owner(spec(UserRef(name="app", input=1)), root_for)


def test_owner_lookup_never_reads_a_host_file(tmp_path: Path) -> None:
    # the host has /etc/group; the tree has none: the lookup must not find the host one
    root = make_tree(
        tmp_path / "r", {"etc/": None, "etc/passwd": {"link": "../../../../../etc/group"}}
    )
    with pytest.raises(NotFoundError):
        resolve_owner(ChownSpec(user=UserRef(name="root", input=0)), lambda _: root)


# -- parsing LLB file actions -------------------------------------------------------


def test_parse_copy_action() -> None:
    action = pb.FileAction(input=0, secondaryInput=1, output=0)
    c = action.copy
    c.src, c.dest, c.mode, c.timestamp = "/a", "/b/", -1, -1
    c.followSymlink = c.dirCopyContents = c.allowWildcard = True
    c.owner.user.byName.name, c.owner.user.byName.input = "app", 0
    c.owner.group.byID = 7
    c.include_patterns.append("*.go")
    parsed = parse_action(action)
    assert isinstance(parsed, CopyAction)
    assert parsed.mode is None
    assert parsed.timestamp is None
    assert parsed.owner == ChownSpec(user=UserRef(name="app", input=0), group=UserRef(id=7))
    assert parsed.follow_symlinks
    assert parsed.dir_contents_only
    assert parsed.allow_wildcard
    assert parsed.include_patterns == ("*.go",)
    c.modeStr = "u+x"
    parsed = parse_action(action)
    assert isinstance(parsed, CopyAction)
    assert parsed.mode == FileMode.parse("u+x")
    c.modeStr = ""
    c.mode = 0o755
    parsed = parse_action(action)
    assert isinstance(parsed, CopyAction)
    assert parsed.mode == FileMode.bits(0o755)


def _copy(**fields: object) -> pb.FileAction:
    fields.setdefault("mode", -1)
    return pb.FileAction(copy=pb.FileActionCopy(**fields))  # type: ignore[arg-type]


_BAD_ACTIONS = [
    (_copy(src="", dest="/x"), "empty source"),
    (_copy(src="/a", dest=""), "empty destination"),
    (_copy(src="/a", dest="/b", modeStr="u+q"), "invalid mode"),
    (_copy(src="/a", dest="/b", mode=-7), "invalid copy mode"),
    (_copy(src="/a", dest="/b", include_patterns=["[a"]), "include pattern"),
    (_copy(src="/a", dest="/b", exclude_patterns=["a\\"]), "exclude pattern"),
    (_copy(src="/[a", dest="/b", allowWildcard=True), "bad pattern"),
    (pb.FileAction(mkdir=pb.FileActionMkDir(path="")), "empty path"),
    (pb.FileAction(mkfile=pb.FileActionMkFile(path="")), "empty path"),
    (pb.FileAction(rm=pb.FileActionRm(path="")), "empty path"),
    (pb.FileAction(rm=pb.FileActionRm(path="/[", allowWildcard=True)), "bad pattern"),
    (pb.FileAction(symlink=pb.FileActionSymlink(oldpath="", newpath="/x")), "empty target"),
    (pb.FileAction(symlink=pb.FileActionSymlink(oldpath="x", newpath="")), "empty new path"),
    (
        pb.FileAction(
            mkfile=pb.FileActionMkFile(
                path="/x", owner=pb.ChownOpt(user=pb.UserOpt(byName=pb.NamedUserOpt(name="")))
            )
        ),
        "empty name",
    ),
    (pb.FileAction(), "unknown file action"),
]


@pytest.mark.parametrize(("action", "message"), _BAD_ACTIONS)
def test_parse_errors(action: pb.FileAction, message: str) -> None:
    with pytest.raises(InvalidDefinitionError, match=message):
        parse_action(action)


def test_parse_simple_actions() -> None:
    a = pb.FileAction()
    a.mkdir.MergeFrom(pb.FileActionMkDir(path="/d", mode=0o40755, makeParents=True, timestamp=5))
    assert parse_action(a) == MkdirAction(path="/d", mode=0o755, parents=True, timestamp=5)
    a = pb.FileAction()
    a.mkfile.MergeFrom(pb.FileActionMkFile(path="/f", mode=0o600, data=b"x", timestamp=-1))
    assert parse_action(a) == MkfileAction(path="/f", mode=0o600, data=b"x")
    a = pb.FileAction()
    a.rm.MergeFrom(pb.FileActionRm(path="/r", allowNotFound=True))
    assert parse_action(a) == RmAction(path="/r", allow_not_found=True)
    a = pb.FileAction()
    a.symlink.MergeFrom(pb.FileActionSymlink(oldpath="t", newpath="/l", timestamp=-1))
    assert parse_action(a) == SymlinkAction(oldpath="t", newpath="/l")
