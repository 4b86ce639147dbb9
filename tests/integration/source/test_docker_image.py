"""``docker-image://`` sources against a real ``docker-registry`` on loopback, and the
local image store."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard import llb
from dockyard.core import (
    AuthError,
    CollectingReporter,
    ContentError,
    NotFoundError,
    Platform,
    VertexProgress,
    host_platform,
)
from dockyard.dockerfile import ConvertOptions, ImageMetaResolver, convert, parse_dockerfile
from dockyard.llbsolver import JobOptions, SourceRequest
from dockyard.oci import ImageIndex
from dockyard.registry import RegistryClient, StaticCredentials, _direct
from dockyard.session import Session
from dockyard.solver import Vertex, VertexContext
from dockyard.source import StoreSink
from dockyard.testing.registry import REGISTRY_BINARY, RegistryProcess, start_registry
from tests.integration.conftest import need_tools, requirement_missing

from .conftest import Engine, MadeImage, layer_tar, make_image, open_engine, read_tree, tar_of


def _need_registry() -> None:
    need_tools("openssl", "htpasswd")
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    _need_registry()
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
async def engine(
    registry: RegistryProcess, tmp_path: Path, mountinfo_unchanged: None
) -> AsyncIterator[Engine]:
    async with open_engine(tmp_path / "state", registry=registry.registry_config()) as running:
        yield running


async def push(registry: RegistryProcess, name: str, image: MadeImage) -> str:
    ref = registry.ref(name)
    async with RegistryClient(config=registry.registry_config()) as client:
        await client.push_image(
            ref, manifest=image.manifest_bytes, media_type=image.manifest.media_type,
            blobs=image.blobs,
        )  # fmt: skip
    return ref


def _blob_path(registry: RegistryProcess, digest: str) -> Path:
    hexd = digest.removeprefix("sha256:")
    return registry.root / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


@pytest.fixture(scope="module")
def base_tar(busybox_rootfs: Path) -> bytes:
    return tar_of(busybox_rootfs)


async def test_resolve_without_pull_then_snapshot_and_share_layers(
    engine: Engine, registry: RegistryProcess, base_tar: bytes, busybox_rootfs: Path
) -> None:
    first = make_image([(base_tar, "gzip"), (layer_tar({"app/one": b"one"}), "gzip")])
    second = make_image([(base_tar, "gzip"), (layer_tar({"app/two": b"two"}), "zstd")])
    ref1 = await push(registry, "share/first:v1", first)
    ref2 = await push(registry, "share/second:v1", second)

    # the image config resolver: digest and config, no layer fetched
    canonical, config = await engine.images.resolve_image_config(ref1)
    assert canonical == f"{ref1}@{first.digest}"
    assert config == first.config.to_bytes()
    assert not any(engine.content.has(d.digest) for d in first.manifest.layers)
    resolver: ImageMetaResolver = engine.images.meta_resolver()
    found = await resolver.resolve(
        ref1, platform=host_platform(), resolve_mode=llb.ResolveMode.DEFAULT
    )
    assert (found.ref, found.digest, found.config) == (ref1, first.digest, config)
    assert engine.unpacker.statistics().unpacked == 0

    ref, reporter = await engine.solve(llb.image(ref1).marshal())
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    expected = read_tree(busybox_rootfs)
    expected["app"] = ("dir", 0o755)
    expected["app/one"] = (b"one", 0o644)
    assert tree == expected
    assert engine.unpacker.statistics().unpacked == 2
    progress = {e.id for e in reporter.events if hasattr(e, "id")}
    assert str(first.manifest.layers[0].digest) in progress  # download progress per layer

    ref, _ = await engine.solve(llb.image(ref2).marshal())
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert tree["app/two"] == (b"two", 0o644)
    assert "app/one" not in tree
    stats = engine.unpacker.statistics()
    assert stats.unpacked == 3  # the shared base was unpacked once
    assert stats.reused == 1

    # both again: cache hits, nothing unpacked or downloaded
    both = llb.merge([llb.image(ref1), llb.image(ref2)])
    ref, _ = await engine.solve(both.marshal())
    assert ref is not None
    await ref.release()
    assert engine.unpacker.statistics().unpacked == 3


async def test_concurrent_pulls_of_images_with_a_common_base(
    engine: Engine, registry: RegistryProcess
) -> None:
    base = layer_tar({"base/file": os.urandom(2 << 20)})
    images = [
        make_image([(base, "gzip"), (layer_tar({f"top{i}": str(i).encode()}), "gzip")])
        for i in range(3)
    ]
    refs = [await push(registry, f"concurrent/img{i}:v1", img) for i, img in enumerate(images)]
    merged = llb.merge([llb.image(r) for r in refs])
    ref, _ = await engine.solve(merged.marshal())
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert {k for k in tree if k.startswith("top")} == {"top0", "top1", "top2"}
    assert engine.unpacker.statistics().unpacked == 4
    client = await engine.images._clients.client(())
    assert client.statistics().bytes_received < 3 << 20  # the base blob travelled once


async def test_tampered_blob_is_refused_and_leaves_nothing(
    engine: Engine, registry: RegistryProcess
) -> None:
    image = make_image(
        [(layer_tar({"ok": b"fine"}), "gzip"), (layer_tar({"evil": b"x" * 5000}), "gzip")]
    )
    ref = await push(registry, "tamper/image:v1", image)
    bad = image.manifest.layers[1]
    path = _blob_path(registry, bad.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ContentError, match=str(bad.digest)):
        await engine.solve(llb.image(ref).marshal())
    assert await engine.cache.du() == []
    assert not engine.content.has(bad.digest)
    assert engine.content.ingests() == []


async def test_layers_unpacked_while_they_download_give_the_image_tree(
    engine: Engine, registry: RegistryProcess
) -> None:
    """Several MiB per layer (many reads of a download still being written), a whiteout
    and a file replaced across layers: the same tree as the layers say, every blob
    committed to the content store and no ingest left."""
    big = os.urandom(3 << 20) + bytes(3 << 20)
    many = {f"lib/f{i}": os.urandom(i * 997) for i in range(200)}
    layers = [
        layer_tar({"lib": None, **many, "gone": b"soon"}),
        layer_tar({"opt": None, "opt/big": big, ".wh.gone": b"", "lib/f1": b"new"}),
        layer_tar({"etc": None, "etc/conf": b"c"}),
    ]
    image = make_image([(t, "gzip") for t in layers])
    ref = await push(registry, "stream/image:v1", image)
    result, _ = await engine.solve(llb.image(ref).marshal())
    assert result is not None
    tree = await engine.tree(result)
    await result.release()
    assert tree["opt/big"] == (big, 0o644)
    assert tree["lib/f1"] == (b"new", 0o644)
    assert tree["lib/f199"] == (many["lib/f199"], 0o644)
    assert tree["etc/conf"] == (b"c", 0o644)
    assert "gone" not in tree
    assert all(engine.content.has(d.digest) for d in image.manifest.layers)
    assert engine.content.ingests() == []


async def test_a_large_blob_tampered_near_its_end_is_refused_after_a_partial_unpack(
    engine: Engine, registry: RegistryProcess
) -> None:
    """The unpack follows the download, so most of the layer is applied before the
    download finds the digest wrong: the snapshot and the blob must still go."""
    image = make_image(
        [
            (layer_tar({"ok": b"fine"}), "gzip"),
            (layer_tar({f"f{i}": os.urandom(64 << 10) for i in range(64)}), "gzip"),
        ]
    )
    ref = await push(registry, "tamper/large:v1", image)
    bad = image.manifest.layers[1]
    path = _blob_path(registry, bad.digest)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the last deflate block: the tar itself may still parse
    path.write_bytes(bytes(data))
    with pytest.raises(ContentError, match=str(bad.digest)):
        await engine.solve(llb.image(ref).marshal())
    assert await engine.cache.du() == []
    assert not engine.content.has(bad.digest)
    assert engine.content.ingests() == []


async def test_resolve_modes_and_the_local_image_store(
    engine: Engine, registry: RegistryProcess
) -> None:
    remote = make_image([(layer_tar({"where": b"registry"}), "gzip")])
    ref = await push(registry, "modes/app:v1", remote)

    # local: only the store, which does not have it yet
    with pytest.raises(NotFoundError, match="image not found"):
        await engine.solve(llb.image(ref, resolve_mode="local").marshal())

    # the store gets a different image under the same name
    stored = make_image([(layer_tar({"where": b"store"}), "uncompressed")])
    for blob in (*stored.blobs.values(), stored.manifest_bytes):
        await engine.content.write_blob(blob)
    await engine.image_store.put(ref, stored.descriptor())

    async def where(mode: str) -> bytes:
        solved, _ = await engine.solve(llb.image(ref, resolve_mode=mode).marshal())
        assert solved is not None
        tree = await engine.tree(solved)
        await solved.release()
        value = tree["where"]
        assert isinstance(value, tuple)
        assert isinstance(value[0], bytes)
        return value[0]

    assert await where("local") == b"store"
    assert await where("default") == b"store"
    assert await where("pull") == b"registry"
    canonical, _ = await engine.images.resolve_image_config(ref, resolve_mode="pull")
    assert canonical.endswith(remote.digest)
    canonical, _ = await engine.images.resolve_image_config(ref)
    assert canonical.endswith(stored.digest)


async def test_unknown_images_and_platforms(engine: Engine, registry: RegistryProcess) -> None:
    missing = registry.ref("nothing/here:v1")
    with pytest.raises(NotFoundError, match=re.escape(f"image not found: {missing}")):
        await engine.solve(llb.image(missing).marshal())
    with pytest.raises(NotFoundError, match="image not found"):
        await engine.images.resolve_image_config(missing)
    other = make_image([(layer_tar({"x": b"x"}), "gzip")], platform=Platform.parse("linux/riscv64"))
    index = ImageIndex(manifests=(other.descriptor(platform=Platform.parse("linux/riscv64")),))
    ref = registry.ref("platforms/only-riscv:v1")
    async with RegistryClient(config=registry.registry_config()) as client:
        await client.push_image(
            ref,
            manifest=index.to_bytes(),
            media_type=index.media_type,
            blobs=other.blobs,
            children=((other.manifest_bytes, other.manifest.media_type),),
        )
    with pytest.raises(NotFoundError, match="no image for platform"):
        await engine.solve(llb.image(ref, platform="linux/amd64").marshal())
    solved, _ = await engine.solve(llb.image(ref, platform="linux/riscv64").marshal())
    assert solved is not None
    await solved.release()


async def test_credentials_come_from_the_session(tmp_path: Path, mountinfo_unchanged: None) -> None:
    _need_registry()
    with start_registry(tmp_path / "auth-registry", auth="htpasswd", tls=True) as private:
        image = make_image([(layer_tar({"secret": b"s"}), "gzip")])
        ref = private.ref("private/app:v1")
        creds = StaticCredentials({private.host: private.credentials()})
        async with RegistryClient(config=private.registry_config(), credentials=creds) as client:
            await client.push_image(
                ref, manifest=image.manifest_bytes, media_type=image.manifest.media_type,
                blobs=image.blobs,
            )  # fmt: skip
        async with open_engine(tmp_path / "state", registry=private.registry_config()) as engine:
            with pytest.raises(AuthError, match=re.escape(private.host)):
                await engine.solve(llb.image(ref).marshal())
            solved, _ = await engine.solve(
                llb.image(ref).marshal(), session=Session(credentials=creds)
            )
            assert solved is not None
            assert (await engine.tree(solved))["secret"] == (b"s", 0o644)
            await solved.release()


async def test_dockerfile_from_a_registry_image_with_the_build_context(
    engine: Engine, registry: RegistryProcess, tmp_path: Path
) -> None:
    base = make_image([(layer_tar({"etc/os-release": b"test\n"}), "gzip")])
    ref = await push(registry, "frontend/base:v1", base)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app\n")
    (ctx / "secret.key").write_text("never\n")
    dockerfile = parse_dockerfile(f"FROM {ref}\nENV MODE=test\nCOPY . /app/\n")
    async with engine.sessions.attach(Session(directories={"context": ctx})) as handle:
        result = await convert(
            dockerfile,
            ConvertOptions(session_id=handle.id, dockerignore=("*.key",)),
            engine.images.meta_resolver(session_id=handle.id),
        )
        assert result.base_image_config == base.config
        assert "PATH=/bin" in result.image_config.config.env
        assert "MODE=test" in result.image_config.config.env
        solved = await engine.llb.solve(
            result.definition(), options=JobOptions(session_id=handle.id)
        )
    assert solved is not None
    tree = await engine.tree(solved)
    await solved.release()
    assert tree["etc/os-release"] == (b"test\n", 0o644)
    assert tree["app/app.txt"] == (b"app\n", 0o644)
    assert "app/secret.key" not in tree


async def test_cache_key_resolves_without_pulling(
    engine: Engine, registry: RegistryProcess
) -> None:
    image = make_image([(layer_tar({"k": b"key"}), "gzip")])
    ref = await push(registry, "keys/app:v1", image)
    vertex = Vertex(digest="sha256:test", name="image", op=None)  # type: ignore[arg-type]
    reporter = CollectingReporter()
    ctx = VertexContext.detached(vertex, reporter=reporter)
    request = SourceRequest.parse("docker-image://" + ref, vertex=vertex.ref())
    instance = await engine.images.resolve(request, ctx)
    assert await instance.cache_key(ctx) == str(image.digest)
    assert not engine.content.has(image.manifest.layers[0].digest)
    assert await engine.cache.du() == []
    resolving = [e for e in reporter.events if isinstance(e, VertexProgress)]
    assert resolving[0].name == f"resolve {ref}"
    assert resolving[-1].completed is not None
    snapshot = await instance.snapshot(ctx)
    try:
        assert (await engine.tree(snapshot))["k"] == (b"key", 0o644)
    finally:
        await snapshot.release()


async def test_a_resolved_tag_is_checked_again_with_one_head_not_the_client(
    engine: Engine, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag resolved in a registry is remembered: the next resolve asks the registry
    (one HEAD) whether it moved, and answers from the content store without starting the
    registry client; a moved tag, or a document gone from the store, goes the client's
    way again."""
    first = make_image([(layer_tar({"v": b"1"}), "gzip")])
    ref = await push(registry, "remembered/app:v1", first)
    canonical, config = await engine.images.resolve_image_config(ref)
    assert canonical.endswith(first.digest)

    async def no_client(*args: object, **kwargs: object) -> object:
        raise AssertionError("the registry client was started")

    pool = engine.images._clients
    with monkeypatch.context() as patch:
        patch.setattr(pool, "client", no_client)
        again, again_config = await engine.images.resolve_image_config(ref)
    assert (again, again_config) == (canonical, config)

    second = make_image([(layer_tar({"v": b"2"}), "gzip")])
    await push(registry, "remembered/app:v1", second)  # the tag moves
    with monkeypatch.context() as patch:
        patch.setattr(pool, "client", no_client)
        with pytest.raises(AssertionError, match="client was started"):
            await engine.images.resolve_image_config(ref)
    moved, _ = await engine.images.resolve_image_config(ref)
    assert moved.endswith(second.digest)

    await engine.images.flush()  # its documents are written while the resolve returns
    await engine.content.delete(second.digest)  # the remembered document is gone
    with monkeypatch.context() as patch:
        patch.setattr(pool, "client", no_client)
        with pytest.raises(AssertionError, match="client was started"):
            await engine.images.resolve_image_config(ref)


