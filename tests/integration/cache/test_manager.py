"""The cache manager over real snapshotters: mounts, cache mounts, checksums, recovery."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, Sharing
from dockyard.core import NotFoundError
from dockyard.snapshot.mount import mount_all, mountpoints_under
from dockyard.snapshot.types import Mount

from .helpers import make, names


async def test_lifecycle_through_mounts(manager: CacheManager, mountinfo_unchanged: None) -> None:
    base = await make(manager, lambda r: (r / "a").write_text("a"))
    mut = await manager.new_mutable(base)
    async with mut.mount() as root:
        (root / "a").write_text("changed")
        (root / "b").write_text("b")
        # a read-only mount of the same work area while it is mounted writable
        async with mut.mount(readonly=True) as ro:
            assert (ro / "b").read_text() == "b"
            with pytest.raises(OSError):
                (ro / "c").write_text("c")
    # checksums of a mutable ref read through a read-only mount
    digest = await manager.checksum(mut, "/")
    child = await mut.commit()
    assert await manager.checksum(child, "/") == digest
    assert await names(child) == {"a": "changed", "b": "b"}
    assert await names(base) == {"a": "a"}
    ids = await manager.save([child])
    await child.release()
    await base.release()
    loaded = await manager.load(ids[0])
    assert loaded is not None
    assert await names(loaded) == {"a": "changed", "b": "b"}
    await loaded.release()


async def test_mount_is_undone_when_cancelled(manager: CacheManager, tmp_path: Path) -> None:
    ref = await make(manager, lambda r: (r / "a").write_text("a"))
    entered = asyncio.Event()

    async def user() -> None:
        async with ref.mount():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(user())
    await entered.wait()
    assert mountpoints_under(manager.mount_dir) or manager.snapshotter.name == "native"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert mountpoints_under(manager.mount_dir) == []
    assert os.listdir(manager.mount_dir) == []
    await ref.release()


async def test_cache_mount_from_parent_on_overlay(manager: CacheManager, tmp_path: Path) -> None:
    base = await make(manager, lambda r: (r / "seed").write_text("seed"))
    async with manager.cache_mount("deps", parent=base, sharing=Sharing.LOCKED) as ref:
        async with ref.mount() as root:
            assert (root / "seed").read_text() == "seed"
            (root / "dep").write_text("downloaded")
        first = ref.id
    await base.release()
    await manager.close()

    manager = await CacheManager.open(tmp_path / "state")
    try:
        base = await manager.get(base.id)
        async with manager.cache_mount("deps", parent=base) as ref:
            assert ref.id == first
            async with ref.mount() as root:
                assert sorted(os.listdir(root)) == ["dep", "seed"]
        await base.release()
    finally:
        await manager.close()


async def test_stat_cache_persists_for_named_refs(manager: CacheManager, tmp_path: Path) -> None:
    async with manager.named_mutable("context") as ctx:
        async with ctx.mount() as root:
            for i in range(200):
                (root / f"f{i}").write_text(str(i))
        # files written just now are "racy" (not remembered); a real sync is not that
        # close to its build, so drop the window instead of waiting it out
        manager._racy_ns = 0
        first = await manager.checksum(ctx, "/")
        hashed = manager.statistics().files_hashed
        assert await manager.checksum(ctx, "/") == first
        assert manager.statistics().files_hashed == hashed
        async with ctx.mount() as root:
            (root / "f7").write_text("changed")
        changed = await manager.checksum(ctx, "/")
        assert changed != first
        assert manager.statistics().files_hashed == hashed + 1
    await manager.close()

    # a new manager reads the stat cache back from the database
    manager = await CacheManager.open(tmp_path / "state")
    try:
        async with manager.named_mutable("context") as ctx:
            assert await manager.checksum(ctx, "/") == changed
            assert manager.statistics().files_hashed == 0
    finally:
        await manager.close()


async def test_checksum_errors_and_wildcards(manager: CacheManager) -> None:
    def files(r: Path) -> None:
        (r / "app").mkdir()
        (r / "app" / "a.py").write_text("a")
        (r / "app" / "b.py").write_text("b")
        (r / "app" / "c.txt").write_text("c")

    ref = await make(manager, files)
    with pytest.raises(NotFoundError):
        await manager.checksum(ref, "/missing")
    py = await manager.checksum(ref, "/app/*.py", wildcard=True)
    assert py != await manager.checksum(ref, "/app/*", wildcard=True)
    assert await manager.checksum(ref, "/app/*.py", wildcard=True) == py
    assert manager.statistics().checksum_hits >= 1
    await ref.release()


async def test_recovery_unmounts_leftovers(tmp_path: Path, kind: str) -> None:
    manager = await CacheManager.open(tmp_path / "state", snapshotter=kind)  # type: ignore[arg-type]
    ref = await make(manager, lambda r: (r / "a").write_text("a"))
    await manager.close()
    # a crash while something was mounted under <state>/mnt
    stale = tmp_path / "state" / "mnt" / "m-stale"
    stale.mkdir()
    mount_all([Mount(type="tmpfs", source="tmpfs", options=("size=1m",))], stale)
    assert mountpoints_under(tmp_path / "state" / "mnt")
    manager = await CacheManager.open(tmp_path / "state")
    try:
        assert mountpoints_under(tmp_path / "state" / "mnt") == []
        assert os.listdir(tmp_path / "state" / "mnt") == []
        again = await manager.get(ref.id)
        assert await names(again) == {"a": "a"}
        await again.release()
    finally:
        await manager.close()
