"""Multi-platform Dockerfile builds on the real engine: a graph per platform solved in
one job (shared build-platform work runs once), exported as an index, per-platform
directories or an OCI layout; RUN for a foreign platform the host cannot emulate and a
base image without the platform fail clearly."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from dockyard.core import DockyardError, Platform, UsageError, host_platform
from dockyard.engine import Engine
from dockyard.frontend import DockerfileOptions
from dockyard.oci import ImageIndex, MediaType, parse_manifest
from tests.integration.platforms import (
    AMD64,
    ARM64,
    build_step_prefix,
    index_architectures,
    make_multi_arch,
    other_platform,
)

from .conftest import BUSYBOX
from .test_builds import dockerfile_build

CROSS = """\
FROM --platform=$BUILDPLATFORM busybox AS tools
RUN echo shared-tools-step > /tools
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETPLATFORM
COPY --from=tools /tools /tools
RUN echo $TARGETPLATFORM > /p
FROM scratch
COPY --from=build /p /p
"""

BOTH = DockerfileOptions(platforms=(AMD64, ARM64))


def _context(tmp_path: Path, dockerfile: str = CROSS) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


async def test_image_store_gets_an_index_and_shared_work_runs_once(
    engine: Engine, tmp_path: Path
) -> None:
    reporter, response = await dockerfile_build(
        engine, _context(tmp_path), options=BOTH, outputs=("type=image,name=example.test/m:1",)
    )
    meta = response.exporter_response  # type: ignore[attr-defined]
    assert "containerimage.config.digest" not in meta
    stored = await engine.images.get("example.test/m:1")
    assert stored.target.media_type == MediaType.OCI_INDEX
    assert str(stored.target.digest) == meta["containerimage.digest"]
    index = parse_manifest(await engine.content.read(stored.target.digest))
    assert isinstance(index, ImageIndex)
    assert [m.platform for m in index.manifests] == [AMD64, ARM64]
    await index_architectures(engine.content, stored.target.digest)
    # the tools stage is the same op for both platforms: it ran once
    runs = {
        s.digest
        for s in reporter.statuses()
        if "shared-tools-step" in s.name and s.started is not None and not s.cached
    }
    assert len(runs) == 1
    # step names carry their stage's platform (the build platform's for the shared
    # stage, with the target of a cross-compiling one), as BuildKit's
    names = {s.name for s in reporter.statuses()}
    assert {
        f"[{build_step_prefix(AMD64)} build 3/3] RUN echo linux/amd64 > /p",
        f"[{build_step_prefix(ARM64)} build 3/3] RUN echo linux/arm64 > /p",
        f"[{host_platform()} tools 2/2] RUN echo shared-tools-step > /tools",
        "[linux/amd64 stage-2 1/1] COPY --from=build /p /p",
        "[linux/arm64 stage-2 1/1] COPY --from=build /p /p",
    } <= names
    assert not any(n.startswith("[build ") for n in names)


async def test_local_tar_and_oci_outputs(engine: Engine, tmp_path: Path) -> None:
    out, tar, oci = tmp_path / "out", tmp_path / "out.tar", tmp_path / "oci.tar"
    await dockerfile_build(
        engine,
        _context(tmp_path),
        options=BOTH,
        outputs=(
            f"type=local,dest={out}",
            f"type=tar,dest={tar}",
            f"type=oci,dest={oci},name=example.test/m:oci",
        ),
    )
    assert (out / "linux_amd64" / "p").read_text() == "linux/amd64\n"
    assert (out / "linux_arm64" / "p").read_text() == "linux/arm64\n"
    with tarfile.open(tar) as tf:
        assert tf.extractfile("linux_arm64/p").read() == b"linux/arm64\n"  # type: ignore[union-attr]
    with tarfile.open(oci) as tf:
        top = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        (entry,) = top["manifests"]
        assert entry["mediaType"] == MediaType.OCI_INDEX
        hex_ = entry["digest"].split(":")[1]
        inner = json.loads(tf.extractfile(f"blobs/sha256/{hex_}").read())  # type: ignore[union-attr]
    assert [m["platform"]["architecture"] for m in inner["manifests"]] == ["amd64", "arm64"]


async def test_docker_output_is_refused_before_building(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="multi-platform"):
        await dockerfile_build(
            engine, _context(tmp_path), options=BOTH, outputs=(f"type=docker,dest={tmp_path}/d",)
        )


async def test_a_base_with_both_platforms_and_a_run_on_the_foreign_one(
    engine: Engine, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await engine.close()
    await make_multi_arch(state, BUSYBOX)
    from .conftest import open_engine

    async with open_engine(state) as reopened:
        ctx = _context(tmp_path, "FROM busybox\nCOPY --from=busybox /bin/busybox /copied\n")
        await dockerfile_build(
            reopened, ctx, options=BOTH, outputs=("type=image,name=example.test/base:1",)
        )
        stored = await reopened.images.get("example.test/base:1")
        for platform in (AMD64, ARM64):
            local = await reopened.images.resolve("example.test/base:1", platform=platform)
            assert local.config.architecture == platform.architecture
        # a RUN in the stage of a platform this host cannot run fails with the hint (no
        # binfmt_misc emulation: detection looks at an empty directory)
        monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(tmp_path / "no-binfmt-misc"))
        (tmp_path / "bad").mkdir()
        bad = _context(tmp_path / "bad", "FROM busybox\nRUN true\n")
        with pytest.raises(DockyardError, match="FROM --platform=\\$BUILDPLATFORM") as info:
            await dockerfile_build(reopened, bad, options=BOTH)
        assert f"Dockerfile:2: cannot run a {other_platform()} process" in str(info.value)
        assert "dockyard debug binfmt --install" in str(info.value)
        assert stored is not None
        # a platform the base image does not have: an error naming it
        missing = DockerfileOptions(platforms=(AMD64, Platform.parse("linux/riscv64")))
        (tmp_path / "m").mkdir()
        plain = _context(tmp_path / "m", "FROM busybox\n")
        with pytest.raises(DockyardError, match="linux/riscv64"):
            await dockerfile_build(reopened, plain, options=missing)
