"""Multi-platform test helpers: a stored image turned into an index over two platforms
(the host's manifest beside a copy whose config says another architecture), and a real
multi-architecture busybox (the host's busybox-static beside the other architecture's,
whose RUN steps run under QEMU emulation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dockyard.content import ContentStore, ImageStore
from dockyard.core import Digest, Platform, host_platform
from dockyard.oci import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
    parse_manifest,
)

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")
MULTI = f"{AMD64},{ARM64}"

#: A cross-compiling Dockerfile: its RUN step runs on the build platform and writes the
#: target platform into ``/p``, which a ``scratch`` stage of each platform copies.
CROSS = """\
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETPLATFORM
RUN echo $TARGETPLATFORM > /p
FROM scratch
COPY --from=build /p /p
"""
BUSYBOX = "docker.io/library/busybox:latest"


def build_step_prefix(target: Platform) -> str:
    """How a multi-platform build names the platform of a step in a stage ``FROM
    --platform=$BUILDPLATFORM`` whose ``TARGET*`` arguments say ``target``:
    ``linux/amd64``, or ``linux/amd64->arm64`` for another target (BuildKit's names)."""
    build = host_platform()
    if target.architecture == build.architecture and target.os == build.os:
        return str(build)
    suffix = target.architecture + (f"/{target.variant}" if target.variant else "")
    return f"{build}->{suffix}" if target.os == build.os else f"{build}->{target}"


def other_platform() -> Platform:
    """The platform of the copy: arm64 beside an amd64 host (amd64 on an arm64 one)."""
    return ARM64 if host_platform().architecture != "arm64" else AMD64


async def store_busybox_index(
    state: Path, rootfs: dict[Platform, Path], *, name: str = BUSYBOX
) -> Digest:
    """Store an OCI index of one busybox image per platform of ``rootfs`` (each made by
    ``examples/busybox_image.py`` from that platform's root filesystem) as ``name`` in
    ``state``'s image store; the index digest."""
    from tests.integration.engine.conftest import _example

    image_blobs = _example("busybox_image").image_blobs
    content = ContentStore(state / "content")
    try:
        entries = []
        for platform, root in rootfs.items():
            manifest, blobs = image_blobs(root, platform=platform)
            for blob in (*blobs.values(), manifest):
                if not content.has(Digest.from_bytes(blob)):
                    await content.write_blob(blob)
            entries.append(Descriptor.of(MediaType.OCI_MANIFEST, manifest, platform=platform))
        index = ImageIndex(manifests=tuple(entries)).to_bytes()
        await content.write_blob(index)
        with ImageStore.open(state, content) as images:
            await images.put(name, Descriptor.of(MediaType.OCI_INDEX, index))
        return Digest.from_bytes(index)
    finally:
        content.close()


async def index_architectures(content: ContentStore, index: Digest) -> list[str]:
    """The architecture of each manifest of the stored index ``index``, in order; each
    manifest's config says the architecture of its entry's platform (asserted)."""
    parsed = parse_manifest(await content.read(index))
    assert isinstance(parsed, ImageIndex)
    archs = []
    for entry in parsed.manifests:
        manifest = parse_manifest(await content.read(entry.digest))
        assert isinstance(manifest, ImageManifest)
        config = ImageConfig.parse(await content.read(manifest.config.digest))
        assert entry.platform is not None
        assert config.architecture == entry.platform.architecture
        archs.append(config.architecture)
    return archs


UNAME = {"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}
"""What ``uname -m`` says in a process of each architecture."""


async def make_multi_arch(state: Path, name: str, extra: Platform | None = None) -> Digest:
    """Replace the single-manifest image ``name`` in ``state``'s image store with an OCI
    index of its manifest (the host's platform) and a copy for ``extra`` (default
    :func:`other_platform`): same layers, a config saying ``extra``. The index digest."""
    extra = extra or other_platform()
    content = ContentStore(state / "content")
    try:
        with ImageStore.open(state, content) as images:
            stored = await images.get(name)
            manifest_bytes = await content.read(stored.target.digest)
            manifest = parse_manifest(manifest_bytes, stored.target.media_type)
            assert isinstance(manifest, ImageManifest)
            config = ImageConfig.parse(await content.read(manifest.config.digest))
            host = config.platform
            copy = dataclasses.replace(
                config, architecture=extra.architecture, os=extra.os, variant=extra.variant
            ).to_bytes()
            copy_manifest = dataclasses.replace(
                manifest, config=Descriptor.of(manifest.config.media_type, copy)
            ).to_bytes()
            for blob in (copy, copy_manifest):
                await content.write_blob(blob)
            index = ImageIndex(
                manifests=(
                    dataclasses.replace(
                        Descriptor.of(stored.target.media_type, manifest_bytes), platform=host
                    ),
                    Descriptor.of(manifest.media_type, copy_manifest, platform=extra),
                )
            ).to_bytes()
            await content.write_blob(index)
            await images.put(name, Descriptor.of(MediaType.OCI_INDEX, index))
            return Digest.from_bytes(index)
    finally:
        content.close()
