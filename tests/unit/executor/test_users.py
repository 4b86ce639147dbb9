from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core import NotFoundError, UsageError
from dockyard.executor._users import (
    ResolvedUser,
    parse_group,
    parse_passwd,
    read_in_root,
    resolve_user,
)

PASSWD = """\
# comment
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false

app:x:1000:1000:app user:/home/app:/bin/sh
short:x:1001
broken:x:notanumber:1:::
nohome:x:1002:1002::
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
wheel:x:10:app
staff:x:50: app , daemon
app:x:1000:
dup:x:10:app
nogroup:x:65534:
bad:x:nope:app
"""


def test_parse_passwd_skips_comments_and_malformed_lines() -> None:
    entries = parse_passwd(PASSWD)
    assert [e.name for e in entries] == ["root", "daemon", "app", "short", "nohome", "nobody"]
    short = entries[3]
    assert (short.uid, short.gid, short.home) == (1001, 0, "/")
    assert entries[4].home == "/"


def test_parse_group_members() -> None:
    groups = {g.name: g for g in parse_group(GROUP)}
    assert groups["staff"].members == ("app", "daemon")
    assert groups["root"].members == ()
    assert "bad" not in groups


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", ResolvedUser(uid=0, gid=0, home="/root", name="root")),
        ("root", ResolvedUser(uid=0, gid=0, home="/root", name="root")),
        (
            "app",
            ResolvedUser(
                uid=1000, gid=1000, additional_gids=(10, 50), home="/home/app", name="app"
            ),
        ),
        (
            "1000",
            ResolvedUser(
                uid=1000, gid=1000, additional_gids=(10, 50), home="/home/app", name="app"
            ),
        ),
        ("app:staff", ResolvedUser(uid=1000, gid=50, home="/home/app", name="app")),
        ("app:1", ResolvedUser(uid=1000, gid=1, home="/home/app", name="app")),
        ("app:4242", ResolvedUser(uid=1000, gid=4242, home="/home/app", name="app")),
        (
            "daemon",
            ResolvedUser(uid=1, gid=1, additional_gids=(50,), home="/usr/sbin", name="daemon"),
        ),
        ("4242", ResolvedUser(uid=4242, gid=0)),
        ("4242:4243", ResolvedUser(uid=4242, gid=4243)),
        ("4242:wheel", ResolvedUser(uid=4242, gid=10)),
        ("0:0", ResolvedUser(uid=0, gid=0, home="/root", name="root")),
    ],
)
def test_resolve_user(spec: str, expected: ResolvedUser) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


def test_unknown_user_name_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="unable to find user ghost"):
        resolve_user("ghost", PASSWD, GROUP)


def test_unknown_group_name_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="unable to find group ghosts"):
        resolve_user("app:ghosts", PASSWD, GROUP)


def test_missing_files() -> None:
    assert resolve_user("", None, None) == ResolvedUser(uid=0, gid=0)
    assert resolve_user("12:34", None, None) == ResolvedUser(uid=12, gid=34)
    with pytest.raises(NotFoundError, match="/etc/passwd missing"):
        resolve_user("app", None, None)


@pytest.mark.parametrize("spec", ["app:", ":wheel", "99999999999", "1:99999999999"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        resolve_user(spec, PASSWD, GROUP)


def test_read_in_root_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\n")
    # an absolute symlink is resolved inside the root, not on the host
    os.symlink(str(outside), root / "etc" / "passwd")
    assert read_in_root(root, "/etc/passwd") is None
    # a relative one climbing out stops at the root
    os.unlink(root / "etc" / "passwd")
    os.symlink("../../host-passwd", root / "etc" / "passwd")
    assert read_in_root(root, "/etc/passwd") is None
    (root / "host-passwd").write_text("inside:x:5:5::/:/bin/sh\n")
    assert read_in_root(root, "/etc/passwd") == "inside:x:5:5::/:/bin/sh\n"


def test_read_in_root_missing(tmp_path: Path) -> None:
    assert read_in_root(tmp_path, "/etc/group") is None
