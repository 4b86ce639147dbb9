"""Helpers: build interesting trees and describe trees for comparison."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def manifest(root: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type, mode, uid, gid, content/target/rdev, xattrs, mtime for non-dirs)."""
    out: dict[str, tuple[object, ...]] = {}
    groups: dict[int, list[str]] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                groups.setdefault(st.st_ino, []).append(os.path.relpath(p, root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            xattrs = tuple(
                sorted(
                    (k, os.getxattr(p, k, follow_symlinks=False))
                    for k in os.listxattr(p, follow_symlinks=False)
                    if not k.startswith("trusted.overlay.")
                )
            )
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                data: object = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                group = sorted(groups[st.st_ino])
                link = group[0] if len(group) > 1 else None
                data = (data, link)
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                data = st.st_rdev
            else:
                data = None
            mtime = None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data, xattrs, mtime)
    return out


def populate_base(root: Path) -> None:
    """Every kind of entry a layer can hold."""
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir(mode=0o755)
    sh = root / "bin" / "sh"
    sh.write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    os.chmod(sh, 0o4755)
    os.link(sh, root / "bin" / "ash")
    os.symlink("sh", root / "bin" / "bash")
    os.symlink("/etc/passwd", root / "abs-link")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "home" / "user").mkdir(parents=True)
    (root / "home" / "user" / "file").write_text("mine")
    os.chown(root / "home" / "user", 1234, 5678)
    os.lchown(root / "home" / "user" / "file", 1234, 5678)
    os.lchown(root / "bin" / "bash", 42, 43)
    os.setxattr(root / "home" / "user" / "file", "user.note", b"hello")
    os.setxattr(root / "bin" / "sh", "security.capability", b"\x01\x00\x00\x02" + b"\x00" * 16)
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(root / "fifo")
    (root / "olddir" / "sub").mkdir(parents=True)
    (root / "olddir" / "sub" / "a").write_text("a")
    (root / "opaque").mkdir()
    (root / "opaque" / "gone").write_text("gone")
    (root / "opaque" / "gone-too").mkdir()
    (root / "replace-me").mkdir()
    (root / "replace-me" / "x").write_text("x")
    (root / "file-to-dir").write_text("f")
    (root / "empty").write_bytes(b"")
    os.utime(root / "etc" / "passwd", (1_600_000_000, 1_600_000_000))


def change_layer(root: Path) -> None:
    """Deletions, an opaque directory, type changes and modifications."""
    os.unlink(root / "etc" / "passwd")
    (root / "etc" / "passwd").write_text("changed\n")
    os.unlink(root / "bin" / "ash")
    import shutil

    shutil.rmtree(root / "olddir")
    shutil.rmtree(root / "opaque")
    (root / "opaque").mkdir()
    (root / "opaque" / "new").write_text("new")
    shutil.rmtree(root / "replace-me")
    (root / "replace-me").write_text("now a file")
    os.unlink(root / "file-to-dir")
    (root / "file-to-dir").mkdir()
    (root / "file-to-dir" / "inner").write_text("inner")
    os.chmod(root / "tmp", 0o1770)
    (root / "home" / "user" / "added").write_text("added")
    os.link(root / "home" / "user" / "added", root / "home" / "added-link")
