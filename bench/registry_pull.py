"""Blob pull throughput from a local docker-registry: Dockyard's client (streamed into a
file, sha256 verified on the way, committed by rename) beside ``curl -o`` of the same
blob (transfer + write, no verification) and ``curl`` + Python's hashlib afterwards.

Starts its own registry on a free loopback port (needs ``docker-registry``, ``openssl``).
The registry, curl and the client share the machine's cores, so other load moves all
three figures; compare them within one run.
Usage: ``python -m bench.registry_pull [--size-mib N] [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from dockyard.oci import Descriptor, MediaType
from dockyard.registry import FileSink, HostConfig, RegistryClient, RegistryConfig
from dockyard.testing.registry import start_registry


def _best(times: list[float]) -> float:
    return min(times)


def _rate(size: int, seconds: float) -> str:
    return f"{size / seconds / (1 << 20):7.0f} MiB/s ({seconds * 1000:7.1f} ms)"


async def _pull(
    config: RegistryConfig, ref: str, desc: Descriptor, out: Path, runs: int
) -> list[float]:
    times = []
    async with RegistryClient(config=config) as client:
        await client.resolve(ref)  # warm: ping, connection
        for i in range(runs):
            target = out / f"dockyard-{i}"
            start = time.perf_counter()
            await client.fetch_blob(ref, desc, FileSink(target))
            times.append(time.perf_counter() - start)
            target.unlink()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-"))
    try:
        registry = start_registry(work / "registry")
        try:
            data = os.urandom(args.size_mib << 20)
            desc = Descriptor.of(MediaType.OCI_LAYER, data)
            config = RegistryConfig(hosts={registry.host: HostConfig(http=True)})
            ref = registry.ref("bench/blob:latest")

            async def setup() -> None:
                from dockyard.testing.registry import build_image

                image = build_image([{"x": "y"}])
                async with RegistryClient(config=config) as client:
                    await client.push_blob(ref, desc, data)
                    await client.push_image(
                        ref,
                        manifest=image.manifest_bytes,
                        media_type=image.media_type,
                        blobs=image.blobs,
                    )

            asyncio.run(setup())
            out = work / "out"
            out.mkdir()
            ours = asyncio.run(_pull(config, ref, desc, out, args.runs))
            url = f"{registry.url}/v2/bench/blob/blobs/{desc.digest}"
            curl, curl_hash = [], []
            for i in range(args.runs):
                target = out / f"curl-{i}"
                start = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", str(target), url], check=True)
                middle = time.perf_counter()
                with target.open("rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                end = time.perf_counter()
                assert digest == desc.digest.hex
                curl.append(middle - start)
                curl_hash.append(end - start)
                target.unlink()
            size = desc.size
            print(
                f"blob pull of {args.size_mib} MiB from docker-registry on loopback, best of {args.runs}"
            )
            print(f"  dockyard fetch_blob -> FileSink (verified)  {_rate(size, _best(ours))}")
            print(f"  curl -o file (no verification)              {_rate(size, _best(curl))}")
            print(f"  curl -o file + hashlib sha256               {_rate(size, _best(curl_hash))}")
            print(f"  ratio dockyard / (curl + sha256): {_best(curl_hash) / _best(ours):.2f}x")
        finally:
            registry.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
