"""Multi-platform builds on a real ``dockyardd``: the platform list travels as BuildKit's
``platform`` frontend attribute; the daemon stores an index, streams an OCI tarball and
a per-platform tar back, pushes every manifest then the index, and refuses a local
directory output with a clear error (it would need per-platform client targets)."""

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
from tests.integration.platforms import MULTI

CROSS = """\
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETPLATFORM
RUN echo $TARGETPLATFORM > /p
FROM scratch
COPY --from=build /p /p
"""


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

    # a type=local directory cannot be split on the client yet: refused, clearly
    code = await cli(
        running, "--platform", MULTI, "-o", f"type=local,dest={tmp_path / 'out'}", str(ctx)
    )
    assert code != 0
    assert "multi-platform build exports type=local only" in capsys.readouterr().err
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
