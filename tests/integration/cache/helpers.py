"""Helpers: make refs through real mounts, describe trees."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef


async def make(
    manager: CacheManager,
    fn: Callable[[Path], object],
    parent: ImmutableRef | None = None,
    description: str = "",
) -> ImmutableRef:
    """A committed ref: ``fn`` changes a writable mount of a new mutable ref."""
    mut = await manager.new_mutable(parent, description=description)
    try:
        async with mut.mount() as root:
            fn(root)
    except BaseException:
        await mut.release()
        raise
    return await mut.commit()


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type, mode, uid, gid, content digest | link target | rdev)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                data: object = hashlib.sha256(Path(p).read_bytes()).hexdigest()[:12]
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                data = st.st_rdev
            else:
                data = None
            out[os.path.relpath(p, root)] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                data,
            )
    return out


async def tree(ref: ImmutableRef) -> dict[str, tuple[object, ...]]:
    async with ref.mount() as root:
        return describe(root)


async def names(ref: ImmutableRef) -> dict[str, str]:
    """relative path -> content (files), ``<dir>``, ``-> target`` (links)."""
    async with ref.mount() as root:
        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                rel = str(p.relative_to(root))
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = "-> " + os.readlink(p)
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = "<dir>"
                elif stat.S_ISREG(st.st_mode):
                    out[rel] = p.read_text()
                else:
                    out[rel] = f"<special {stat.S_IFMT(st.st_mode):o}>"
        return out
