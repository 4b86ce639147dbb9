"""Every exporter over real snapshot chains, checked by the tools that consume them."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.content import ContentStore, OCILayout
from dockyard.core import Digest, NotFoundError, Platform
from dockyard.exporter import ExportRequest, ExportResponse, parse_output, resolve
from dockyard.oci import ImageConfig, ImageManifest, MediaType, parse_manifest
from dockyard.registry import RegistryClient
from dockyard.testing.registry import RegistryProcess
from tests.integration.conftest import need_tools

from .conftest import EPOCH, Stores, close_stores, open_stores, run


async def _export(
    stores: Stores, spec: str, ref: Any, *, epoch: int | None = None
) -> ExportResponse:
    exporter = resolve(parse_output(spec), stores.services)
    return await exporter.export(ExportRequest(ref=ref, epoch=epoch))


def _check_app_tree(root: Path) -> None:
    assert (root / "app" / "hello.txt").read_text() == "hello\n"
    assert os.readlink(root / "app" / "link") == "hello.txt"
    assert os.stat(root / "app" / "hard").st_ino == os.stat(root / "app" / "hello.txt").st_ino
    st = os.stat(root / "app" / "hello.txt")
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert not (root / "etc" / "hostname").exists()
    assert (root / "etc" / "passwd").is_file()
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert sorted(os.listdir(root / "home" / "app")) == ["new"]


async def test_local(stores: Stores, busybox_rootfs: Path, tmp_path: Path) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    dest = tmp_path / "out"
    await _export(stores, f"type=local,dest={dest}", chain[-1])
    _check_app_tree(dest)
    assert os.stat(dest / "bin" / "busybox").st_mode & 0o777 == 0o755


async def test_tar(stores: Stores, busybox_rootfs: Path, tmp_path: Path) -> None:
    chain = await stores.busybox_chain(busybox_rootfs, when=EPOCH + 10)
    out = tmp_path / "out.tar"
    await _export(stores, f"type=tar,dest={out}", chain[-1], epoch=EPOCH)
    listing = await run("tar", "-tvf", str(out))
    assert "app/hello.txt" in listing
    dest = tmp_path / "x"
    dest.mkdir()
    await run("tar", "-xpf", str(out), "-C", str(dest), "--numeric-owner")
    _check_app_tree(dest)
    with tarfile.open(out) as tf:
        assert max(m.mtime for m in tf.getmembers()) <= EPOCH


async def _umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    need_tools("umoci")
    await run("umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle))
    return bundle / "rootfs"


async def test_oci_archive(stores: Stores, busybox_rootfs: Path, tmp_path: Path) -> None:
    need_tools("skopeo")
    chain = await stores.busybox_chain(busybox_rootfs)
    out = tmp_path / "image.tar"
    resp = await _export(stores, f"type=oci,dest={out},name=app:1", chain[-1], epoch=EPOCH)
    inspected = json.loads(await run("skopeo", "inspect", f"oci-archive:{out}"))
    assert inspected["Digest"] == resp.image_digest
    assert len(inspected["Layers"]) == 2  # the empty step made no layer
    copied = tmp_path / "copied"
    await run("skopeo", "copy", f"oci-archive:{out}", f"oci:{copied}:app")
    layout = tmp_path / "layout"
    layout.mkdir()
    await run("tar", "-xf", str(out), "-C", str(layout))
    rootfs = await _umoci_unpack(layout, "1", tmp_path / "bundle")
    _check_app_tree(rootfs)


async def test_oci_layout_directory(stores: Stores, busybox_rootfs: Path, tmp_path: Path) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    layout = tmp_path / "layout"
    await _export(stores, f"type=oci,dest={layout},tar=false,name=app:dir", chain[-1])
    rootfs = await _umoci_unpack(layout, "dir", tmp_path / "bundle")
    _check_app_tree(rootfs)


async def test_docker_archive(stores: Stores, busybox_rootfs: Path, tmp_path: Path) -> None:
    need_tools("skopeo")
    chain = await stores.busybox_chain(busybox_rootfs)
    out = tmp_path / "image.tar"
    resp = await _export(stores, f"type=docker,dest={out},name=app:2", chain[-1])
    inspected = json.loads(await run("skopeo", "inspect", "--config", f"docker-archive:{out}"))
    assert inspected["rootfs"]["diff_ids"] == [str(d) for d in await _diff_ids(stores, resp)]
    copied = tmp_path / "copied"
    await run("skopeo", "copy", f"docker-archive:{out}", f"oci:{copied}:x")
    rootfs = await _umoci_unpack(copied, "x", tmp_path / "bundle")
    _check_app_tree(rootfs)
    await _docker_load_if_available(out, "app:2")


async def _diff_ids(stores: Stores, resp: ExportResponse) -> tuple[Digest, ...]:
    assert resp.image_digest is not None
    manifest = parse_manifest(await stores.content.read(resp.image_digest))
    assert isinstance(manifest, ImageManifest)
    return ImageConfig.parse(await stores.content.read(manifest.config.digest)).diff_ids


async def _docker_load_if_available(archive: Path, name: str) -> None:
    """``docker load`` + ``docker run`` where a docker engine runs (optional in CI)."""
    import shutil

    docker = shutil.which("docker")
    if docker is None:
        return
    probe = await _try(docker, "info")
    if probe is None:
        return
    await run(docker, "load", "-i", str(archive))
    out = await run(docker, "run", "--rm", "--network=none", name, "cat", "/app/hello.txt")
    assert out == "hello\n"
    await run(docker, "rmi", name)


async def _try(*args: str) -> str | None:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode() if proc.returncode == 0 else None


async def test_image_is_stored(stores: Stores, busybox_rootfs: Path) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    resp = await _export(stores, "type=image,name=local/app:3", chain[-1])
    local = await stores.images.resolve("docker.io/local/app:3", Platform.parse("linux/amd64"))
    assert local.manifest_descriptor.digest == resp.image_digest
    assert local.manifest.media_type == MediaType.DOCKER_MANIFEST
    assert len(local.config.diff_ids) == 2
    assert [h.empty_layer for h in local.config.history] == [False, False, True]


async def test_push_and_pull_back(
    stores: Stores, busybox_rootfs: Path, registry: RegistryProcess, tmp_path: Path
) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    name = registry.ref(f"exported-{stores.cache.snapshotter.name}:1")
    resp = await _export(stores, f"type=image,name={name},push=true", chain[-1])
    assert resp.pushed == (f"{name.rsplit(':', 1)[0]}@{resp.image_digest}",)
    inspected = json.loads(await run("skopeo", "inspect", "--tls-verify=false", f"docker://{name}"))
    assert inspected["Digest"] == resp.image_digest
    async with RegistryClient(config=registry.registry_config()) as client:
        pulled = await client.resolve(name)
        assert pulled.digest == resp.image_digest
        assert pulled.config.diff_ids == await _diff_ids(stores, resp)
    # pulled back by another tool too
    await run("skopeo", "copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path}/p:x")
    # a second push of the same image sends nothing new and keeps the digest
    again = await _export(stores, f"type=registry,name={name}", chain[-1])
    assert again.image_digest == resp.image_digest


async def test_push_zstd_oci(
    stores: Stores, busybox_rootfs: Path, registry: RegistryProcess
) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    name = registry.ref(f"zstd-{stores.cache.snapshotter.name}:1")
    resp = await _export(
        stores,
        f"type=image,name={name},push=true,compression=zstd,force-compression=true",
        chain[1],
    )
    raw = json.loads(
        await run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}")
    )
    assert raw["mediaType"] == MediaType.OCI_MANIFEST
    assert {layer["mediaType"] for layer in raw["layers"]} == {MediaType.OCI_LAYER_ZSTD}
    async with RegistryClient(config=registry.registry_config()) as client:
        assert (await client.resolve(name)).digest == resp.image_digest


@pytest.mark.parametrize("rewrite", [False, True])
async def test_source_date_epoch_on_empty_state_dirs(
    tmp_path: Path, kind: str, busybox_rootfs: Path, rewrite: bool
) -> None:
    """Two builds of the same input on empty state dirs give the same image digest:
    with fixed file times from SOURCE_DATE_EPOCH alone, with build-time file times (and
    whiteouts of deletions, made at build time) when rewrite-timestamp clamps them."""
    digests = []
    for n in range(2):
        s = await open_stores(tmp_path / f"state{n}", kind)
        try:
            if rewrite:
                chain = await s.busybox_chain(busybox_rootfs)
            else:
                chain = await s.busybox_chain(busybox_rootfs, when=EPOCH - 5, delete=False)
            extra = ",rewrite-timestamp=true" if rewrite else ""
            resp = await _export(s, f"type=image,name=repro{extra}", chain[-1], epoch=EPOCH)
            oci = tmp_path / f"oci{n}.tar"
            await _export(s, f"type=oci,dest={oci},name=repro{extra}", chain[-1], epoch=EPOCH)
            digests.append((resp.image_digest, oci.read_bytes()))
        finally:
            await close_stores(s)
    assert digests[0][0] == digests[1][0]
    assert digests[0][1] == digests[1][1]


async def test_layers_round_trip_through_the_store(
    stores: Stores, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """The OCI archive's blobs verify against their descriptors when read back."""
    chain = await stores.busybox_chain(busybox_rootfs)
    out = tmp_path / "image.tar"
    resp = await _export(stores, f"type=oci,dest={out},name=rt", chain[-1])
    other = ContentStore(tmp_path / "other")
    try:
        with OCILayout.open(out) as layout:
            desc = layout.resolve("latest")
            copied = await layout.copy_to(other, desc)
        assert desc.digest == resp.image_digest
        assert len(copied) == 4  # manifest, config, two layers
        with pytest.raises(NotFoundError):
            OCILayout.open(tmp_path / "missing.tar")
    finally:
        other.close()


async def test_push_mounts_layers_from_other_repositories(
    stores: Stores, busybox_rootfs: Path, registry: RegistryProcess
) -> None:
    chain = await stores.busybox_chain(busybox_rootfs)
    kind = stores.cache.snapshotter.name
    first = registry.ref(f"mount-src-{kind}:1")
    second = registry.ref(f"mount-dst-{kind}:1")
    async with RegistryClient(config=registry.registry_config()) as client:
        services = dataclasses.replace(stores.services, registry=client)
        await resolve(parse_output(f"type=image,name={first},push=true"), services).export(
            ExportRequest(ref=chain[0])
        )
        before = client.statistics()
        resp = await resolve(parse_output(f"type=image,name={second},push=true"), services).export(
            ExportRequest(ref=chain[1])
        )
        after = client.statistics()
        assert after.blobs_mounted - before.blobs_mounted == 1  # the busybox layer
        assert (await client.resolve(second)).digest == resp.image_digest
