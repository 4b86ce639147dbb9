"""``dockyard image push|pull|tag|history`` against a real ``docker-registry``: a pushed
image is what the registry serves, a pulled one is a ``FROM`` base with the registry
gone and saves to an archive, indexes are pulled per platform or whole, and failures
name the registry and the reference."""

from __future__ import annotations

import asyncio
import base64
import json
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.core import Digest, host_platform
from dockyard.oci import MediaType
from dockyard.registry import RegistryClient
from dockyard.testing.registry import (
    REGISTRY_BINARY,
    BuiltImage,
    RegistryProcess,
    build_image,
    build_index,
    start_registry,
)
from tests.integration.conftest import requirement_missing


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    with start_registry(tmp_path / "registry") as process:
        yield process


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, state: Path, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        if args[0] == "image":
            argv = [*args[:2], "--state-dir", str(state), *args[2:]]
        else:
            argv = [args[0], "--state-dir", str(state), *args[1:]]
        rc = main(argv)
        out, err = self.capsys.readouterr()
        assert rc == code, f"dockyard {' '.join(args)} exited {rc}: {err}"
        assert "Traceback" not in err
        return out if code == 0 else err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def registry_digest(registry: RegistryProcess, repository: str, tag: str) -> str:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": ", ".join(MediaType.ACCEPT_MANIFESTS)},
    )
    with urllib.request.urlopen(request) as answer:
        return str(answer.headers["Docker-Content-Digest"])


def test_push_then_pull_into_a_fresh_store_then_build_from_it_offline(
    state: Path, registry: RegistryProcess, cli: Cli, tmp_path: Path
) -> None:
    name = registry.ref("bb:1")
    cli(state, "image", "tag", "busybox", name)
    out = cli(state, "image", "push", name)
    lines = out.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/bb]"
    assert any(line.endswith(": Pushed") for line in lines), out
    tag, _, digest, _, size = lines[-1].split()
    assert tag == "1:"
    assert digest.startswith("sha256:")
    assert int(size) > 0
    assert registry_digest(registry, "bb", "1") == digest
    # again: the registry has every blob
    again = cli(state, "image", "push", name).splitlines()
    assert not [line for line in again if line.endswith(": Pushed")], again
    assert any(line.endswith(": Layer already exists") for line in again)
    assert again[-1] == lines[-1]

    fresh = tmp_path / "fresh"
    out = cli(fresh, "image", "pull", name)
    assert "1: Pulling from bb" in out
    assert ": Pull complete" in out
    assert f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {name}" in out
    assert out.splitlines()[-1] == name
    assert "Image is up to date" in cli(fresh, "image", "pull", name)
    listed = cli(fresh, "images", "--digests").splitlines()
    assert listed[1].split()[:3] == [f"{registry.host}/bb", "1", digest]
    assert cli(fresh, "image", "pull", "-q", name).strip() == name

    # the registry is gone: a build FROM the pulled image needs nothing of it
    registry.stop()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nENV STEP=two\nRUN echo built > /built\n")
    cli(fresh, "build", "-q", "-t", "out", str(ctx))
    history = cli(fresh, "image", "history", "--no-trunc", "out").splitlines()
    assert history[0].split()[:5] == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE"]
    assert history[1].startswith("sha256:")
    assert "RUN /bin/sh -c echo built > /built # buildkit" in history[1]
    assert "ENV STEP=two" in history[2]
    assert " 0B" in history[2]
    assert all(line.startswith("<missing>") for line in history[2:])
    rows = [
        json.loads(line)
        for line in cli(fresh, "image", "history", "--format", "json", "out").splitlines()
    ]
    base_rows = [
        json.loads(line)
        for line in cli(fresh, "image", "history", "--format", "json", name).splitlines()
    ]
    assert rows[2:] == [{**r, "ID": "<missing>"} for r in base_rows]

    # the built image pushed: only its own layer travels
    registry.start()
    built = registry.ref("out:1")
    cli(fresh, "image", "tag", "out", built)
    sent = cli(fresh, "image", "push", built).splitlines()
    assert len([line for line in sent if line.endswith(": Pushed")]) == 1, sent
    base_layers = [line for line in lines if line.endswith(": Pushed")]
    assert len(
        [line for line in sent if line.endswith((": Layer already exists", ": Mounted from bb"))]
    ) == len(base_layers), sent
    assert registry_digest(registry, "out", "1") == sent[-1].split()[2]

    archive = tmp_path / "bb.tar"
    cli(fresh, "image", "save", name, "-o", str(archive))
    with tarfile.open(archive) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == [name]


