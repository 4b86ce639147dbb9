"""Provenance through a real ``dockyardd`` (``--addr``): the request travels as
BuildKit's ``attest:provenance`` frontend attribute; the daemon streams back an OCI
tarball whose index holds an attestation manifest per platform, and syncs each
platform's ``provenance.json`` into a local output."""

from __future__ import annotations

import asyncio
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from tests.integration.daemon.conftest import DaemonProcess
from tests.integration.platforms import CROSS, MULTI


async def cli(daemon: DaemonProcess, *args: str) -> int:
    argv = ["--addr", f"unix://{daemon.socket}", "build", "--progress", "plain", *args]
    return await asyncio.to_thread(main, argv)


def _member(tf: tarfile.TarFile, name: str) -> Any:
    data = tf.extractfile(name)
    assert data is not None
    return json.loads(data.read())


async def test_daemon_attests_every_platform(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CROSS)
    oci, out, meta = tmp_path / "oci.tar", tmp_path / "out", tmp_path / "meta.json"
    code = await cli(
        running, "--platform", MULTI, "--provenance", "mode=max,builder-id=https://ci/9",
        "--build-arg", "DB_PASSWORD=hunter2-hunter2", "--build-arg", "SHOWN=yes", "--metadata-file", str(meta),
        "-o", f"type=oci,dest={oci}", "-o", f"type=local,dest={out}", str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    with tarfile.open(oci) as tf:
        top = _member(tf, "index.json")
        (entry,) = top["manifests"]
        assert entry["digest"] == json.loads(meta.read_text())["containerimage.digest"]
        index = _member(tf, "blobs/sha256/" + entry["digest"].removeprefix("sha256:"))
        manifests = index["manifests"]
        assert [m["platform"]["architecture"] for m in manifests] == [
            "amd64", "arm64", "unknown", "unknown"
        ]  # fmt: skip
        invocations = set()
        for image, attestation in zip(manifests[:2], manifests[2:], strict=True):
            assert attestation["annotations"]["vnd.docker.reference.digest"] == image["digest"]
            manifest = _member(tf, "blobs/sha256/" + attestation["digest"].removeprefix("sha256:"))
            layer = manifest["layers"][0]["digest"].removeprefix("sha256:")
            statement = _member(tf, "blobs/sha256/" + layer)
            assert statement["subject"][0]["digest"]["sha256"] == image["digest"][7:]
            predicate = statement["predicate"]
            assert predicate["builder"] == {"id": "https://ci/9"}
            args = predicate["invocation"]["parameters"]["args"]
            assert args == {"build-arg:SHOWN": "yes"}  # max mode, the password left out
            assert "hunter2-hunter2" not in json.dumps(statement)
            invocations.add(predicate["metadata"]["buildInvocationID"])
        assert len(invocations) == 1  # one build, one invocation id (BuildKit's)
    for platform in ("linux_amd64", "linux_arm64"):
        statement = json.loads((out / platform / "provenance.json").read_text())
        assert statement["subject"][0]["name"] == "p"
    assert "hunter2-hunter2" not in err


async def test_daemon_makes_slsa_v1(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``version=v1`` travels in ``attest:provenance`` to the daemon, which writes the
    SLSA v1 predicate (max mode: the build config and the Dockerfile's source map)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    dockerfile = "FROM scratch\nCOPY Dockerfile /\n"
    (ctx / "Dockerfile").write_text(dockerfile)
    out = tmp_path / "out"
    code = await cli(
        running, "--provenance", "mode=max,version=v1", "-o", f"type=local,dest={out}", str(ctx)
    )
    assert code == 0, capsys.readouterr().err
    statement = json.loads((out / "provenance.json").read_text())
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    predicate = statement["predicate"]
    internal = predicate["buildDefinition"]["internalParameters"]
    assert internal["buildConfig"]["llbDefinition"][-1]["op"] == {}
    source = predicate["runDetails"]["metadata"]["buildkit_metadata"]["source"]
    assert source["infos"][0]["filename"] == "Dockerfile"
    assert predicate["buildDefinition"]["externalParameters"]["request"]["locals"] == [
        {"name": "context"},
        {"name": "dockerfile"},
    ]
