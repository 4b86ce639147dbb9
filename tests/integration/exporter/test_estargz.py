"""``compression=estargz`` end to end: a Dockerfile build ``FROM`` a plain gzip image
exported as an OCI archive and pushed to a real registry as eStargz (base layers
converted with ``force-compression``), the build cache pushed as eStargz too; umoci
(Go's ``archive/tar``, a non-lazy puller) unpacks it; a second engine pulls the image
back and runs a step on it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dockyard.engine import BuildRequest, Engine, EngineConfig
from dockyard.exporter import parse_output
from dockyard.frontend import DockerfileOptions
from dockyard.remotecache import parse_cache_export
from dockyard.session import Session
from dockyard.testing.registry import RegistryProcess
from tests.integration.conftest import need_tools
from tests.unit.exporter.estargz_check import check_chunks, parse

from .conftest import EPOCH, run
from .test_engine_images import _push_base

TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"
SIZE = "io.containers.estargz.uncompressed-size"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

DOCKERFILE = """\
FROM {base}
RUN echo hello > /hello && mkdir -p /app && head -c 9000000 /dev/urandom > /app/big
RUN rm /etc/hostname
CMD ["cat", "/hello"]
"""

AGAIN = """\
FROM {image}
RUN test "$(cat /hello)" = hello && test -s /app/big && test ! -e /stargz.index.json \\
    && test ! -e /etc/hostname && echo pulled > /pulled
"""


async def _build(
    state: Path,
    registry: RegistryProcess,
    context: Path,
    outputs: list[str],
    cache_to: Sequence[str] = (),
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
                cache_exports=tuple(parse_cache_export(c) for c in cache_to),
                session_id=session.id,
            )
        )
    return engine, response


def _oci_blobs(archive: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest of an OCI archive with one image, and its blobs by digest."""
    blobs: dict[str, bytes] = {}
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            if member.name.startswith("blobs/sha256/"):
                f = tf.extractfile(member)
                assert f is not None
                blobs["sha256:" + member.name.rsplit("/", 1)[1]] = f.read()
        index_file = tf.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
    manifest = json.loads(blobs[index["manifests"][0]["digest"]])
    return manifest, blobs


def _check_estargz_layers(manifest: dict[str, Any], blobs: dict[str, bytes]) -> None:
    config = json.loads(blobs[manifest["config"]["digest"]])
    assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]) == 3
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert layer["mediaType"] == GZIP
        parsed = parse(blobs[layer["digest"]])
        check_chunks(parsed)
        plain = parsed.uncompressed
        assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
        assert layer["annotations"][TOC_DIGEST] == (
            "sha256:" + hashlib.sha256(parsed.toc_json).hexdigest()
        )
        assert layer["annotations"][SIZE] == str(len(plain))
    big = [
        e
        for layer in manifest["layers"]
        for e in parse(blobs[layer["digest"]]).entries
        if e["name"] == "app/big"
    ]
    assert [e["type"] for e in big] == ["reg", "chunk", "chunk"]  # 4 MiB chunks


async def test_estargz_build_push_pull_and_run(
    tmp_path: Path, busybox_rootfs: Path, registry: RegistryProcess
) -> None:
    need_tools("crun", "skopeo", "umoci")
    base_name = registry.ref("esgz/busybox:1")
    await _push_base(tmp_path, busybox_rootfs, base_name)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base_name))
    pushed = registry.ref("esgz/app:1")
    cache_ref = registry.ref("esgz/cache:1")
    archive = tmp_path / "app.tar"
    engine, response = await _build(
        tmp_path / "state",
        registry,
        context,
        [
            f"type=oci,dest={archive},name=app:1,compression=estargz,force-compression=true",
            f"type=image,name={pushed},push=true,compression=estargz,force-compression=true,"
            "oci-mediatypes=true",
        ],
        [f"type=registry,ref={cache_ref},mode=max,compression=estargz,force-compression=true"],
    )
    try:
        oci_resp, image_resp = response.exports
        assert oci_resp.image_digest == image_resp.image_digest
    finally:
        await engine.close()

    manifest, blobs = _oci_blobs(archive)
    _check_estargz_layers(manifest, blobs)
    # the registry holds the same manifest, annotations and all
    raw = await run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{pushed}")
    assert json.loads(raw)["layers"] == manifest["layers"]
    # the cache manifest's layers are eStargz blobs with their annotations
    cache_manifest = json.loads(
        await run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{cache_ref}")
    )
    assert cache_manifest["layers"]
    for layer in cache_manifest["layers"]:
        assert TOC_DIGEST in layer["annotations"]
        assert layer["annotations"]["containerd.io/uncompressed"].startswith("sha256:")

    # a non-lazy puller (umoci: Go's archive/tar) unpacks it; the TOC stays out
    layout = tmp_path / "layout"
    layout.mkdir()
    await run("tar", "-xf", str(archive), "-C", str(layout))
    await run("umoci", "unpack", "--image", f"{layout}:1", str(tmp_path / "bundle"))
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "hello").read_text() == "hello\n"
    assert (rootfs / "app" / "big").stat().st_size == 9_000_000
    assert not (rootfs / "etc" / "hostname").exists()
    assert not (rootfs / "stargz.index.json").exists()

    # Dockyard pulls it back (verifying every diff_id) and runs a step on it
    again = tmp_path / "again"
    again.mkdir()
    (again / "Dockerfile").write_text(AGAIN.format(image=pushed))
    forced = tmp_path / "again-esgz.tar"
    engine, response = await _build(
        tmp_path / "state2",
        registry,
        again,
        [
            f"type=oci,dest={tmp_path / 'again.tar'}",
            f"type=oci,dest={forced},compression=estargz,force-compression=true",
        ],
    )
    await engine.close()
    # under force, the pulled layers that already are eStargz are kept (BuildKit's Is)
    forced_manifest, forced_blobs = _oci_blobs(forced)
    assert forced_manifest["layers"][:3] == manifest["layers"]
    check_chunks(parse(forced_blobs[forced_manifest["layers"][3]["digest"]]))
    again_manifest, again_blobs = _oci_blobs(tmp_path / "again.tar")
    # a plain gzip export reuses the pulled eStargz blobs as they are (they are gzip)
    assert [x["digest"] for x in again_manifest["layers"][:3]] == [
        x["digest"] for x in manifest["layers"]
    ]
    top = again_blobs[again_manifest["layers"][-1]["digest"]]
    with tarfile.open(fileobj=io.BytesIO(top)) as tf:
        assert "pulled" in tf.getnames()