def _platform_images() -> tuple[BuiltImage, BuiltImage, str]:
    host = host_platform()
    other = "arm64" if host.architecture != "arm64" else "amd64"
    here = build_image([{"which": "host"}], architecture=host.architecture, variant=host.variant)
    there = build_image([{"which": other}], architecture=other)
    return here, there, other


async def _push_index(registry: RegistryProcess, ref: str, images: list[BuiltImage]) -> Digest:
    index, data = build_index(images)
    async with RegistryClient(config=registry.registry_config()) as client:
        blobs = {d: b for image in images for d, b in image.blobs.items()}
        desc = await client.push_image(
            ref,
            manifest=data,
            media_type=index.media_type,
            blobs=blobs,
            children=[(i.manifest_bytes, i.media_type) for i in images],
        )
    return desc.digest


def _target(cli: Cli, state: Path, name: str) -> dict[str, str]:
    (inspected,) = json.loads(cli(state, "image", "inspect", name))
    return dict(inspected["Descriptor"])


def test_indexes_per_platform_whole_and_pushed_again(
    registry: RegistryProcess, cli: Cli, tmp_path: Path
) -> None:
    here, there, other = _platform_images()
    ref = registry.ref("multi:1")
    index_digest = asyncio.run(_push_index(registry, ref, [here, there]))
    state = tmp_path / "state"

    # a tag of an index: the name points at this host's manifest
    out = cli(state, "image", "pull", ref)
    assert f"Digest: {index_digest}" in out
    assert out.count(": Pull complete") == 1
    assert _target(cli, state, ref)["digest"] == here.digest
    # another platform, chosen strictly
    cli(state, "image", "pull", "--platform", f"linux/{other}", ref)
    assert _target(cli, state, ref)["digest"] == there.digest
    err = cli(state, "image", "pull", "--platform", "linux/s390x", ref, code=1)
    assert "no image for platform linux/s390x" in err
    assert registry.host in err
    # the whole index: every platform's blobs, the name keeps the index
    out = cli(state, "image", "pull", "--all-platforms", ref)
    assert out.count(": Already exists") == 2
    assert ": Pull complete" not in out
    assert _target(cli, state, ref)["digest"] == index_digest
    assert _target(cli, state, ref)["mediaType"] == MediaType.OCI_INDEX

    # pushed elsewhere as a whole: the same index digest, children by digest
    copy = registry.ref("copy:2")
    cli(state, "image", "tag", ref, copy)
    out = cli(state, "image", "push", copy)
    assert out.splitlines()[-1].startswith(f"2: digest: {index_digest} size: ")
    assert "Mounted from multi" in out  # the layers are in the registry's multi already
    assert registry_digest(registry, "copy", "2") == index_digest
    for image in (here, there):
        assert registry_digest(registry, "copy", image.digest) == image.digest

    # by digest without --all-platforms: the name names the index, with this host's
    # content only; pushing it says why it cannot
    partial = tmp_path / "partial"
    by_digest = f"{registry.ref('multi')}@{index_digest}"
    assert cli(partial, "image", "pull", "-q", by_digest).strip() == by_digest
    assert _target(cli, partial, by_digest)["digest"] == index_digest
    cli(partial, "image", "tag", by_digest, registry.ref("partial:1"))
    err = cli(partial, "image", "push", registry.ref("partial:1"), code=1)
    assert f"manifest {there.digest} for linux/{other}" in err
    assert "pull it with --all-platforms" in err

    # a single-platform image that is not the one asked for
    single = registry.ref("single:1")
    asyncio.run(_push_single(registry, single, there))
    err = cli(partial, "image", "pull", "--platform", "linux/s390x", single, code=1)
    assert "does not match the specified platform" in err
    err = cli(partial, "image", "pull", registry.ref("single:nope"), code=1)
    assert f"image not found: {registry.ref('single:nope')}" in err


