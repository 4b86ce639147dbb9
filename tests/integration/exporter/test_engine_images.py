"""Whole builds through the engine: a Dockerfile ``FROM`` an image pulled from the test
registry, ending in the image (pushed), OCI and Docker exporters; the same build on two
empty state dirs with ``SOURCE_DATE_EPOCH`` gives the same digests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockyard.engine import BuildRequest, Engine, EngineConfig
from dockyard.exporter import ExportResponse, parse_output
from dockyard.frontend import DockerfileOptions
from dockyard.oci import ImageConfig, ImageManifest, parse_manifest
from dockyard.registry import Reference, RegistryClient
from dockyard.session import Session
from dockyard.testing.registry import RegistryProcess
from tests.integration.conftest import need_tools

from .conftest import EPOCH, Stores, close_stores, open_stores, run

DOCKERFILE = """\
FROM {base}
RUN echo hello > /hello && mkdir -p /app && echo data > /app/data
ENV MODE=release
RUN rm /etc/hostname
CMD ["cat", "/hello"]
"""


async def _push_base(tmp_path: Path, busybox_rootfs: Path, name: str) -> ExportResponse:
    from dockyard.exporter import ExportRequest, resolve

    s: Stores = await open_stores(tmp_path / "seed", "native")
    try:
        chain = await s.busybox_chain(busybox_rootfs, when=EPOCH - 100)
        exporter = resolve(parse_output(f"type=image,name={name},push=true"), s.services)
        return await exporter.export(ExportRequest(ref=chain[0], epoch=EPOCH - 100))
    finally:
        await close_stores(s)


async def _build(
    state: Path, registry: RegistryProcess, context: Path, outputs: list[str]
) -> tuple[Engine, Any]:
    engine = await Engine.open(
        EngineConfig(state_dir=state, runtime="crun", registry=registry.registry_config())
    )
    session = Session(directories={"context": context, "dockerfile": context})
    async with engine.sessions.attach(session):
        response = await engine.solve(
            BuildRequest(
                frontend="dockerfile.v0",
                frontend_options=DockerfileOptions(build_args={"SOURCE_DATE_EPOCH": str(EPOCH)}),
                exports=tuple(parse_output(o) for o in outputs),
                session_id=session.id,
            )
        )
    return engine, response


async def _config(engine: Engine, response: ExportResponse) -> tuple[ImageManifest, ImageConfig]:
    assert response.image_digest is not None
    manifest = parse_manifest(await engine.content.read(response.image_digest))
    assert isinstance(manifest, ImageManifest)
    return manifest, ImageConfig.parse(await engine.content.read(manifest.config.digest))


async def test_from_a_registry_image_to_every_image_exporter(
    tmp_path: Path, busybox_rootfs: Path, registry: RegistryProcess
) -> None:
    need_tools("crun", "skopeo", "umoci")
    base_name = registry.ref("base/busybox:1")
    base = await _push_base(tmp_path, busybox_rootfs, base_name)
    base_manifest = json.loads(
        await run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{base_name}")
    )
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base_name))

    results = []
    for n in range(2):
        pushed = registry.ref(f"built/app:{n}")
        oci, docker = tmp_path / f"oci{n}.tar", tmp_path / f"docker{n}.tar"
        engine, response = await _build(
            tmp_path / f"state{n}",
            registry,
            context,
            [
                f"type=image,name={pushed},push=true,rewrite-timestamp=true",
                f"type=oci,dest={oci},name=app:{n},rewrite-timestamp=true",
                f"type=docker,dest={docker},name=app:{n},rewrite-timestamp=true",
            ],
        )
        try:
            image, oci_resp, _docker_resp = response.exports
            manifest, config = await _config(engine, image)
            results.append((image.image_digest, oci_resp.image_digest, manifest, config))
            assert response.exporter_response["containerimage.digest"] in (
                image.image_digest,
                oci_resp.image_digest,
                _docker_resp.image_digest,
            )
            stored = await engine.images.get(str(Reference.parse(pushed)))
            assert stored.target.digest == image.image_digest
        finally:
            await engine.close()
        async with RegistryClient(config=registry.registry_config()) as client:
            assert (await client.resolve(pushed)).digest == image.image_digest
        inspected = json.loads(await run("skopeo", "inspect", f"oci-archive:{oci}"))
        assert inspected["Digest"] == oci_resp.image_digest
        await run("skopeo", "inspect", f"docker-archive:{docker}")

    (digest0, oci0, manifest, config), (digest1, oci1, _, _) = results
    assert digest0 == digest1  # same input, empty state dirs, SOURCE_DATE_EPOCH
    assert oci0 == oci1
    # the base image's layer is reused as it was pushed: not recompressed, not rewritten
    assert manifest.layers[0].digest == base_manifest["layers"][0]["digest"]
    assert base.image_digest is not None
    assert len(manifest.layers) == 3  # base, RUN echo, RUN rm
    created_by = [(h.created_by, h.empty_layer) for h in config.history]
    assert created_by[0][1] is False
    assert [e for _, e in created_by[1:]] == [False, True, False, True]
    assert {h.created for h in config.history[1:]} == {"2023-11-14T22:13:20Z"}
    assert config.created == "2023-11-14T22:13:20Z"
    assert config.config.cmd == ("cat", "/hello")

    layout = tmp_path / "layout"
    layout.mkdir()
    await run("tar", "-xf", str(tmp_path / "oci0.tar"), "-C", str(layout))
    await run("umoci", "unpack", "--image", f"{layout}:0", str(tmp_path / "bundle"))
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "hello").read_text() == "hello\n"
    assert (rootfs / "app" / "data").read_text() == "data\n"
    assert not (rootfs / "etc" / "hostname").exists()
    assert (rootfs / "bin" / "busybox").is_file()
