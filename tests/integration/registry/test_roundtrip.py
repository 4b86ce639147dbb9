"""Push then pull against a real docker-registry; skopeo confirms what is there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from dockyard.core import Digest, NotFoundError, Platform
from dockyard.oci import ContainerConfig, Descriptor, ImageConfig, MediaType
from dockyard.registry import BytesReader, FileSink, Reference
from dockyard.testing.registry import RegistryProcess, build_image, build_index

from .conftest import client_for, run, skopeo_inspect, skopeo_inspect_json


class Recording(httpx.AsyncBaseTransport):
    """Passes requests to the network and remembers them."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def sample_image(tag: str, **options: object) -> object:
    return build_image(
        [
            {"etc/hello.txt": f"hello {tag}\n", "bin/tool": b"\x7fELF" + os.urandom(2000)},
            {"etc/second.txt": "second layer\n", "etc/link": "->hello.txt"},
        ],
        config=ContainerConfig(
            env=("PATH=/bin", "TAG=" + tag),
            cmd=("/bin/tool",),
            working_dir="/etc",
            labels={"org.example.tag": tag},
        ),
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("oci", [True, False], ids=["oci", "docker"])
async def test_push_then_pull_round_trip(
    registry: RegistryProcess, tmp_path: Path, oci: bool
) -> None:
    image = build_image(
        [{"etc/hello.txt": "hello\n", "bin/tool": os.urandom(5000)}, {"etc/x": "y"}],
        oci=oci,
        config=ContainerConfig(cmd=("/bin/tool",), exposed_ports=("80/tcp",)),
    )
    name = f"roundtrip/{'oci' if oci else 'docker'}:v1"
    async with client_for(registry) as client:
        pushed = await client.push_image(
            registry.ref(name),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
        )
        assert pushed.digest == image.digest
        resolved = await client.resolve(registry.ref(name), platform=Platform.parse("linux/amd64"))
        assert resolved.digest == image.digest
        assert resolved.descriptor.media_type == image.media_type
        assert resolved.manifest.data == image.manifest_bytes
        assert resolved.config_bytes == image.config_bytes
        assert resolved.config == image.config
        for i, layer in enumerate(resolved.image_manifest.layers):
            target = tmp_path / f"layer{i}"
            await client.fetch_blob(registry.ref(name), layer, FileSink(target))
            assert target.read_bytes() == image.blobs[layer.digest]
        # A HEAD says the same digest without a body.
        head = await client.head_manifest(registry.ref(name))
        assert head == Descriptor.of(image.media_type, image.manifest_bytes)

    raw = await skopeo_inspect(registry, name, "--raw")
    assert raw.encode() == image.manifest_bytes  # byte for byte: the digest is preserved
    info = await skopeo_inspect_json(registry, name)
    assert info["Digest"] == image.digest
    assert info["Layers"] == [str(layer.digest) for layer in image.manifest.layers]
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    config = await skopeo_inspect(registry, name, "--config", "--raw")
    assert ImageConfig.parse(config.encode()) == image.config


async def test_multi_platform_index(registry: RegistryProcess) -> None:
    images = [
        build_image([{"arch": arch}], architecture=arch, variant=variant)
        for arch, variant in (("amd64", ""), ("arm64", "v8"), ("arm", "v7"))
    ]
    index, index_bytes = build_index(images)
    blobs = {d: b for image in images for d, b in image.blobs.items()}
    async with client_for(registry) as client:
        pushed = await client.push_image(
            registry.ref("multi:latest"),
            manifest=index_bytes,
            media_type=index.media_type,
            blobs=blobs,
            children=[(i.manifest_bytes, i.media_type) for i in images],
        )
        assert pushed.digest == Digest.from_bytes(index_bytes)
        for wanted, expected in (
            ("linux/amd64", images[0]),
            ("linux/aarch64", images[1]),
            ("linux/arm64/v8", images[1]),
            ("linux/arm", images[2]),
            ("linux/arm/v7", images[2]),
        ):
            resolved = await client.resolve(registry.ref("multi"), platform=Platform.parse(wanted))
            assert resolved.digest == pushed.digest
            assert resolved.manifest.descriptor.digest == expected.digest, wanted
            assert resolved.index is not None
            assert resolved.index.data == index_bytes
        with pytest.raises(NotFoundError, match="no image for platform linux/s390x"):
            await client.resolve(registry.ref("multi"), platform=Platform.parse("linux/s390x"))

    assert (await skopeo_inspect(registry, "multi:latest", "--raw")).encode() == index_bytes
    arm = await skopeo_inspect_json(registry, "multi:latest", "--override-arch", "arm64")
    assert arm["Digest"] == pushed.digest  # skopeo names the index it started from
    assert arm["Architecture"] == "arm64"
    assert arm["Layers"] == [str(layer.digest) for layer in images[1].manifest.layers]


async def test_unknown_repository_and_tag(registry: RegistryProcess) -> None:
    async with client_for(registry) as client:
        with pytest.raises(NotFoundError) as info:
            await client.resolve(registry.ref("does/not/exist"))
        assert str(info.value) == f"image not found: {registry.ref('does/not/exist:latest')}"
        image = build_image([{"a": "b"}])
        await client.push_image(
            registry.ref("known:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
        )
        with pytest.raises(NotFoundError, match=r"^image not found: .*/known:v2$"):
            await client.resolve(registry.ref("known:v2"))
        with pytest.raises(NotFoundError, match="image not found"):
            await client.head_manifest(registry.ref("known:v2"))


async def test_chunked_upload(registry: RegistryProcess) -> None:
    data = os.urandom((1 << 20) + 12345)
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    recording = Recording()
    async with client_for(registry, transport=recording) as client:
        outcome = await client.push_blob(
            registry.ref("chunked"), desc, BytesReader(data, 100_000), chunk_size=256 * 1024
        )
        assert outcome == "uploaded"
        assert await client.get_blob(registry.ref("chunked"), desc, limit=len(data)) == data
    patches = [r for r in recording.requests if r.method == "PATCH"]
    assert [r.headers["content-range"] for r in patches] == [
        f"{i * 262144}-{min((i + 1) * 262144, len(data)) - 1}" for i in range(5)
    ]
    puts = [r for r in recording.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert puts[0].headers["content-length"] == "0"


async def test_cross_repository_mount(registry: RegistryProcess) -> None:
    image = build_image([{"shared": os.urandom(3000)}, {"more": "x"}])
    recording = Recording()
    async with client_for(registry, transport=recording) as client:
        await client.push_image(
            registry.ref("mount/source:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
        )
        before = len(recording.requests)
        await client.push_image(
            registry.ref("mount/target:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
            mount_from=[Reference.parse(registry.ref("mount/source"))],
        )
        assert client.statistics().blobs_mounted == len(image.blobs)
        resolved = await client.resolve(registry.ref("mount/target:v1"))
        assert resolved.digest == image.digest
    uploads = [r for r in recording.requests[before:] if r.method in ("PATCH",)]
    blob_puts = [
        r for r in recording.requests[before:] if r.method == "PUT" and "/blobs/" in r.url.path
    ]
    assert uploads == []
    assert blob_puts == []
    mounts = [r for r in recording.requests[before:] if r.url.params.get("mount")]
    assert {r.url.params["from"] for r in mounts} == {"mount/source"}
    info = await skopeo_inspect_json(registry, "mount/target:v1")
    assert info["Digest"] == image.digest


async def test_existing_blobs_are_not_uploaded_again(registry: RegistryProcess) -> None:
    image = build_image([{"again": "same"}])
    async with client_for(registry) as client:
        for _ in range(2):
            await client.push_image(
                registry.ref("again:v1"),
                manifest=image.manifest_bytes,
                media_type=image.media_type,
                blobs=image.blobs,
            )
        assert client.statistics().blobs_skipped == len(image.blobs)


async def test_skopeo_copies_what_we_pushed(registry: RegistryProcess, tmp_path: Path) -> None:
    image = build_image([{"etc/os-release": "ID=test\n"}], oci=False)
    async with client_for(registry) as client:
        await client.push_image(
            registry.ref("copyme:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
        )
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    # skopeo verifies every blob's digest while copying.
    await run(
        "skopeo",
        "copy",
        "--policy",
        str(policy),
        "--src-tls-verify=false",
        f"docker://{registry.ref('copyme:v1')}",
        f"dir:{tmp_path / 'out'}",
    )
    assert (tmp_path / "out" / "manifest.json").read_bytes() == image.manifest_bytes
    for digest, blob in image.blobs.items():
        assert (tmp_path / "out" / digest.hex).read_bytes() == blob
