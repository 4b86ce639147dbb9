"""``dockyard build --platform linux/amd64,linux/arm64`` end to end on the embedded
engine: an index in the image store (and ``dockyard images`` showing it), an OCI
tarball, per-platform directories and a push of every manifest then the index."""

from __future__ import annotations

import asyncio
import json
import tarfile
import urllib.request
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.content import ContentStore, ImageStore
from dockyard.core import host_platform
from dockyard.oci import MediaType
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import need_emulation, requirement_missing
from tests.integration.platforms import (
    CROSS,
    MULTI,
    UNAME,
    index_architectures,
    other_platform,
    store_busybox_index,
)


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CROSS)
    return ctx


def _build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), "--progress", "plain", *args])


async def _architectures(state: Path, name: str) -> tuple[str, list[str]]:
    content = ContentStore(state / "content")
    try:
        with ImageStore.open(state, content) as images:
            stored = await images.get(name)
            archs = await index_architectures(content, stored.target.digest)
            return stored.target.media_type, archs
    finally:
        content.close()


def test_image_store_local_and_oci(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path)
    iid, meta = tmp_path / "iid", tmp_path / "meta.json"
    code = _build(
        state, "--platform", MULTI, "-t", "example.test/multi:1", "--iidfile", str(iid),
        "--metadata-file", str(meta), str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    kind, archs = asyncio.run(_architectures(state, "example.test/multi:1"))
    assert kind == MediaType.OCI_INDEX
    assert archs == ["amd64", "arm64"]
    digest = json.loads(meta.read_text())["containerimage.digest"]
    assert iid.read_text() == digest  # the index digest is the image ID

    assert main(["images", "--state-dir", str(state)]) == 0
    listing = capsys.readouterr().out
    assert "example.test/multi" in listing
    assert digest.split(":")[1][:12] in listing

    out, oci = tmp_path / "out", tmp_path / "oci.tar"
    assert _build(state, "--platform", "linux/amd64", "--platform", "linux/arm64/v8",
                  "-o", f"type=local,dest={out}", str(ctx)) == 0  # fmt: skip
    assert (out / "linux_amd64" / "p").read_text() == "linux/amd64\n"
    assert (out / "linux_arm64" / "p").read_text() == "linux/arm64\n"
    assert _build(state, "--platform", MULTI, "-o", f"type=oci,dest={oci}", str(ctx)) == 0
    with tarfile.open(oci) as tf:
        top = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
    assert top["manifests"][0]["mediaType"] == MediaType.OCI_INDEX
    # docker tarballs (and --load) take one platform: refused before building
    assert _build(state, "--platform", MULTI, "-o", f"type=docker,dest={tmp_path}/d.tar",
                  str(ctx)) == 2  # fmt: skip
    assert "multi-platform" in capsys.readouterr().err


def test_push_sends_every_manifest_then_the_index(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(REGISTRY_BINARY).exists():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    registry = start_registry(tmp_path / "registry")
    try:
        ref = registry.ref("multi:pushed")
        meta = tmp_path / "meta.json"
        code = _build(state, "--platform", MULTI, "-t", ref, "--push",
                      "--metadata-file", str(meta), str(_context(tmp_path)))  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        digest = json.loads(meta.read_text())["containerimage.digest"]
        request = urllib.request.Request(
            f"{registry.url}/v2/multi/manifests/pushed",
            headers={"Accept": f"{MediaType.OCI_INDEX}, {MediaType.DOCKER_MANIFEST_LIST}"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.headers["Docker-Content-Digest"] == digest
            index = json.loads(answer.read())
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
        for entry in index["manifests"]:
            request = urllib.request.Request(
                f"{registry.url}/v2/multi/manifests/{entry['digest']}",
                headers={"Accept": entry["mediaType"]},
            )
            with urllib.request.urlopen(request) as answer:
                manifest = json.loads(answer.read())
            blob = f"{registry.url}/v2/multi/blobs/{manifest['config']['digest']}"
            with urllib.request.urlopen(blob) as answer:
                config = json.loads(answer.read())
            assert config["architecture"] == entry["platform"]["architecture"]
    finally:
        registry.stop()


def test_a_foreign_platform_runs_under_emulation(
    busybox_rootfs: Path,
    foreign_busybox_rootfs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mountinfo_unchanged: None,
) -> None:
    """``dockyard build --platform linux/arm64`` (beside an amd64 host) runs the stage's RUN
    under the QEMU handler scripts/setup registered; ``dockyard debug binfmt`` lists it."""
    other = other_platform()
    need_emulation(other)
    state = tmp_path / "state"
    asyncio.run(
        store_busybox_index(state, {host_platform(): busybox_rootfs, other: foreign_busybox_rootfs})
    )
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN uname -m > /uname\n")
    out = tmp_path / "out"
    code = _build(state, "--platform", str(other), "-o", f"type=local,dest={out}", str(ctx))
    assert code == 0, capsys.readouterr().err
    assert (out / "uname").read_text() == UNAME[other.architecture] + "\n"
    capsys.readouterr()
    assert main(["debug", "binfmt"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    row = next(r for r in rows if r[0] == str(other))
    assert row[1] == "emulated"
