"""Multi-platform builds on a real ``dockyardd``: the platform list travels as BuildKit's
``platform`` frontend attribute; the daemon stores an index, streams an OCI tarball and
a per-platform tar back, syncs a directory per platform (or all merged) into a local
output, pushes every manifest then the index."""

from __future__ import annotations

import asyncio
import json
import tarfile
import urllib.request
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.content import ContentStore, ImageStore
from dockyard.oci import ImageIndex, MediaType, parse_manifest
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import requirement_missing
from tests.integration.daemon.conftest import DaemonProcess
from tests.integration.platforms import ARM64, CROSS, MULTI, build_step_prefix


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CROSS)
    return ctx


async def cli(daemon: DaemonProcess, *args: str) -> int:
    argv = ["--addr", f"unix://{daemon.socket}", "build", "--progress", "plain", *args]
    return await asyncio.to_thread(main, argv)


async def test_daemon_builds_every_platform(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path)
    meta, oci, tar = tmp_path / "meta.json", tmp_path / "oci.tar", tmp_path / "out.tar"
    code = await cli(
        running, "--platform", MULTI, "-t", "example.test/multi:d", "--metadata-file",
        str(meta), "-o", "type=image", "-o", f"type=oci,dest={oci}",
        "-o", f"type=tar,dest={tar}", str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    digest = json.loads(meta.read_text())["containerimage.digest"]
    with tarfile.open(tar) as tf:
        assert tf.extractfile("linux_amd64/p").read() == b"linux/amd64\n"  # type: ignore[union-attr]
        assert tf.extractfile("linux_arm64/p").read() == b"linux/arm64\n"  # type: ignore[union-attr]
    with tarfile.open(oci) as tf:
        top = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
    assert top["manifests"][0]["mediaType"] == MediaType.OCI_INDEX

    # type=local: a directory per platform on the client, or (platform-split=false)
    # every platform's files merged, the last platform's winning
    out, merged = tmp_path / "out", tmp_path / "merged"
    (out / "linux_amd64").mkdir(parents=True)
    (out / "linux_amd64" / "stale").write_text("kept")
    code = await cli(
        running, "--platform", MULTI, "-o", f"type=local,dest={out}",
        "-o", f"type=local,dest={merged},platform-split=false", str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["linux_amd64", "linux_arm64"]
    assert (out / "linux_amd64" / "p").read_text() == "linux/amd64\n"
    assert (out / "linux_arm64" / "p").read_text() == "linux/arm64\n"
    assert (out / "linux_amd64" / "stale").read_text() == "kept"  # merged, as BuildKit's
    assert [p.name for p in merged.iterdir()] == ["p"]
    assert (merged / "p").read_text() == "linux/arm64\n"
    # the steps carry their platform; the shared build-platform stage shows once
    assert "[linux/amd64 stage-1 1/1] COPY --from=build /p /p" in err
    assert "[linux/arm64 stage-1 1/1] COPY --from=build /p /p" in err
    assert f"[{build_step_prefix(ARM64)} build 2/2] RUN echo linux/arm64 > /p" in err
    assert await running.stop() == 0
    content = ContentStore(running.state / "content")
    try:
        with ImageStore.open(running.state, content) as images:
            stored = await images.get("example.test/multi:d")
            assert str(stored.target.digest) == digest
            index = parse_manifest(await content.read(stored.target.digest))
            assert isinstance(index, ImageIndex)
            assert [m.platform.architecture for m in index.manifests if m.platform] == [
                "amd64",
                "arm64",
            ]
    finally:
        content.close()


async def test_daemon_pushes_the_index(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(REGISTRY_BINARY).exists():  # noqa: ASYNC240 - one stat
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    registry = start_registry(tmp_path / "registry")
    try:
        ref = registry.ref("multi:daemon")
        code = await cli(running, "--platform", MULTI, "-t", ref, "--push", str(_context(tmp_path)))
        err = capsys.readouterr().err
        assert code == 0, err
        request = urllib.request.Request(
            f"{registry.url}/v2/multi/manifests/daemon",
            headers={"Accept": MediaType.OCI_INDEX},
        )
        with urllib.request.urlopen(request) as answer:  # noqa: ASYNC210 - loopback, tiny
            index = json.loads(answer.read())
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    finally:
        registry.stop()
