"""Make the busybox base image the examples build from — no registry, no download.

    .venv/bin/python examples/busybox_image.py [--state-dir DIR] [--name REF] [--layout PATH]

The image is Debian's static busybox (``apt-get install busybox-static``) with a symlink
per applet and a small ``/etc/passwd`` (see :mod:`dockyard.testing.rootfs`), one
uncompressed layer, reproducible: the same busybox binary always gives the same image
digest. It is stored in the engine's local image store (``--state-dir``, default the
engine's) as ``docker.io/library/busybox:latest``, so ``llb.image("busybox")`` and
``FROM busybox`` find it without a registry; ``--layout PATH`` also writes it as an OCI
layout directory (usable as ``oci-layout://PATH``). Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from dockyard.content import REF_NAME_ANNOTATION, ContentStore, ImageStore, write_oci_layout
from dockyard.core import Digest, Platform, host_platform
from dockyard.oci import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
)
from dockyard.testing.rootfs import make_busybox_rootfs

NAME = "docker.io/library/busybox:latest"
EPOCH = 1704067200  # 2024-01-01T00:00:00Z, the rootfs's file times
CREATED = "2024-01-01T00:00:00Z"


def layer_tar(root: Path) -> bytes:
    """An uncompressed layer of the tree at ``root``: sorted entries, numeric owners only,
    so that equal trees give equal bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def image_blobs(
    rootfs: Path, *, platform: Platform | None = None
) -> tuple[bytes, dict[Digest, bytes]]:
    """The manifest and every blob (config, layer) of the image of ``rootfs``, whose
    config says ``platform`` (default: this host's)."""
    layer = layer_tar(rootfs)
    platform = platform or host_platform()
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=CREATED,
        config=ContainerConfig(
            env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
            cmd=("sh",),
        ),
        diff_ids=(Digest.from_bytes(layer),),
        history=(History(created=CREATED, created_by="dockyard examples/busybox_image.py"),),
    )
    config_bytes = config.to_bytes()
    manifest = ImageManifest(
        config=Descriptor.of(MediaType.OCI_CONFIG, config_bytes),
        layers=(Descriptor.of(MediaType.layer("uncompressed"), layer),),
    )
    blobs = {Digest.from_bytes(b): b for b in (layer, config_bytes)}
    return manifest.to_bytes(), blobs


async def store_image(
    state_dir: Path, rootfs: Path, *, name: str = NAME, layout: Path | None = None
) -> Digest:
    """Put the image of ``rootfs`` into the image store of ``state_dir`` as ``name`` (and
    into an OCI layout at ``layout``); the manifest digest."""
    manifest, blobs = image_blobs(rootfs)
    content = ContentStore(state_dir / "content")
    try:
        for blob in (*blobs.values(), manifest):
            if not content.has(Digest.from_bytes(blob)):
                await content.write_blob(blob)
        target = Descriptor.of(MediaType.OCI_MANIFEST, manifest)
        with ImageStore.open(state_dir, content) as images:
            await images.put(name, target)
        if layout is not None:
            tagged = Descriptor.of(
                MediaType.OCI_MANIFEST,
                manifest,
                annotations={REF_NAME_ANNOTATION: name.rpartition(":")[2]},
            )
            await write_oci_layout(content, ImageIndex(manifests=(tagged,)), layout)
        return target.digest
    finally:
        content.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="the engine's state directory")
    parser.add_argument("--name", default=NAME, help=f"image name (default {NAME})")
    parser.add_argument("--layout", type=Path, help="also write an OCI layout directory here")
    args = parser.parse_args(argv)
    if args.state_dir is None:
        from dockyard.engine import default_state_dir

        args.state_dir = default_state_dir()
    with tempfile.TemporaryDirectory(prefix="busybox-rootfs-") as tmp:
        rootfs = make_busybox_rootfs(Path(tmp) / "rootfs", epoch=EPOCH)
        digest = asyncio.run(
            store_image(args.state_dir, rootfs, name=args.name, layout=args.layout)
        )
    print(f"{args.name} {digest} in {args.state_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