async def test_a_pinned_resolve_after_the_tag_reads_no_document_again(
    engine: Engine, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The solver resolves ``name@digest`` right after the frontend resolved the tag: the
    manifest and config just read are not read (nor hashed) again; a document gone from
    the content store is not answered from memory."""
    image = make_image([(layer_tar({"p": b"1"}), "gzip")])
    ref = await push(registry, "pinned/app:v1", image)
    canonical, config = await engine.images.resolve_image_config(ref)

    async def no_read(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("a document was read from the content store again")

    with monkeypatch.context() as patch:
        patch.setattr(engine.content, "read", no_read)
        again, again_config = await engine.images.resolve_image_config(canonical)
    assert (again, again_config) == (canonical, config)

    await engine.content.delete(image.digest)
    with monkeypatch.context() as patch:
        patch.setattr(engine.content, "read", no_read)
        patch.setattr(engine.images._clients, "client", no_read)
        with pytest.raises(AssertionError, match="again"):
            await engine.images.resolve_image_config(canonical)


def _blob_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "blob-download"]


async def test_large_layers_come_over_the_direct_download_path(
    engine: Engine, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blobs of 1 MiB and more are read by a thread of their own on a plain socket
    (``registry/_direct.py``); smaller ones (the config, a tiny layer) through httpx."""
    calls: list[str] = []
    real = _direct.direct_get

    async def counting(url: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(url))
        return await real(url, *args, **kwargs)

    monkeypatch.setattr(_direct, "direct_get", counting)
    big = os.urandom(3 << 20)
    image = make_image([(layer_tar({"big": big}), "gzip"), (layer_tar({"small": b"s"}), "gzip")])
    ref = await push(registry, "direct/image:v1", image)
    result, _ = await engine.solve(llb.image(ref).marshal())
    assert result is not None
    tree = await engine.tree(result)
    await result.release()
    assert tree["big"] == (big, 0o644)
    assert tree["small"] == (b"s", 0o644)
    assert calls == [
        f"http://{registry.host}/v2/direct/image/blobs/{image.manifest.layers[0].digest}"
    ]
    assert _blob_threads() == []
    assert engine.content.ingests() == []


async def test_a_pull_cancelled_mid_download_stops_its_thread_and_keeps_no_ingest(
    engine: Engine, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content store's writes stall after the first MiB: the download thread fills
    its read-ahead and waits for room; cancelling the pull must end it, close its
    socket and drop the ingest."""
    image = make_image([(layer_tar({"big": os.urandom(8 << 20)}), "gzip")])
    ref = await push(registry, "direct/cancel:v1", image)
    first_write = asyncio.Event()
    never = asyncio.Event()
    real_write = StoreSink.write

    async def stalling(self: StoreSink, data: bytes) -> None:
        if first_write.is_set():
            await never.wait()
        first_write.set()
        await real_write(self, data)

    monkeypatch.setattr(StoreSink, "write", stalling)
    task = asyncio.create_task(engine.solve(llb.image(ref).marshal()))
    await asyncio.wait_for(first_write.wait(), 30)
    assert _blob_threads()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _blob_threads() == []
    assert engine.content.ingests() == []
    assert not engine.content.has(image.manifest.layers[0].digest)
