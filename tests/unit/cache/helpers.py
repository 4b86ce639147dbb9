"""Helpers of the cache tests: reading and writing refs' trees."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef, MutableRef, RecordType
from dockyard.snapshot.mount import readable


def tree_of(root: Path) -> dict[str, str]:
    """relative path -> file content, ``<dir>`` or ``-> target``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "<dir>"
            else:
                out[rel] = p.read_text()
    return out


async def contents(ref: ImmutableRef | MutableRef) -> dict[str, str]:
    """The tree of a ref, read in place (native snapshots are binds: no mount)."""
    with readable(await ref.mounts()) as root:
        return tree_of(root)


async def write(ref: MutableRef, fn: Callable[[Path], object]) -> None:
    """Change a mutable ref's tree in place (native snapshots are plain directories)."""
    mounts = await ref.mounts()
    assert len(mounts) == 1
    assert mounts[0].type == "bind"
    fn(Path(mounts[0].source))


async def committed(
    manager: CacheManager,
    fn: Callable[[Path], object],
    parent: ImmutableRef | None = None,
    *,
    record_type: RecordType = RecordType.REGULAR,
    description: str = "",
) -> ImmutableRef:
    ref = await manager.new_mutable(parent, record_type=record_type, description=description)
    await write(ref, fn)
    return await ref.commit()
