"""Helpers to build directory trees and compare them after a sync."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write(root: Path, rel: str, data: bytes | str = b"", *, mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)
    return path


def snapshot(root: Path, *, owners: bool = False) -> dict[str, tuple[object, ...]]:
    """Everything a sync must reproduce, by relative path: type, permissions, mtime,
    content or link target, and (optionally) owners; hard links as the first path."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            fmt = stat.S_IFMT(st.st_mode)
            extra: object = None
            if fmt == stat.S_IFREG:
                first = inodes.setdefault(st.st_ino, rel)
                extra = (Path(full).read_bytes(), first if first != rel else None)
            elif fmt == stat.S_IFLNK:
                extra = os.readlink(full)
            mtime = None if fmt == stat.S_IFDIR else st.st_mtime_ns
            record: tuple[object, ...] = (fmt, stat.S_IMODE(st.st_mode), mtime, extra)
            if owners:
                record += (st.st_uid, st.st_gid)
            out[rel] = record
    return out


def dir_mtimes(root: Path) -> dict[str, int]:
    return {
        os.path.relpath(dirpath, root): os.lstat(dirpath).st_mtime_ns
        for dirpath, _, _ in os.walk(root)
        if dirpath != str(root)
    }
