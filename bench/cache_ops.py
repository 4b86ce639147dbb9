"""Costs of the cache manager's hot paths, on a real snapshotter in a temporary state dir.

- checksum of a 20,000-file context (300 bytes each): cold (every file read), with the
  stat cache and nothing changed, after one file changed; ``snapshot`` of it (full, then
  incremental after one change) and the first checksum of that snapshot (its stat cache
  comes with it); a committed ref's cached checksum; the raw floor of one Python walk
  doing ``lstat`` + ``listxattr`` per file;
- ``new_mutable`` + ``commit`` + ``save`` of an empty ref, with and without the
  ``syncfs`` of ``sync_on_save``, and ``save`` after 50 MiB were written;
- a merge of 10 refs (overlayfs stacks layers: no copy) and a child on top of it.

Needs root. Usage: ``python -m bench.cache_ops [--files N] [--snapshotter overlayfs|native]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from dockyard.cache import CacheManager


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


async def _timed(fn: Callable[[], Awaitable[object]], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _floor_walk(root: Path) -> float:
    t = time.perf_counter()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.lstat(p)
            os.listxattr(p, follow_symlinks=False)
    return time.perf_counter() - t


async def run(files: int, kind: str, runs: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="bench-cache-", dir="/var/tmp"))
    try:
        manager = await CacheManager.open(state, snapshotter=kind)  # type: ignore[arg-type]
        manager._racy_ns = 0  # files were just written; a real sync is not that close
        print(f"snapshotter: {manager.snapshotter.name}, context: {files} files")
        async with manager.named_mutable("bench-context") as ctx:
            async with ctx.mount() as root:
                for i in range(files):
                    d = root / f"d{i // 500:03d}"
                    if i % 500 == 0:
                        d.mkdir()
                    (d / f"f{i:05d}").write_bytes(b"x" * 300)
                floor = _floor_walk(root)
            t = time.perf_counter()
            await manager.checksum(ctx, "/")
            cold = time.perf_counter() - t
            cached = await _timed(lambda: manager.checksum(ctx, "/"), runs)
            async with ctx.mount() as root:
                (root / "d007" / "f03500").write_bytes(b"y" * 300)
            before = manager.statistics().files_hashed
            t = time.perf_counter()
            await manager.checksum(ctx, "/")
            one = time.perf_counter() - t
            rehashed = manager.statistics().files_hashed - before
            t = time.perf_counter()
            first_snap = await manager.snapshot(ctx)
            snap_full = time.perf_counter() - t
            async with ctx.mount() as root:
                (root / "d011" / "f05600").write_bytes(b"z" * 301)
            await manager.checksum(ctx, "/")
            t = time.perf_counter()
            snap = await manager.snapshot(ctx)
            snap_incr = time.perf_counter() - t
            await first_snap.release()
        before = manager.statistics().files_hashed
        t = time.perf_counter()
        await manager.checksum(snap, "/")
        committed_first = time.perf_counter() - t
        seeded_reads = manager.statistics().files_hashed - before
        committed = await _timed(lambda: manager.checksum(snap, "/"), runs)
        await snap.release()
        print(f"floor: walk with lstat+listxattr     {_ms(floor)}")
        print(f"checksum, cold                       {_ms(cold)}")
        print(f"checksum, stat cache, no change      {_ms(cached)}")
        print(f"checksum, stat cache, 1 file changed {_ms(one)}  ({rehashed} file read)")
        print(f"snapshot of the context, full copy   {_ms(snap_full)}")
        print(f"snapshot after 1 change, incremental {_ms(snap_incr)}")
        print(
            f"checksum of that snapshot, first     {_ms(committed_first)}"
            f"  ({seeded_reads} files read)"
        )
        print(f"checksum of a committed ref, cached  {_ms(committed)}")

        for sync in (False, True):
            manager._sync_on_save = sync

            async def empty() -> None:
                mut = await manager.new_mutable()
                ref = await mut.commit()
                await manager.save([ref])
                await ref.release()

            label = "with syncfs" if sync else "no sync   "
            print(f"new_mutable+commit+save, empty, {label} {_ms(await _timed(empty, runs))}")
        mut = await manager.new_mutable()
        async with mut.mount() as root:
            for j in range(50):
                (root / f"f{j}").write_bytes(os.urandom(1 << 20))
        ref = await mut.commit()
        t = time.perf_counter()
        await manager.save([ref])
        print(f"save after writing 50 MiB (syncfs)   {_ms(time.perf_counter() - t)}")
        await ref.release()

        parts = []
        for i in range(10):
            mut = await manager.new_mutable()
            async with mut.mount() as root:
                (root / f"part{i}").write_bytes(b"p" * 100_000)
            parts.append(await mut.commit())
        t = time.perf_counter()
        merged = await manager.merge(parts)
        merge_time = time.perf_counter() - t
        t = time.perf_counter()
        child = await manager.new_mutable(merged)
        async with child.mount() as root:
            (root / "top").write_text("top")
        top = await child.commit()
        child_time = time.perf_counter() - t
        print(f"merge of 10 refs                     {_ms(merge_time)}")
        print(f"mutable on the merge: mount+commit   {_ms(child_time)}")
        for r in (*parts, merged, top):
            await r.release()
        await manager.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--snapshotter", default="overlayfs", choices=["overlayfs", "native"])
    parser.add_argument("-n", "--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.files, args.snapshotter, args.runs))


if __name__ == "__main__":
    main()
