"""OCI layouts of the client used through a real ``dockyardd``: ``--cache-to`` /
``--cache-from type=local`` and ``--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]``
go through the session's content stores (the daemon reads and writes the client's
layout by store id and digest only, never by path), interchangeable with the layouts
the embedded engine writes and reads."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from pathlib import Path

import grpc
import pytest

from dockyard.api._gen import control_pb2 as pb
from dockyard.cli.main import main
from dockyard.client import Client
from dockyard.core import NotFoundError, UsageError, host_platform
from dockyard.daemon import error_from_rpc
from tests.integration.daemon.client import DaemonClient
from tests.integration.daemon.conftest import DaemonProcess, store_busybox

REF_NAME = "org.opencontainers.image.ref.name"
RANDOM = "FROM busybox\nRUN head -c 16 /dev/urandom | od -x > /random.txt\n"


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


def addr(daemon: DaemonProcess) -> str:
    return f"unix://{daemon.socket}"


def context(root: Path, dockerfile: str) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(dockerfile)
    return root


def check_layout(layout: Path) -> list[dict[str, object]]:
    """``layout`` is a complete OCI layout: every blob under its digest, nothing
    half-written; its index entries."""
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    blobs = layout / "blobs" / "sha256"
    for blob in blobs.iterdir():
        assert not blob.name.endswith(".tmp"), blob
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    for entry in entries:
        assert (blobs / entry["digest"].removeprefix("sha256:")).is_file()
    return list(entries)


def tagged(entries: list[dict[str, object]], tag: str) -> dict[str, object]:
    (entry,) = [e for e in entries if e.get("annotations") == {REF_NAME: tag}]
    return entry


@pytest.fixture
async def embedded_state(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A state directory of an embedded engine (not the daemon's) holding busybox."""
    state = tmp_path / "embedded-state"
    await store_busybox(state, busybox_rootfs)
    return state


