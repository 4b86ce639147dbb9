"""The comparison harness itself: layers applied with whiteouts, opaque directories and
hard links; tree lines relative to a base; documented overrides; the peer's FROM."""

from __future__ import annotations

import io
import tarfile

import pytest

from . import cases as c
from .images import Entry, flatten, line_path, tree_lines
from .test_e2e import steps_that_ran


def layer(*entries: tuple[str, str, bytes | str]) -> bytes:
    """A layer tar of ``(name, kind, data)``: kind file (data), dir, link (hard link to
    data), symlink (to data)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.mode, info.size = 0o644, len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_whiteouts_opaque_directories_and_hard_links() -> None:
    lower = layer(
        ("etc", "dir", ""),
        ("etc/a", "file", b"a"),
        ("etc/b", "file", b"b"),
        ("opt", "dir", ""),
        ("opt/old", "file", b"old"),
        ("./var", "dir", ""),
    )
    upper = layer(
        ("etc/.wh.a", "file", b""),
        ("opt/.wh..wh..opq", "file", b""),
        ("opt/new", "file", b"new"),
        ("etc/b2", "link", "etc/b"),
        ("var/link", "symlink", "../etc/b"),
    )
    tree = flatten([lower, upper])
    assert sorted(tree) == ["/etc", "/etc/b", "/etc/b2", "/opt", "/opt/new", "/var", "/var/link"]
    assert tree["/etc/b2"] == tree["/etc/b"]
    assert tree["/var/link"].target == "../etc/b"


def test_tree_lines_relative_to_a_base() -> None:
    base = {
        "/etc": Entry(kind="dir", mode=0o755, uid=0, gid=0),
        "/home": Entry(kind="dir", mode=0o755, uid=0, gid=0),
        "/home/app": Entry(kind="dir", mode=0o755, uid=1000, gid=1000),
        "/etc/keep": Entry(kind="file", mode=0o644, uid=0, gid=0, size=1, digest="x"),
    }
    tree = {
        "/etc": base["/etc"],
        "/etc/keep": Entry(kind="file", mode=0o600, uid=0, gid=0, size=1, digest="x"),
        "/with space": Entry(kind="symlink", mode=0o777, uid=0, gid=0, target="/etc"),
    }
    lines = tree_lines(tree, base)
    # the removed directory is listed, not what it held
    assert lines == [
        "/etc/keep file 0600 0:0 1 x",
        "/home removed",
        '"/with space" symlink 0777 0:0 -> /etc',
    ]
    assert line_path(lines[2]) == "/with space"


def test_overrides_replace_remove_and_set_config_values() -> None:
    peer = c.Result(
        tree=["/a file 0644 0:0 1 x", "/stub dir 0755 0:0"],
        config={"history": [{"created_by": "old", "empty_layer": True}], "User": "x"},
    )
    result = c.apply_overrides(
        peer,
        (
            c.Override(path="/stub", expect="", reason="r"),
            c.Override(path="/a", expect="/a file 0600 0:0 1 x", reason="r"),
            c.Override(path="config:history.0.created_by", expect='"new"', reason="r"),
            c.Override(path="config:User", expect="", reason="r"),
        ),
    )
    assert result.tree == ["/a file 0600 0:0 1 x"]
    assert result.config == {"history": [{"created_by": "new", "empty_layer": True}]}
    assert peer.config["history"][0]["created_by"] == "old"
    with pytest.raises(ValueError, match="names another path"):
        c.apply_overrides(peer, (c.Override(path="/a", expect="/b dir 0755 0:0", reason="r"),))


def test_the_peer_builds_from_its_registry_busybox() -> None:
    text = (
        "FROM busybox\nFROM --platform=$BUILDPLATFORM busybox AS b\nFROM busybox:1\nRUN busybox\n"
    )
    assert c.peer_dockerfile(text) == (
        f"FROM {c.PEER_BASE}\nFROM --platform=$BUILDPLATFORM {c.PEER_BASE} AS b\n"
        "FROM busybox:1\nRUN busybox\n"
    )


def test_every_case_loads_and_docs_builds_say_why() -> None:
    loaded = c.load_cases()
    assert loaded
    for case in loaded:
        for spec in case.builds:
            if spec.source == "docs":
                assert spec.note
            if spec.error is None:
                directory = "expected" if spec.source == "docs" else "peer"
                assert (case.path / directory / f"{spec.name}.tree").is_file(), spec.id
            for override in spec.overrides:
                assert override.reason, spec.id


def test_steps_that_ran_are_told_from_cached_ones() -> None:
    progress = (
        "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n"
        "#5 [2/4] RUN echo hi\n#5 0.104 hi\n#5 DONE 0.1s\n"
        "#6 [3/4] COPY a /a\n#6 CACHED\n"
        "#7 [stage-1 4/4] WORKDIR /w\n#7 DONE 0.0s\n"
    )
    assert steps_that_ran(progress) == ["[2/4] RUN echo hi", "[stage-1 4/4] WORKDIR /w"]
