"""The layer tar writer makes, byte for byte, what :class:`tarfile.TarFile` in PAX format
makes of the same entries (its headers are built directly for speed)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from dockyard.snapshot._diff import OPAQUE, WHITEOUT_PREFIX, write_upper_diff


def _reference(upper: Path, clamp: int | None) -> bytes:
    """The layer tar as tarfile writes it (the writer this module replaced)."""
    buf = io.BytesIO()
    inodes: dict[tuple[int, int], str] = {}

    def mtime(value: float) -> int:
        return int(value) if clamp is None else min(int(value), clamp)

    with tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def walk(path: Path, rel: str) -> None:
            for entry in sorted(os.scandir(path), key=lambda e: os.fsencode(e.name)):
                st = entry.stat(follow_symlinks=False)
                name = f"{rel}/{entry.name}" if rel else entry.name
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    marker = (
                        f"{rel}/{WHITEOUT_PREFIX}{entry.name}"
                        if rel
                        else WHITEOUT_PREFIX + entry.name
                    )
                    ti = tarfile.TarInfo(marker)
                    ti.mode, ti.uname, ti.gname, ti.mtime = 0, "", "", mtime(st.st_mtime)
                    tar.addfile(ti)
                    continue
                ti = tarfile.TarInfo(name)
                ti.mode = stat.S_IMODE(st.st_mode)
                ti.uid, ti.gid = st.st_uid, st.st_gid
                ti.uname = ti.gname = ""
                ti.mtime = mtime(st.st_mtime)
                xattrs = {
                    k: os.getxattr(entry.path, k, follow_symlinks=False)
                    for k in sorted(os.listxattr(entry.path, follow_symlinks=False))
                    if not k.startswith("trusted.overlay.")
                }
                if xattrs:
                    ti.pax_headers = {
                        "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                        for k, v in xattrs.items()
                    }
                if stat.S_ISREG(st.st_mode):
                    first = inodes.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
                    if first is not None:
                        ti.type, ti.linkname = tarfile.LNKTYPE, first
                        tar.addfile(ti)
                        continue
                    if st.st_nlink > 1:
                        inodes[(st.st_dev, st.st_ino)] = name
                    ti.size = st.st_size
                    with open(entry.path, "rb") as f:
                        tar.addfile(ti, f)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    ti.type = tarfile.DIRTYPE
                elif stat.S_ISLNK(st.st_mode):
                    ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
                elif stat.S_ISFIFO(st.st_mode):
                    ti.type = tarfile.FIFOTYPE
                else:
                    ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                    ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(ti)
                if stat.S_ISDIR(st.st_mode):
                    try:
                        opaque = os.getxattr(entry.path, "trusted.overlay.opaque") == b"y"
                    except OSError:
                        opaque = False
                    if opaque:
                        opq = tarfile.TarInfo(f"{name}/{OPAQUE}")
                        opq.mode, opq.uname, opq.gname = 0, "", ""
                        opq.mtime = mtime(st.st_mtime)
                        tar.addfile(opq)
                    walk(Path(entry.path), name)

        walk(upper, "")
    return buf.getvalue()


def _tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    for size in (0, 1, 511, 512, 513, 4096, 100_000):
        (root / "dir" / f"f{size}").write_bytes(os.urandom(size))
    (root / "dir" / "f512").chmod(0o4755)
    long_dir = root / ("d" * 90)
    long_dir.mkdir()
    (long_dir / ("n" * 20)).write_text("a name over 100 bytes with its directory")
    (root / ("x" * 100)).write_text("exactly 100")
    (root / "ünïcode-名前").write_text("not ascii")
    os.symlink("dir/f1", root / "link")
    os.symlink("t" * 150, root / "long-link")
    os.link(root / "dir" / "f4096", root / "dir" / "sub" / "hard")
    os.mkfifo(root / "pipe")
    os.setxattr(root / "dir" / "f1", "user.note", b"kept \xff")
    os.utime(root / "dir" / "f0", (0, 2**40))  # beyond what ustar's 11 digits hold
    if os.geteuid() == 0:
        os.chown(root / "dir" / "f513", 3_000_000, 7)  # a uid beyond ustar's 7 digits
        os.mknod(root / "dir" / "gone", stat.S_IFCHR | 0o600, 0)  # a whiteout
        os.mknod(root / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.setxattr(root / "dir" / "sub", "trusted.overlay.opaque", b"y")


def test_layer_tars_match_tarfile(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    _tree(upper)
    for clamp in (None, 1_700_000_000):
        out = io.BytesIO()
        result = write_upper_diff(str(upper), out, clamp)
        assert out.getvalue() == _reference(upper, clamp)
        assert result.size == len(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert "ünïcode-名前" in names
    assert ("d" * 90) + "/" + ("n" * 20) in names


def test_an_empty_layer_is_one_record(tmp_path: Path) -> None:
    out = io.BytesIO()
    write_upper_diff(None, out, None)
    assert out.getvalue() == b"\0" * 10240
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _reference(empty, None) == out.getvalue()