async def test_a_local_cache_goes_to_the_client_and_comes_back(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(tmp_path / "ctx", RANDOM)
    cache = tmp_path / "cache"
    # a layout that already names something else: that entry stays
    cache.mkdir()
    other = b'{"schemaVersion":2}'
    other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
    (cache / "blobs/sha256").mkdir(parents=True)
    (cache / "blobs/sha256" / other_digest.removeprefix("sha256:")).write_bytes(other)
    foreign = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": other_digest, "size": len(other), "annotations": {REF_NAME: "other"}}  # fmt: skip
    (cache / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [foreign]}))
    (cache / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    code = await cli(
        "--addr", addr(running), "build", "--progress", "plain",
        "--cache-to", f"type=local,dest={cache},mode=max", "-o", str(tmp_path / "first"), str(ctx),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    entries = check_layout(cache)
    assert foreign in entries
    manifest = tagged(entries, "latest")
    assert len(entries) == 2
    document = json.loads(
        (cache / "blobs/sha256" / str(manifest["digest"]).removeprefix("sha256:")).read_bytes()
    )
    assert document["config"]["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"
    assert document["layers"]  # the RUN step's layer (mode=max: every step's)
    # nothing of it was written on the daemon's side under the client's path
    assert not list(running.state.rglob("cache/index.json"))

    # the daemon forgets everything; the client's layout brings the step back
    async with Client.connect(addr(running)) as client:
        pruned = await client.prune(all=True)
    assert any("head -c 16" in r.description for r in pruned.records)
    capsys.readouterr()
    for extra in ("", ",tag=latest", f",digest={manifest['digest']}"):
        out = tmp_path / f"again{len(extra)}"
        code = await cli(
            "--addr", addr(running), "build", "--progress", "plain",
            "--cache-from", f"type=local,src={cache}{extra}", "-o", str(out), str(ctx),
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        assert (out / "random.txt").read_text() == (tmp_path / "first/random.txt").read_text()
        assert "CACHED" in err

    # a layout that is not there: a warning naming the flag, and the build goes on
    code = await cli(
        "--addr", addr(running), "build", "--progress", "plain",
        "--cache-from", f"type=local,src={tmp_path / 'nowhere'}", str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"--cache-from type=local,src={tmp_path / 'nowhere'}" in err
    assert "does not exist" in err
    assert "Traceback" not in err


async def test_layouts_written_embedded_and_on_the_daemon_are_interchangeable(
    running: DaemonProcess,
    embedded_state: Path,
    busybox_rootfs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # embedded → daemon: the daemon never had these layers; it reads them from the client
    ctx = context(tmp_path / "one", RANDOM + "RUN echo one > /one.txt\n")
    embedded_cache = tmp_path / "embedded-cache"
    code = await cli(
        "build", "--state-dir", str(embedded_state), "--progress", "plain",
        "--cache-to", f"type=local,dest={embedded_cache},mode=max",
        "-o", str(tmp_path / "embedded-out"), str(ctx),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    code = await cli(
        "--addr", addr(running), "build", "--progress", "plain",
        "--cache-from", f"type=local,src={embedded_cache}", "-o", str(tmp_path / "daemon-out"),
        str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "CACHED" in err
    assert (tmp_path / "daemon-out/random.txt").read_text() == (
        tmp_path / "embedded-out/random.txt"
    ).read_text()

    # daemon → embedded (a fresh state directory)
    ctx = context(tmp_path / "two", RANDOM + "RUN echo two > /two.txt\n")
    daemon_cache = tmp_path / "daemon-cache"
    code = await cli(
        "--addr", addr(running), "build", "--progress", "plain",
        "--cache-to", f"type=local,dest={daemon_cache},tag=v2",
        "-o", str(tmp_path / "daemon-two"), str(ctx),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    tagged(check_layout(daemon_cache), "v2")
    fresh = tmp_path / "fresh-state"
    await store_busybox(fresh, busybox_rootfs)
    capsys.readouterr()
    code = await cli(
        "build", "--state-dir", str(fresh), "--progress", "plain",
        "--cache-from", f"type=local,src={daemon_cache},tag=v2",
        "-o", str(tmp_path / "embedded-two"), str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "CACHED" in err
    assert (tmp_path / "embedded-two/random.txt").read_text() == (
        tmp_path / "daemon-two/random.txt"
    ).read_text()
    assert (tmp_path / "embedded-two/two.txt").read_text() == "two\n"


def write_image_layout(root: Path, *, tag: str, marker: bytes) -> str:
    """An OCI layout holding one image of one layer (``/marker.txt``) tagged ``tag``;
    the manifest's digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("marker.txt")
        info.mtime, info.mode, info.size = 1_700_000_000, 0o644, len(marker)
        tar.addfile(info, io.BytesIO(marker))
    layer = buf.getvalue()
    platform = host_platform()
    config = json.dumps(
        {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [blob(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blob(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    digest = blob(manifest)
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": len(manifest), "annotations": {REF_NAME: tag}}  # fmt: skip
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return digest


LAYOUT_DOCKERFILE = """\
FROM layout AS base
FROM busybox
COPY --from=base /marker.txt /via-stage.txt
COPY --from=layout /marker.txt /via-copy.txt
RUN cat /via-copy.txt /via-stage.txt > /ran.txt
"""


async def test_an_oci_layout_context_through_the_daemon(
    running: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = context(tmp_path / "ctx", LAYOUT_DOCKERFILE)
    digest = write_image_layout(tmp_path / "client-layout", tag="v1", marker=b"from the client\n")
    monkeypatch.chdir(tmp_path)  # PATH relative to the client's working directory
    for value in (
        "oci-layout://client-layout:v1",
        f"oci-layout://{tmp_path / 'client-layout'}@{digest}",
        f"oci-layout://client-layout:nosuchtag@{digest}",  # the digest wins, as buildx
    ):
        out = tmp_path / f"out-{len(value)}"
        code = await cli(
            "--addr", addr(running), "build", "--progress", "plain",
            "--build-context", f"layout={value}", "-o", str(out), str(ctx),
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        assert (out / "ran.txt").read_text() == "from the client\n" * 2
        assert (out / "via-stage.txt").read_text() == "from the client\n"

    # a tag the layout does not have, a layout that is not there: named, before any build
    code = await cli(
        "--addr", addr(running), "build", "--build-context", "layout=oci-layout://client-layout:v9",
        str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    assert "--build-context layout=oci-layout://" in err
    assert "no image tagged 'v9'" in err
    code = await cli(
        "--addr", addr(running), "build", "--build-context", "layout=oci-layout://missing:v1",
        str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--build-context layout=oci-layout://{tmp_path / 'missing'}:v1" in err
    assert "does not exist" in err
    assert "Traceback" not in err


async def test_the_daemon_reads_no_layout_by_its_own_paths(
    running: DaemonProcess, tmp_path: Path
) -> None:
    """A client naming a path of the daemon's host (instead of offering the layout in
    its session) is refused: the layout is right there, the daemon does not read it."""
    ctx = context(tmp_path / "ctx", LAYOUT_DOCKERFILE)
    layout = tmp_path / "daemon-side-layout"
    digest = write_image_layout(layout, tag="v1", marker=b"the daemon's file\n")
    async with DaemonClient(running.target) as client:
        for value in (f"oci-layout://{layout}:v1", f"oci-layout://{layout}@{digest}"):
            with pytest.raises(NotFoundError, match="reads no OCI layout by the path"):
                await client.build(ctx, out=tmp_path / "out", attrs={"context:layout": value})
        # nor a store the session does not offer
        with pytest.raises(NotFoundError, match=r"the client offers the content stores: none"):
            await client.build(
                ctx, out=tmp_path / "out", attrs={"context:layout": f"oci-layout://ctx-1@{digest}"}
            )
        # nor a local cache by path
        request = pb.SolveRequest(
            ref="local-cache",
            frontend="dockerfile.v0",
            cache=pb.CacheOptions(
                imports=[pb.CacheOptionsEntry(type="local", attrs={"src": str(layout)})]
            ),
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client._unary("Solve", pb.SolveResponse)(request)
        error = error_from_rpc(refused.value)
        assert isinstance(error, UsageError)
        assert "names a directory on the daemon's host" in error.message
    assert not (tmp_path / "out" / "ran.txt").exists()
