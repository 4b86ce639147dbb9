"""``ADD``'s archive extraction: formats, ownership, times, and hostile archives."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from dockyard.core import ContentError, DockyardError, PathEscapeError
from dockyard.llbsolver._actions import CopyAction
from dockyard.llbsolver._copy import copy
from dockyard.llbsolver._owner import Owner

from .trees import make_tree, read_tree

Entry = tuple[str, str, bytes | str]  # (name, kind: f d l h, data or link target)


def _tar(entries: list[Entry], *, mtime: int = 1_600_000_000) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid, info.gid = 1234, 5678
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
            else:
                raw = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(raw), 0o640
                tar.addfile(info, io.BytesIO(raw))
    return out.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda b: b,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}

SIMPLE: list[Entry] = [
    ("app/", "d", ""),
    ("app/main.py", "f", "print(1)\n"),
    ("app/run", "l", "main.py"),
]


def _add(tmp_path: Path, archive: bytes, dest: str = "/dst/", owner: Owner | None = None) -> Path:
    src = make_tree(tmp_path / "src", {})
    (src / "a.tar.x").write_bytes(archive)
    dest_root = make_tree(tmp_path / "dest", {})
    copy(
        src,
        dest_root,
        CopyAction(src="/a.tar.x", dest=dest, unpack=True, create_dest_path=True),
        owner,
    )
    return dest_root


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_formats_are_recognized_by_content(tmp_path: Path, compression: str) -> None:
    dest = _add(tmp_path, COMPRESSORS[compression](_tar(SIMPLE)))
    assert read_tree(dest) == {
        "dst/": None,
        "dst/app/": None,
        "dst/app/main.py": "print(1)\n",
        "dst/app/run": {"link": "main.py"},
    }


def test_metadata_comes_from_the_archive(tmp_path: Path) -> None:
    dest = _add(tmp_path, _tar(SIMPLE, mtime=1_500_000_000))
    st = os.lstat(dest / "dst/app/main.py")
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime == 1_500_000_000
    d = os.lstat(dest / "dst/app")
    assert stat.S_IMODE(d.st_mode) == 0o750
    assert d.st_mtime == 1_500_000_000  # set after its entries were written
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_override(tmp_path: Path) -> None:
    dest = _add(tmp_path, _tar(SIMPLE), owner=Owner(uid=1, gid=2))
    for rel in ("dst", "dst/app", "dst/app/main.py", "dst/app/run"):
        st = os.lstat(dest / rel)
        assert (st.st_uid, st.st_gid) == (1, 2), rel


def test_not_an_archive_is_copied(tmp_path: Path) -> None:
    for name, data in {
        "fake.tar.gz": b"just text",
        "empty": b"",
        "badgz": b"\x1f\x8b\x08garbage",
    }.items():
        dest = _add(tmp_path / name, data)
        assert (dest / "dst/a.tar.x").read_bytes() == data


def test_a_directory_of_archives_is_copied_as_it_is(tmp_path: Path) -> None:
    # ADD dir/ with unpack set: a directory is no archive, nor are the archives in it
    archive = gzip.compress(_tar(SIMPLE))
    src = make_tree(tmp_path / "src", {"dir/": None})
    (src / "dir/a.tar.gz").write_bytes(archive)
    dest_root = make_tree(tmp_path / "dest", {})
    copy(
        src,
        dest_root,
        CopyAction(
            src="/dir", dest="/dst/", unpack=True, create_dest_path=True, dir_contents_only=True
        ),
        None,
    )
    assert os.listdir(dest_root) == ["dst"]
    assert os.listdir(dest_root / "dst") == ["a.tar.gz"]
    assert (dest_root / "dst/a.tar.gz").read_bytes() == archive


def test_archive_into_a_path_without_a_slash_is_a_directory(tmp_path: Path) -> None:
    dest = _add(tmp_path, _tar(SIMPLE), dest="/opt")
    assert (dest / "opt/app/main.py").is_file()


def test_hard_links(tmp_path: Path) -> None:
    dest = _add(tmp_path, _tar([("a", "f", "data"), ("b", "h", "a"), ("c", "h", "/a")]))
    a, b, c = (os.lstat(dest / "dst" / n) for n in "abc")
    assert a.st_ino == b.st_ino == c.st_ino


def test_a_hard_link_entry_gives_the_shared_inode_its_metadata(tmp_path: Path) -> None:
    # docker's archive code (BuildKit's ADD, v0.8 in dockerd 20.10 and current) chowns,
    # chmods and re-times the inode a hard-link entry shares: the entry's header wins
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size, info.mode, info.mtime, info.uid, info.gid = 4, 0o640, 1_500_000_000, 1, 2
        tar.addfile(info, io.BytesIO(b"data"))
        link = tarfile.TarInfo("h")
        link.type, link.linkname = tarfile.LNKTYPE, "f"
        link.mode, link.mtime, link.uid, link.gid = 0o604, 1_400_000_000, 3, 4
        tar.addfile(link)
    dest = _add(tmp_path, out.getvalue())
    st = os.lstat(dest / "dst/f")
    assert st.st_ino == os.lstat(dest / "dst/h").st_ino
    assert stat.S_IMODE(st.st_mode) == 0o604
    assert st.st_mtime == 1_400_000_000
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (3, 4)


def test_parents_the_archive_does_not_list_are_not_chowned(tmp_path: Path) -> None:
    # ADD --chown=1:2 of an archive whose entry deep/y has no entry for deep: BuildKit
    # (v0.8 in dockerd 20.10, and current BuildKit's applyRootArchive) gives deep the
    # root pair while the entries and the destination directory get the owner
    dest = _add(
        tmp_path, _tar([("deep/y", "f", "y"), ("top/", "d", "")]), owner=Owner(uid=1, gid=2)
    )
    implied, entry, listed = (os.lstat(dest / p) for p in ("dst/deep", "dst/deep/y", "dst/top"))
    assert (entry.st_uid, entry.st_gid) == (1, 2)
    assert (listed.st_uid, listed.st_gid) == (1, 2)
    assert stat.S_IMODE(implied.st_mode) == 0o755
    if os.geteuid() == 0:
        assert (implied.st_uid, implied.st_gid) == (0, 0)
        dst = os.lstat(dest / "dst")
        assert (dst.st_uid, dst.st_gid) == (1, 2)


def test_whiteouts_remove(tmp_path: Path) -> None:
    dest = _add(
        tmp_path,
        _tar([("x", "f", "1"), ("y", "f", "2"), (".wh.x", "f", ""), (".wh..wh..opq", "f", "")]),
    )
    assert read_tree(dest) == {"dst/": None, "dst/y": "2"}


def test_dot_dot_entries_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(PathEscapeError, match="outside"):
        _add(tmp_path, _tar([("../evil", "f", "x")]))
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "dest/evil").exists()


def test_hard_link_out_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PathEscapeError):
        _add(tmp_path, _tar([("h", "h", "../../../etc/passwd")]))


def test_absolute_entries_land_inside(tmp_path: Path) -> None:
    dest = _add(tmp_path, _tar([("/etc/evil", "f", "x")]))
    assert (dest / "dst/etc/evil").read_text() == "x"


def test_symlink_then_write_through_it_stays_inside(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"victim": "v"})
    archive = _tar(
        [
            ("abs", "l", str(outside)),
            ("abs/victim", "f", "pwned"),
            ("rel", "l", "../../../../../../.."),
            ("rel/" + str(outside).lstrip("/") + "/victim", "f", "pwned"),
        ]
    )
    dest = _add(tmp_path, archive)
    assert (outside / "victim").read_text() == "v"
    inner = dest / "dst" / str(outside).lstrip("/") / "victim"
    assert inner.read_text() == "pwned"  # resolved inside the destination directory


def test_corrupt_archive(tmp_path: Path) -> None:
    archive = gzip.compress(_tar(SIMPLE))[:-40]
    with pytest.raises(ContentError, match="corrupt or truncated"):
        _add(tmp_path, archive)


def test_archive_replaces_existing_entries(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {})
    (src / "a.tar").write_bytes(_tar([("x/", "d", ""), ("x/f", "f", "new"), ("y", "f", "file")]))
    dest = make_tree(
        tmp_path / "dest",
        {"dst/": None, "dst/x/": None, "dst/x/keep": "k", "dst/y/": None, "dst/y/z": "z"},
    )
    copy(src, dest, CopyAction(src="/a.tar", dest="/dst", unpack=True), None)
    assert read_tree(dest) == {
        "dst/": None,
        "dst/x/": None,
        "dst/x/f": "new",
        "dst/x/keep": "k",
        "dst/y": "file",
    }


def test_directory_times_are_not_set_through_a_later_symlink(tmp_path: Path) -> None:
    """Directory times are set after the whole archive: by then a parent of a directory
    may have been replaced by a symlink out of the destination."""
    outside = make_tree(tmp_path / "outside", {"victim": "v"})
    os.utime(outside / "victim", (5, 5))
    archive = _tar([("d/", "d", ""), ("d/victim/", "d", ""), ("d", "l", str(outside))])
    dest = _add(tmp_path, archive)
    assert os.lstat(outside / "victim").st_mtime == 5
    assert (dest / "dst" / "d").is_symlink()


def test_a_directory_replaced_by_a_file_and_back(tmp_path: Path) -> None:
    archive = _tar(
        [("d/", "d", ""), ("d/sub/", "d", ""), ("d", "f", "x"), ("d/", "d", ""), ("d/f", "f", "y")]
    )
    dest = _add(tmp_path, archive)
    assert sorted(os.listdir(dest / "dst" / "d")) == ["f"]
    assert os.lstat(dest / "dst" / "d").st_mtime == 1_600_000_000


def _pax_entry(name: str, kind: bytes, **pax: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.pax_headers = pax
        tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (
            _pax_entry("f", tarfile.REGTYPE, path="a\x00b"),
            "invalid entry 'a\\x00b': embedded null byte",
        ),
        (_pax_entry("f", tarfile.REGTYPE, mtime="1e30"), "invalid entry 'f'"),
        (_pax_entry("d", tarfile.DIRTYPE, mtime="1e30"), "invalid entry 'd'"),
        (_pax_entry("f", tarfile.REGTYPE, uid="99999999999"), "invalid entry 'f'"),
    ],
)
def test_an_entry_that_cannot_be_made_is_a_content_error_naming_it(
    tmp_path: Path, archive: bytes, message: str
) -> None:
    with pytest.raises(ContentError, match=re.escape(f"extracting /a.tar.x: {message}")):
        _add(tmp_path, archive)


def test_a_hard_link_to_nothing_names_the_entry(tmp_path: Path) -> None:
    with pytest.raises(DockyardError, match="entry 'h': No such file"):
        _add(tmp_path, _tar([("h", "h", "nope")]))


@pytest.mark.parametrize("mtime", ["1e400", "nan"])
def test_a_directory_time_that_is_no_number_is_a_content_error(tmp_path: Path, mtime: str) -> None:
    # tarfile passes a PAX mtime on as a float (found by fuzzing: an OverflowError or
    # ValueError traceback)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        info.pax_headers = {"mtime": mtime}
        tar.addfile(info)
    with pytest.raises(ContentError, match="invalid entry 'd'"):
        _add(tmp_path, out.getvalue())


def test_a_cancel_stops_inside_one_inflating_member(tmp_path: Path) -> None:
    import threading

    from dockyard.core import CancelledError
    from dockyard.llbsolver._unpack import unpack

    class CancelAfter(threading.Event):
        """Set once asked ``n`` times (the extraction checks between members and, now,
        between chunks of one member)."""

        def __init__(self, n: int) -> None:
            super().__init__()
            self.left = n

        def is_set(self) -> bool:
            self.left -= 1
            return self.left < 0

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    # 64 MiB of zeros in 2 KB: a small bomb
    src = make_tree(tmp_path / "src", {})
    (src / "bomb.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(out.getvalue()))
    dest = make_tree(tmp_path / "dest", {})
    with pytest.raises(CancelledError):
        unpack(
            src, "/bomb.tar.zst", dest, "/out", owner=None, timestamp=None, cancelled=CancelAfter(3)
        )
    assert (dest / "out" / "zeros").stat().st_size < 8 << 20
