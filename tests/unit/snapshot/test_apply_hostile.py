"""Hostile layer tars cannot touch anything outside the directory they are applied to."""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from dockyard.core import ContentError, Digest, NotFoundError, PathEscapeError
from dockyard.snapshot import (
    LayerDiffer,
    NativeSnapshotter,
    OverlaySnapshotter,
    Snapshotter,
)
from dockyard.snapshot._apply import apply_tar


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(ti)
    return buf.getvalue()


def _file(name: str, data: bytes = b"pwned") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = 0o644
    return ti, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    return ti, None


def _link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    ti.linkname = target
    return ti, None


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(root to apply into, a directory outside it holding a file)"""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    root = tmp_path / "deep" / "root"
    root.mkdir(parents=True)
    return root, outside


def _outside_untouched(outside: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "outside"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["root"]


def _apply(data: bytes, root: Path, lowers: list[str] | None = None) -> None:
    apply_tar(io.BytesIO(data), str(root), lowers)


@pytest.mark.parametrize(
    "name", ["../escape", "../../outside/victim", "a/../../escape", "./../escape"]
)
def test_dotdot_entries_are_refused(sandbox: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    root, outside = sandbox
    with pytest.raises(PathEscapeError, match="outside"):
        _apply(_tar(_file(name)), root)
    _outside_untouched(outside, tmp_path)


def test_absolute_names_land_inside(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = sandbox
    _apply(_tar(_file(str(outside / "victim")), _file("/etc/x", b"x")), root)
    assert (root / str(outside / "victim").lstrip("/")).read_text() == "pwned"
    assert (root / "etc" / "x").read_text() == "x"
    _outside_untouched(outside, tmp_path)


@pytest.mark.parametrize(
    "target", ["OUTSIDE", "../../../outside", "../../../../../../../../OUTSIDE"]
)
def test_write_through_symlinked_dir_stays_inside(
    sandbox: tuple[Path, Path], tmp_path: Path, target: str
) -> None:
    root, outside = sandbox
    target = target.replace("OUTSIDE", str(outside).lstrip("/"))
    if not target.startswith(".."):
        target = "/" + target
    _apply(_tar(_link("evil", target), _file("evil/victim"), _file("evil/new")), root)
    _outside_untouched(outside, tmp_path)
    written = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert {p.name for p in written} == {"victim", "new"}
    assert all(str(p).startswith(str(root) + "/") for p in written)


def test_file_over_symlink_replaces_the_link(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = sandbox
    _apply(_tar(_link("x", str(outside / "victim")), _file("x")), root)
    assert not (root / "x").is_symlink()
    assert (root / "x").read_text() == "pwned"
    _outside_untouched(outside, tmp_path)


def test_dir_over_symlink_replaces_the_link(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = sandbox
    _apply(_tar(_link("d", str(outside)), _dir("d"), _file("d/victim")), root)
    assert (root / "d").is_dir()
    assert not (root / "d").is_symlink()
    _outside_untouched(outside, tmp_path)


def test_hardlink_out_is_refused(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = sandbox
    with pytest.raises(PathEscapeError):
        _apply(_tar(_link("h", "../../outside/victim", hard=True)), root)
    _outside_untouched(outside, tmp_path)


def test_hardlink_absolute_resolves_inside(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = sandbox
    with pytest.raises(NotFoundError):
        _apply(_tar(_link("h", str(outside / "victim"), hard=True)), root)
    _outside_untouched(outside, tmp_path)


def test_hardlink_through_symlink_resolves_inside(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    root, outside = sandbox
    with pytest.raises(NotFoundError):
        _apply(_tar(_link("s", str(outside)), _link("h", "s/victim", hard=True)), root)
    _outside_untouched(outside, tmp_path)
    (root / "in").write_text("inside")
    _apply(_tar(_link("s2", "/"), _link("h2", "s2/in", hard=True)), root)
    assert os.stat(root / "h2").st_ino == os.stat(root / "in").st_ino


def test_write_through_symlink_then_hardlink_back(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    """A link to outside written by a file entry, then linked to: all inside."""
    root, outside = sandbox
    _apply(
        _tar(
            _link("up", "../../.."),
            _file("up/outside/victim", b"pwned"),
            _link("copy", "up/outside/victim", hard=True),
        ),
        root,
    )
    _outside_untouched(outside, tmp_path)
    assert (root / "copy").read_text() == "pwned"


def test_whiteouts_cannot_delete_outside(sandbox: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = sandbox
    (root / "keep").write_text("k")
    (root / "old").mkdir()
    _apply(_tar(_link("o", str(outside)), _file("o/.wh.victim", b""), _file(".wh.old", b"")), root)
    _outside_untouched(outside, tmp_path)
    assert not os.path.lexists(root / "old")
    assert os.path.islink(root / "o")  # a whiteout only hides lower layers' entries
    with pytest.raises(PathEscapeError):
        _apply(_tar(_file("../.wh.outside", b"")), root)
    _apply(_tar(_link("o2", "../../outside"), _file("o2/.wh..wh..opq", b"")), root)
    _outside_untouched(outside, tmp_path)
    assert (root / "keep").exists()


def _dir_at(name: str, mtime: int) -> tuple[tarfile.TarInfo, None]:
    ti, data = _dir(name)
    ti.mtime = mtime
    return ti, data


def test_directory_times_are_not_set_through_a_later_symlink(
    sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    """A directory's time is set after the whole tar: by then the tar may have replaced a
    parent of it by a symlink out of the root; the time must not land out there."""
    root, outside = sandbox
    os.utime(outside / "victim", (5, 5))
    _apply(
        _tar(_dir("d"), _dir_at("d/victim", 99), _link("d", str(outside))),
        root,
    )
    assert os.lstat(outside / "victim").st_mtime == 5
    assert os.path.islink(root / "d")
    _outside_untouched(outside, tmp_path)


def test_a_directory_replaced_by_a_file_and_back_takes_the_last_time(tmp_path: Path) -> None:
    _apply(
        _tar(
            _dir_at("d", 10),
            _dir_at("d/sub", 20),
            _file("d"),
            _dir_at("d", 30),
            _file("d/f"),
        ),
        tmp_path,
    )
    assert os.lstat(tmp_path / "d").st_mtime == 30
    assert sorted(os.listdir(tmp_path / "d")) == ["f"]


def test_forged_overlay_xattrs_are_ignored(tmp_path: Path) -> None:
    ti, data = _dir("d")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
    _apply(_tar((ti, data)), tmp_path)
    with pytest.raises(OSError):
        os.getxattr(tmp_path / "d", "trusted.overlay.opaque")


def test_digest_and_size_cover_the_whole_stream(tmp_path: Path) -> None:
    data = _tar(_file("a", b"hello"), _dir("b"))
    result = apply_tar(io.BytesIO(data), str(tmp_path), None)
    assert result.size == len(data)
    assert result.diff_id == Digest.from_bytes(data)


def test_garbage_is_a_content_error(tmp_path: Path) -> None:
    with pytest.raises(ContentError):
        _apply(b"\x01" * 1024, tmp_path)
    data = _tar(_file("a", b"x" * 10000))
    with pytest.raises(ContentError):
        _apply(data[:2000], tmp_path)


def _with_pax(
    member: tuple[tarfile.TarInfo, bytes | None], **pax: str
) -> tuple[tarfile.TarInfo, bytes | None]:
    member[0].pax_headers = pax
    return member


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_with_pax(_file("f"), path="a\x00b"), "entry 'a\\x00b': embedded null byte"),
        (_file("n" * 300), "cannot be extracted: File name too long"),
        (_with_pax(_file("f"), uid="99999999999"), "invalid layer tar entry 'f'"),
        (_with_pax(_file("f"), mtime="1e30"), "invalid layer tar entry 'f'"),
        (_with_pax(_file("f"), **{"SCHILY.xattr.": "y"}), "'f' cannot be extracted"),
        (_link("self", "self", hard=True), "'self'"),
    ],
)
def test_an_entry_that_cannot_be_made_is_a_content_error_naming_it(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], message: str
) -> None:
    members = [member]
    if member[0].name == "self":
        members.insert(0, _file("self"))
    with pytest.raises(ContentError, match=re.escape(message)):
        _apply(_tar(*members), tmp_path)


def _conformance(
    o: OverlaySnapshotter, n: NativeSnapshotter
) -> tuple[Snapshotter, LayerDiffer, Snapshotter, LayerDiffer]:
    """Type-checked only: both snapshotters satisfy both protocols."""
    return o, o, n, n


def test_snapshotters_implement_the_seams() -> None:
    for cls in (OverlaySnapshotter, NativeSnapshotter):
        for name in ("stat", "prepare", "view", "mounts", "commit", "remove", "usage", "walk"):
            assert callable(getattr(cls, name))
        assert callable(cls.diff)
        assert callable(cls.apply)


def test_a_gnu_sparse_entry_is_a_content_error(tmp_path: Path) -> None:
    # tarfile seeks back to read a PAX sparse map; the layer stream is read forward once
    # (found by fuzzing: an OSError traceback)
    info = tarfile.TarInfo("a")
    info.type = tarfile.GNUTYPE_SPARSE
    info.pax_headers = {"GNU.sparse.map": "0,1", "GNU.sparse.size": "10", "GNU.sparse.major": "1"}
    (tmp_path / "root").mkdir()
    with pytest.raises(ContentError, match="unsupported layer tar"):
        apply_tar(io.BytesIO(_tar((info, None))), str(tmp_path / "root"), None)
