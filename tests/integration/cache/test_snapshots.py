"""``CacheManager.snapshot``: committed copies of a synced context, made incrementally."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef, MutableRef, RecordType
from dockyard.cache import _manager as manager_module

from .helpers import describe, names


async def fill(ctx: MutableRef, n: int = 300) -> None:
    async with ctx.mount() as root:
        for i in range(n):
            d = root / f"d{i // 100}"
            d.mkdir(exist_ok=True)
            (d / f"f{i:03d}").write_text(f"file {i}\n")
        os.symlink("d0/f000", root / "link")


async def change(ctx: MutableRef, fn: Callable[[Path], object]) -> None:
    async with ctx.mount() as root:
        fn(root)


def hashed(manager: CacheManager) -> int:
    return manager.statistics().files_hashed


async def test_incremental_snapshots(manager: CacheManager) -> None:
    manager._racy_ns = 0  # files written just now count as settled
    async with manager.named_mutable("ctx") as ctx:
        await fill(ctx)
        digest1 = await manager.checksum(ctx, "/")
        s1 = await manager.snapshot(ctx, record_type=RecordType.SOURCE_LOCAL, description="ctx")
        assert s1.parent_ids == ()
        assert s1.record_type is RecordType.SOURCE_LOCAL
        assert s1.labels == {"dockyard.snapshot-of": ctx.id}
        before = hashed(manager)
        assert await manager.checksum(s1, "/") == digest1
        assert hashed(manager) == before  # every file's hash came with the snapshot

        await change(ctx, lambda r: (r / "d1" / "f150").write_text("changed, longer\n"))
        digest2 = await manager.checksum(ctx, "/")
        s2 = await manager.snapshot(ctx)
        assert s2.parent_ids == (s1.id,)
        async with ctx.mount() as root:
            assert describe(root) == await tree_of(s2)
        before = hashed(manager)
        assert await manager.checksum(s2, "/") == digest2
        assert hashed(manager) == before
        # the new layer holds the change only
        buf = io.BytesIO()
        await s2.write_layer(buf)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            members = tar.getnames()
        if manager.snapshotter.name == "overlayfs":
            assert members == ["d1", "d1/f150"]
        else:
            assert "d1/f150" in members
            assert "d0/f000" not in members
        # s1 is untouched
        assert await manager.checksum(s1, "/") == digest1
        await s1.release()
        await s2.release()


async def tree_of(ref: ImmutableRef) -> dict[str, tuple[object, ...]]:
    async with ref.mount() as root:
        return describe(root)


async def test_snapshots_follow_every_kind_of_change(manager: CacheManager) -> None:
    manager._racy_ns = 0
    async with manager.named_mutable("ctx") as ctx:
        await fill(ctx, 300)
        await manager.checksum(ctx, "/")
        refs = [await manager.snapshot(ctx)]

        def sneaky(root: Path) -> None:
            # same size and mtime, other content: only hashes can tell
            f = root / "d0" / "f005"
            old = f.stat()
            f.write_text("FILE 5\n")
            os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns))

        def many(root: Path) -> None:
            (root / "d0" / "f001").unlink()
            shutil.rmtree(root / "d2")
            (root / "d1" / "f110").unlink()
            (root / "d1" / "f110").mkdir()
            (root / "d1" / "f110" / "inner").write_text("inner")
            os.chmod(root / "d0" / "f002", 0o600)
            os.setxattr(root / "d0" / "f003", "user.tag", b"t")
            os.unlink(root / "link")
            os.symlink("d1/f111", root / "link")
            os.chmod(root / "d1", 0o700)
            (root / "new").write_text("new")

        for fn in (sneaky, many):
            await change(ctx, fn)
            digest = await manager.checksum(ctx, "/")
            snap = await manager.snapshot(ctx)
            refs.append(snap)
            async with ctx.mount() as root:
                assert await tree_of(snap) == describe(root)
            assert await manager.checksum(snap, "/") == digest
        assert (await names(refs[1]))["d0/f005"] == "FILE 5\n"
        assert [r.parent_ids for r in refs] == [(), (refs[0].id,), (refs[1].id,)]
        for r in refs:
            await r.release()


async def test_snapshot_without_checksums_first(manager: CacheManager) -> None:
    """Without a checksum before, nothing is seeded and nothing is trusted blindly."""
    async with manager.named_mutable("ctx") as ctx:
        await fill(ctx, 20)
        s1 = await manager.snapshot(ctx)

        def sneaky(root: Path) -> None:
            f = root / "d0" / "f007"
            old = f.stat()
            f.write_text("FILE 7\n")
            os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns))

        await change(ctx, sneaky)
        s2 = await manager.snapshot(ctx)
        assert (await names(s2))["d0/f007"] == "FILE 7\n"
        assert await manager.checksum(s2, "/") == await manager.checksum(ctx, "/")
        await s1.release()
        await s2.release()


async def test_chains_of_snapshots_are_capped(
    manager: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "SNAPSHOT_CHAIN", 3)
    async with manager.named_mutable("ctx") as ctx:
        await fill(ctx, 5)
        parents = []
        for i in range(5):

            def count(root: Path, i: int = i) -> None:
                (root / "counter").write_text(str(i))

            await change(ctx, count)
            snap = await manager.snapshot(ctx)
            parents.append(len(await snap.layers()))
            await snap.release()
        assert parents == [1, 2, 3, 1, 2]


async def test_snapshots_across_restarts(tmp_path: Path, kind: str) -> None:
    manager = await CacheManager.open(tmp_path / "state", snapshotter=kind)  # type: ignore[arg-type]
    manager._racy_ns = 0
    async with manager.named_mutable("ctx") as ctx:
        await fill(ctx, 200)
        await manager.checksum(ctx, "/")
        s1 = await manager.snapshot(ctx)
        await s1.release()
    await manager.close()

    manager = await CacheManager.open(tmp_path / "state")
    manager._racy_ns = 0
    try:
        async with manager.named_mutable("ctx") as ctx:
            await change(ctx, lambda r: (r / "d0" / "f000").write_text("changed!"))
            digest = await manager.checksum(ctx, "/")
            assert hashed(manager) == 1
            s2 = await manager.snapshot(ctx)
            assert s2.parent_ids == (s1.id,)
            assert await manager.checksum(s2, "/") == digest
            assert hashed(manager) == 1
            await s2.release()
    finally:
        await manager.close()