async def _push_single(registry: RegistryProcess, ref: str, image: BuiltImage) -> None:
    async with RegistryClient(config=registry.registry_config()) as client:
        await client.push_image(
            ref, manifest=image.manifest_bytes, media_type=image.media_type, blobs=image.blobs
        )


def test_all_tags(registry: RegistryProcess, cli: Cli, tmp_path: Path) -> None:
    one = build_image([{"a": "1"}])
    two = build_image([{"a": "2"}])
    asyncio.run(_push_single(registry, registry.ref("seed:1"), one))
    asyncio.run(_push_single(registry, registry.ref("seed:2"), two))
    state = tmp_path / "state"
    cli(state, "image", "pull", registry.ref("seed:1"))
    cli(state, "image", "pull", registry.ref("seed:2"))
    cli(state, "image", "tag", registry.ref("seed:1"), registry.ref("app:a"))
    cli(state, "image", "tag", registry.ref("seed:2"), registry.ref("app:b"))
    cli(state, "image", "tag", registry.ref("seed:2"), registry.ref("elsewhere:c"))
    out = cli(state, "image", "push", "--all-tags", registry.ref("app"))
    assert [line.split()[:3] for line in out.splitlines() if ": digest: " in line] == [
        ["a:", "digest:", one.digest],
        ["b:", "digest:", two.digest],
    ]
    assert registry_digest(registry, "app", "a") == one.digest
    assert registry_digest(registry, "app", "b") == two.digest
    quiet = cli(state, "image", "push", "-q", "-a", registry.ref("app")).split()
    assert quiet == [
        f"{registry.ref('app:a')}@{one.digest}",
        f"{registry.ref('app:b')}@{two.digest}",
    ]
    err = cli(state, "image", "push", "-a", registry.ref("nothing"), code=1)
    assert f"An image does not exist locally with the tag: {registry.ref('nothing')}" in err


def test_registry_failures_name_the_registry_and_the_reference(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    image = build_image([{"a": "private"}])
    with start_registry(tmp_path / "registry", auth="htpasswd", tls=True) as registry:
        user, password = next(iter(registry.users.items()))
        state = tmp_path / "state"
        seed = tmp_path / "seed"
        # an image in the store to push: pulled from an anonymous registry
        with start_registry(tmp_path / "open") as open_registry:
            asyncio.run(_push_single(open_registry, open_registry.ref("x:1"), image))
            cli(seed, "image", "pull", open_registry.ref("x:1"))
            cli(seed, "image", "tag", open_registry.ref("x:1"), registry.ref("private:1"))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
        err = cli(seed, "image", "push", registry.ref("private:1"), code=1)
        assert f"registry {registry.host} requires authentication" in err, err
        assert registry.ref("private:1") in err

        config = tmp_path / "docker-config"
        config.mkdir()
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        out = cli(seed, "image", "push", registry.ref("private:1"))
        assert out.splitlines()[-1].startswith(f"1: digest: {image.digest} ")
        out = cli(state, "image", "pull", registry.ref("private:1"))
        assert password not in out
        assert _target(cli, state, registry.ref("private:1"))["digest"] == image.digest

        # the registry is down: exit 1 naming both
        registry.stop()
        err = cli(seed, "image", "push", registry.ref("private:1"), code=1)
        assert registry.host in err
        assert "private:1" in err
