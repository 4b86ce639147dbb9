"""The build contexts of the scenarios, generated into the run's work directory.

Every Dockerfile starts from the same base image, ``127.0.0.1:5000/busybox:latest`` of
the peer tools' registry (made by ``../shared/tools/make-base-images.sh``): the peers
pull it from there and so does Dockyard (loopback registries are plain HTTP for it by
default), so all builders start from the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._proc import BenchError, Log, run

BASE_REGISTRY = "127.0.0.1:5000"
BASE_IMAGE = f"{BASE_REGISTRY}/busybox:latest"

STAMP = "app/stamp.txt"  # copied last in multistage's Dockerfile
CHANGED = "files/d10/f10500.txt"  # the one file changed in the 20,000-file context


@dataclass(frozen=True, slots=True, kw_only=True)
class Contexts:
    multistage: Path
    files20k: Path
    parallel: Path
    concurrent: Path
    export: Path
    pull: Path | None
    payload_tar: Path  # the ~100 MB layer's files as a tar (the floors' sample)
    pull_blobs: tuple[Path, ...]  # the pull image's gzip layers (the pull floor's input)
    pull_size: int  # uncompressed bytes of the pull image


def _multistage(tools: Path, out: Path, log: Log) -> Path:
    script = tools / "bench-ctx" / "gen-multistage.sh"
    if not script.is_file():
        raise BenchError(f"{script} is missing: the peer tools are not at {tools}")
    run([str(script), str(out)], log, env={"REGISTRY_ADDR": BASE_REGISTRY})
    return out


def _files20k(out: Path) -> Path:
    out.mkdir(parents=True)
    n = 0
    for d in range(20):
        sub = out / "files" / f"d{d:02d}"
        sub.mkdir(parents=True)
        for _ in range(1000):
            seed = hashlib.sha256(b"f%d" % n).hexdigest()
            (sub / f"f{n:05d}.txt").write_text((seed + "\n") * (3 + n % 6))
            n += 1
    (out / "Dockerfile").write_text(
        "# 20,000 small files (~300 bytes) copied into the image, then one RUN over them\n"
        f"FROM {BASE_IMAGE}\n"
        "COPY files/ /files/\n"
        "RUN find /files -type f | wc -l > /count.txt\n"
    )
    return out


def _parallel(out: Path) -> Path:
    out.mkdir(parents=True)
    (out / "Dockerfile").write_text(
        "# two independent stages of one second each; SEED changes every run\n"
        f"FROM {BASE_IMAGE} AS left\n"
        "ARG SEED\n"
        'RUN echo "left $SEED" > /left && sleep 1\n'
        f"FROM {BASE_IMAGE} AS right\n"
        "ARG SEED\n"
        'RUN echo "right $SEED" > /right && sleep 1\n'
        f"FROM {BASE_IMAGE}\n"
        "COPY --from=left /left /left\n"
        "COPY --from=right /right /right\n"
    )
    return out


def _concurrent(out: Path) -> Path:
    out.mkdir(parents=True)
    (out / "Dockerfile").write_text(
        "# 8 clients build this at once with the same SEED and their own CLIENT: the first\n"
        "# RUN (~1 s of CPU) is the same for all of them, the second differs\n"
        f"FROM {BASE_IMAGE}\n"
        "ARG SEED\n"
        'RUN echo "shared $SEED" > /shared && '
        "dd if=/dev/zero bs=1M count=128 2>/dev/null | sha256sum >> /shared\n"
        "ARG CLIENT\n"
        'RUN echo "client $CLIENT" > /client && cat /shared >> /client\n'
    )
    return out


_PAYLOAD_SOURCES = ("/usr/lib", "/usr/share", "/usr/bin")


def _fill(dest: Path, size: int) -> int:
    """Copy regular files from /usr into ``dest`` until ``size`` bytes."""
    total = 0
    for top in _PAYLOAD_SOURCES:
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


def _export(out: Path, size_mib: int, log: Log) -> tuple[Path, Path]:
    out.mkdir(parents=True)
    tree = out.parent / "payload-tree"
    tree.mkdir()
    _fill(tree, size_mib << 20)
    payload = out / "payload.tar"
    run(
        [
            "tar",
            "-cf",
            str(payload),
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1700000000",
            "-C",
            str(tree),
            ".",
        ],
        log,
    )
    shutil.rmtree(tree)
    (out / "Dockerfile").write_text(
        "# a new ~100 MB layer (files from /usr) on every run: SEED changes\n"
        f"FROM {BASE_IMAGE}\n"
        "ARG SEED\n"
        "RUN --mount=type=bind,source=payload.tar,target=/payload.tar "
        'mkdir /layer && tar -xf /payload.tar -C /layer && echo "$SEED" > /layer/seed\n'
    )
    return out, payload


def _pull(out: Path, registry_host: str, size_mib: int) -> tuple[Path, tuple[Path, ...], int]:
    from bench.image_pull import make_layers, push_layers
    from dockyard.registry import HostConfig, RegistryConfig

    out.mkdir(parents=True)
    layers = make_layers(size_mib)
    ref = f"{registry_host}/bench-pull:latest"
    config = RegistryConfig(hosts={registry_host: HostConfig(http=True)})
    compressed = asyncio.run(push_layers(ref, config, layers))
    blobs = []
    for i, blob in enumerate(compressed):
        path = out.parent / f"pull-layer{i}.tar.gz"
        path.write_bytes(blob)
        blobs.append(path)
    (out / "stamp.txt").write_text("pulled\n")
    (out / "Dockerfile").write_text(
        "# a ~100 MB image (3 gzip layers) pulled and unpacked, one file copied on top\n"
        f"FROM {ref}\n"
        "COPY stamp.txt /stamp.txt\n"
    )
    return out, tuple(blobs), sum(len(t) for t in layers)


def make_contexts(
    root: Path, tools: Path, log: Log, *, registry_host: str | None, size_mib: int = 100
) -> Contexts:
    """Generate every context under ``root`` (``registry_host``: the harness's own
    registry for the pull image; ``None`` skips it)."""
    root.mkdir(parents=True, exist_ok=True)
    export, payload = _export(root / "export", size_mib, log)
    pull: Path | None = None
    blobs: tuple[Path, ...] = ()
    pull_size = 0
    if registry_host is not None:
        pull, blobs, pull_size = _pull(root / "pull", registry_host, size_mib)
    return Contexts(
        multistage=_multistage(tools, root / "multistage", log),
        files20k=_files20k(root / "files20k"),
        parallel=_parallel(root / "parallel"),
        concurrent=_concurrent(root / "concurrent"),
        export=export,
        pull=pull,
        payload_tar=payload,
        pull_blobs=blobs,
        pull_size=pull_size,
    )


def check_base_image() -> str | None:
    """Why the base image cannot be used (``None``: it is in the tools' registry)."""
    done = subprocess.run(
        [
            "curl",
            "-fsS",
            "-o",
            "/dev/null",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json",
            f"http://{BASE_REGISTRY}/v2/busybox/manifests/latest",
        ],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return (
            f"{BASE_IMAGE} is not in the tools' registry "
            "(run ../shared/tools/setup.sh or registry.sh start + make-base-images.sh busybox)"
        )
    return None
