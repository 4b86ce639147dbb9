"""Image pull + unpack throughput: Dockyard's ``docker-image`` source (resolve, download
each layer from a local ``docker-registry`` into the content store with sha256
verification, decompress, apply into overlayfs snapshots, check each diff_id) beside the
floor measured in the same run: ``sha256sum`` of each layer blob plus ``tar -xzf`` of it
into a directory, from local files (no network, no diff_id).

The image (~100 MiB uncompressed by default) has three gzip layers: many small and
medium files, one large file, and a few small files. Every Dockyard run starts from an
empty state directory, so every layer is downloaded and unpacked. Needs root (overlay
mounts), ``docker-registry``, ``tar``, ``sha256sum``.
Usage: ``python -m bench.image_pull [--size-mib N] [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from dockyard.cache import CacheManager
from dockyard.content import ContentStore
from dockyard.core import Digest, host_platform
from dockyard.oci import ContainerConfig, Descriptor, ImageConfig, ImageManifest, MediaType
from dockyard.registry import Reference, RegistryClient, RegistryConfig
from dockyard.source import ImageSource
from dockyard.testing.registry import start_registry

TARGET = 0.8


def _payload(rng: random.Random, size: int) -> bytes:
    """Half random, half repetitive: compresses about 2:1, like binaries."""
    half = size // 2
    return rng.randbytes(half) + bytes(range(256)) * ((size - half) // 256 + 1)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def make_layers(size_mib: int) -> list[bytes]:
    """Uncompressed layer tars adding up to about ``size_mib``."""
    rng = random.Random(42)
    total = size_mib << 20
    many: dict[str, bytes] = {}
    budget = int(total * 0.55)
    i = 0
    while budget > 0:
        size = min(budget, rng.choice((512, 2048, 8192, 32768, 131072, 524288)))
        many[f"usr/lib/pkg{i % 40}/file{i}.so"] = _payload(rng, size)
        budget -= size
        i += 1
    big = {"opt/app/data.bin": _payload(rng, int(total * 0.4))}
    small = {f"etc/conf{i}": _payload(rng, 1000) for i in range(50)}
    return [_tar(many), _tar(big), _tar(small)]


async def push_layers(ref: str, config: RegistryConfig, layers: list[bytes]) -> list[bytes]:
    blobs: dict[Digest, bytes] = {}
    descs = []
    compressed = []
    for tar in layers:
        blob = gzip.compress(tar, compresslevel=6, mtime=0)
        compressed.append(blob)
        blobs[Digest.from_bytes(blob)] = blob
        descs.append(Descriptor.of(MediaType.OCI_LAYER_GZIP, blob))
    platform = host_platform()
    image_config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        config=ContainerConfig(env=("PATH=/bin",)),
        diff_ids=tuple(Digest.from_bytes(t) for t in layers),
    )
    config_bytes = image_config.to_bytes()
    blobs[Digest.from_bytes(config_bytes)] = config_bytes
    manifest = ImageManifest(
        config=Descriptor.of(MediaType.OCI_CONFIG, config_bytes), layers=tuple(descs)
    )
    async with RegistryClient(config=config) as client:
        await client.push_image(
            ref, manifest=manifest.to_bytes(), media_type=manifest.media_type, blobs=blobs
        )
    return compressed


async def _dockyard(ref: str, config: RegistryConfig, state: Path) -> float:
    cache = await CacheManager.open(state)
    content = ContentStore(state / "content")
    images = ImageSource(cache=cache, content=content, registry=config)
    try:
        start = time.perf_counter()
        pinned = await images.resolve_image(Reference.parse(ref))
        tree = await images.pull(pinned)
        elapsed = time.perf_counter() - start
        await tree.release()
        assert images.unpacker.statistics().unpacked == 3
        return elapsed
    finally:
        await images.aclose()
        content.close()
        await cache.close()


def _floor(blobs: list[Path], dest: Path) -> float:
    dest.mkdir()
    start = time.perf_counter()
    for blob in blobs:
        subprocess.run(["sha256sum", str(blob)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(dest)], check=True)
    return time.perf_counter() - start


def _rate(size: int, seconds: float) -> str:
    return f"{size / seconds / (1 << 20):7.1f} MiB/s ({seconds * 1000:7.0f} ms)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("image_pull needs root (overlay mounts)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-pull-"))
    try:
        registry = start_registry(work / "registry")
        try:
            layers = make_layers(args.size_mib)
            size = sum(len(t) for t in layers)
            ref = registry.ref("bench/image:latest")
            config = registry.registry_config()
            compressed = asyncio.run(push_layers(ref, config, layers))
            blob_files = []
            for i, blob in enumerate(compressed):
                path = work / f"layer{i}.tar.gz"
                path.write_bytes(blob)
                blob_files.append(path)
            ours: list[float] = []
            floor: list[float] = []
            for run in range(args.runs):  # interleaved: both see the same machine load
                subprocess.run(["sync"], check=True)
                floor.append(_floor(blob_files, work / f"floor-{run}"))
                shutil.rmtree(work / f"floor-{run}")
                subprocess.run(["sync"], check=True)
                ours.append(asyncio.run(_dockyard(ref, config, work / f"state-{run}")))
                shutil.rmtree(work / f"state-{run}", ignore_errors=True)
            best_ours, best_floor = min(ours), min(floor)
            compressed_size = sum(len(b) for b in compressed)
            print(
                f"pull + unpack of a {size / (1 << 20):.0f} MiB image "
                f"({compressed_size / (1 << 20):.0f} MiB gzip, 3 layers) from docker-registry "
                f"on loopback, best of {args.runs} (uncompressed bytes per second)"
            )
            print(f"  dockyard docker-image source   {_rate(size, best_ours)}")
            print(f"  floor: sha256sum + tar -xzf    {_rate(size, best_floor)}")
            ratio = best_floor / best_ours
            print(f"  ratio dockyard / floor: {ratio:.2f} (target >= {TARGET:.2f})")
            return 0 if ratio >= TARGET else 1
        finally:
            registry.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
