"""Layer export throughput: a ~100 MB layer written from its snapshot, compressed and
stored in the content store (what the image exporter does for a new layer) beside the
floors measured in the same run on the same layer tar: ``pigz`` at the same gzip level
and ``zstd -T0`` at the same zstd level, each compressing the finished tar file. The
same layer as eStargz (``compression=estargz``: a gzip member per file chunk, a TOC)
is measured beside Dockyard's plain gzip; its slowdown and size are printed, not
judged.

Dockyard's figure includes more than the floor's: producing the tar from the snapshot,
hashing it (diff_id) and the compressed stream (digest), and committing the blob
(fsync + rename). ``ratio`` is floor time / Dockyard time: ≥ 1.0 means Dockyard is at
least as fast as the tool alone. Runs are interleaved so that other load on the machine
hits both sides alike; best and median of ``--runs`` are printed.

The tree is a copy of files from ``/usr`` (real binaries, libraries and text, in a
sorted walk) up to ``--size-mib``. Uses overlayfs as root, the native snapshotter
otherwise. Needs ``pigz`` and ``zstd``.
Usage: ``python -m bench.export_layer [--size-mib N] [--runs N] [--level N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import ContentStore
from dockyard.exporter import Compression, CompressionOptions, IngestSink, new_compressor

_SOURCES = ("/usr/lib", "/usr/share", "/usr/bin")


def _fill(dest: Path, size: int) -> int:
    """Copy regular files from /usr into ``dest`` until ``size`` bytes; returns bytes."""
    total = 0
    for top in _SOURCES:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                src = os.path.join(dirpath, name)
                try:
                    if not os.path.isfile(src) or os.path.islink(src):
                        continue
                    length = os.path.getsize(src)
                    if length > size // 4:
                        continue
                    target = dest / os.path.relpath(src, "/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, target)
                except OSError:
                    continue
                total += length
                if total >= size:
                    return total
    return total


async def _make_ref(cache: CacheManager, size: int) -> tuple[ImmutableRef, int]:
    ref = await cache.new_mutable(description="bench layer")
    async with ref.mount() as root:
        copied = await asyncio.to_thread(_fill, root, size)
    return await ref.commit(), copied


_sizes: dict[Compression, int] = {}


async def _export(ref: ImmutableRef, content: ContentStore, options: CompressionOptions) -> float:
    """The exporter's new-layer path: diff → compressor → content store, committed."""
    start = time.perf_counter()
    writer = content.writer(f"bench-{time.monotonic_ns()}")
    async with writer:
        compressor = new_compressor(options, IngestSink(writer))
        await ref.write_layer(compressor)  # type: ignore[arg-type]
        await asyncio.to_thread(compressor.close)
        info = await writer.commit()
    took = time.perf_counter() - start
    _sizes[options.type] = info.size
    await content.delete(info.digest)
    return took


def _tool(args: list[str], src: Path, out: Path) -> float:
    start = time.perf_counter()
    with open(src, "rb") as fin, open(out, "wb") as fout:
        subprocess.run(args, stdin=fin, stdout=fout, check=True)
        fout.flush()
        os.fsync(fout.fileno())
    took = time.perf_counter() - start
    out.unlink()
    return took


def _line(name: str, times: list[float], size: int) -> str:
    best, median = min(times), statistics.median(times)
    return (
        f"  {name:<34} best {best * 1000:8.1f} ms ({size / best / 1e6:6.1f} MB/s)"
        f"   median {median * 1000:8.1f} ms"
    )


async def _main(size_mib: int, runs: int, gzip_level: int, zstd_level: int) -> int:
    for tool in ("pigz", "zstd"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install {tool})", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-export-"))
    kind = "overlayfs" if os.geteuid() == 0 else "native"
    cache = await CacheManager.open(work / "state", snapshotter=kind)  # type: ignore[arg-type]
    content = ContentStore(work / "state" / "content")
    try:
        ref, copied = await _make_ref(cache, size_mib << 20)
        tar = work / "layer.tar"
        with open(tar, "wb") as f:  # noqa: ASYNC230 - setup
            result = await ref.write_layer(f)
        size = result.size
        print(
            f"layer: {size / 1e6:.1f} MB tar ({copied / 1e6:.1f} MB of files from /usr), "
            f"{kind} snapshotter, {os.cpu_count()} CPUs"
        )
        gzip = CompressionOptions(type=Compression.GZIP, level=gzip_level)
        zstd = CompressionOptions(type=Compression.ZSTD, level=zstd_level)
        estargz = CompressionOptions(type=Compression.ESTARGZ, level=gzip_level)
        kinds = ("gzip", "pigz", "zstd", "zstd-cli", "estargz")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        out = work / "out"
        for _ in range(runs):
            times["gzip"].append(await _export(ref, content, gzip))
            times["estargz"].append(await _export(ref, content, estargz))
            times["pigz"].append(
                await asyncio.to_thread(_tool, ["pigz", f"-{gzip_level}", "-c"], tar, out)
            )
            times["zstd"].append(await _export(ref, content, zstd))
            times["zstd-cli"].append(
                await asyncio.to_thread(
                    _tool, ["zstd", f"-{zstd_level}", "-T0", "-q", "-c"], tar, out
                )
            )
        await ref.release()
    finally:
        content.close()
        await cache.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"gzip level {gzip_level}:")
    print(_line("dockyard (diff+gzip+hash+store)", times["gzip"], size))
    print(_line(f"floor: pigz -{gzip_level} of the tar file", times["pigz"], size))
    print(_line("dockyard estargz (diff+estargz+...)", times["estargz"], size))
    print(f"zstd level {zstd_level}:")
    print(_line("dockyard (diff+zstd+hash+store)", times["zstd"], size))
    print(_line(f"floor: zstd -{zstd_level} -T0 of the tar", times["zstd-cli"], size))
    gzip_ratio = statistics.median(times["pigz"]) / statistics.median(times["gzip"])
    zstd_ratio = statistics.median(times["zstd-cli"]) / statistics.median(times["zstd"])
    print(f"ratio gzip: {gzip_ratio:.2f}x pigz (target >= 1.0)")
    print(f"ratio zstd: {zstd_ratio:.2f}x zstd -T0")
    esgz = statistics.median(times["estargz"]) / statistics.median(times["gzip"])
    grown = _sizes[Compression.ESTARGZ] / _sizes[Compression.GZIP]
    print(f"estargz: {esgz:.2f}x the time of gzip, blob {grown:.3f}x its size")
    return 0 if gzip_ratio >= 1.0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--level", type=int, default=6, help="gzip level (pigz -N)")
    parser.add_argument("--zstd-level", type=int, default=3)
    args = parser.parse_args()
    sys.exit(asyncio.run(_main(args.size_mib, args.runs, args.level, args.zstd_level)))


if __name__ == "__main__":
    main()
