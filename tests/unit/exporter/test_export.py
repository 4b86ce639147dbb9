"""Exports over the native snapshotter: image assembly, blob caching, reproducibility,
archives and the file exporters."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import CollectingReporter, Digest, SessionError, UsageError, VertexStatus
from dockyard.exporter import (
    ExportRequest,
    ExportResponse,
    load_archive,
    new_compressor,
    parse_output,
    resolve,
)
from dockyard.oci import ImageConfig, ImageManifest, MediaType, parse_manifest

from .conftest import T0, State, frontend_config, open_state


async def _export(
    state: State, spec: str, ref: Any, *, epoch: int | None = None, config: Any = None
) -> ExportResponse:
    exporter = resolve(parse_output(spec), state.services)
    return await exporter.export(ExportRequest(ref=ref, epoch=epoch, image_config=config))


async def _manifest(state: State, digest: Digest) -> ImageManifest:
    parsed = parse_manifest(await state.content.read(digest))
    assert isinstance(parsed, ImageManifest)
    return parsed


async def _config(state: State, manifest: ImageManifest) -> ImageConfig:
    return ImageConfig.parse(await state.content.read(manifest.config.digest))


def _layer_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tf:
        return {m.name: m for m in tf.getmembers()}


async def test_image_layers_history_and_metadata(state: State) -> None:
    chain = await state.chain()
    resp = await _export(state, "type=image,name=app:1", chain[-1], config=frontend_config())
    assert resp.image_digest is not None
    meta = resp.metadata()
    assert meta["containerimage.digest"] == resp.image_digest
    assert meta["containerimage.config.digest"] == resp.config_digest
    assert meta["image.name"] == "docker.io/library/app:1"
    desc = meta["containerimage.descriptor"]
    assert desc["mediaType"] == MediaType.DOCKER_MANIFEST
    assert desc["annotations"]["config.digest"] == resp.config_digest
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    assert resp.image_id == resp.config_digest

    manifest = await _manifest(state, resp.image_digest)
    assert manifest.media_type == MediaType.DOCKER_MANIFEST
    assert manifest.config.media_type == MediaType.DOCKER_CONFIG
    assert [layer.media_type for layer in manifest.layers] == [MediaType.DOCKER_LAYER_GZIP] * 2
    config = await _config(state, manifest)
    assert len(config.diff_ids) == 2  # the empty step left no layer
    assert [(h.created_by, h.empty_layer) for h in config.history] == [
        ("ADD base /", False),
        ("ENV A=1", True),
        ("RUN make app # buildkit", False),
        ("RUN true # buildkit", True),
    ]
    assert all(h.created for h in config.history)
    assert config.config.cmd == ("python", "/app/main.py")
    assert config.created == config.history[-1].created

    base = _layer_members(await state.content.read(manifest.layers[0].digest))
    assert base["bin/tool-link"].islnk()
    assert base["bin/alias"].issym()
    assert base["bin/tool"].mode == 0o755
    app = _layer_members(await state.content.read(manifest.layers[1].digest))
    assert "app/main.py" in app
    assert ".wh.gone.txt" in app

    stored = await state.images.get("docker.io/library/app:1")
    assert stored.target.digest == resp.image_digest
    assert stored.config_digest == resp.config_digest


async def test_without_a_frontend_config(state: State) -> None:
    chain = await state.chain()
    resp = await _export(state, "type=image,name=raw", chain[-1])
    assert resp.image_digest is not None
    config = await _config(state, await _manifest(state, resp.image_digest))
    assert config.config.working_dir == "/"
    assert [(h.created_by, h.empty_layer, h.comment) for h in config.history] == [
        ("base", False, "buildkit.exporter.image.v0"),
        ("RUN make app", False, "buildkit.exporter.image.v0"),
        ("RUN true", True, "buildkit.exporter.image.v0"),
    ]


async def test_empty_result(state: State) -> None:
    resp = await _export(state, "type=image,name=scratch-ish", None)
    assert resp.image_digest is not None
    manifest = await _manifest(state, resp.image_digest)
    assert manifest.layers == ()
    assert (await _config(state, manifest)).diff_ids == ()


async def test_layers_are_compressed_once(state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = new_compressor

    def counting(options: Any, out: Any) -> Any:
        made.append(options)
        return real(options, out)

    monkeypatch.setattr("dockyard.exporter._layers.new_compressor", counting)
    chain = await state.chain()
    first = await _export(state, "type=image,name=a", chain[1])
    assert len(made) == 2
    again = await _export(state, "type=image,name=b", chain[-1])  # shares two layers
    assert len(made) == 3
    assert first.image_digest != again.image_digest
    # the record remembers its blob; a second manager on the same state dir too
    blob = chain[0].blob("gzip")
    assert blob is not None
    assert state.content.has(blob.digest)
    # without force a zstd export reuses the gzip blobs (BuildKit); with force it does not
    reuse = await _export(state, "type=image,name=c,compression=zstd", chain[-1])
    assert len(made) == 3
    assert reuse.image_digest is not None
    manifest = await _manifest(state, reuse.image_digest)
    assert manifest.media_type == MediaType.OCI_MANIFEST  # zstd asks for OCI types
    assert {layer.media_type for layer in manifest.layers} == {MediaType.OCI_LAYER_GZIP}
    forced = await _export(
        state, "type=image,name=d,compression=zstd,force-compression=true", chain[-1]
    )
    assert len(made) == 6
    assert forced.image_digest is not None
    manifest = await _manifest(state, forced.image_digest)
    assert {layer.media_type for layer in manifest.layers} == {MediaType.OCI_LAYER_ZSTD}


async def test_a_collected_blob_is_made_again(state: State) -> None:
    chain = await state.chain()
    await _export(state, "type=image,store=false", chain[1])
    blob = chain[0].blob("gzip")
    assert blob is not None
    await state.content.gc()
    assert not state.content.has(blob.digest)
    await _export(state, "type=image,name=x", chain[1])
    assert state.content.has(blob.digest)


async def _digest_on_fresh_state(root: Path, spec: str, epoch: int | None) -> ExportResponse:
    state = await open_state(root)
    chain = await state.chain()
    return await _export(state, spec, chain[-1], epoch=epoch, config=frontend_config())


@pytest.mark.parametrize(
    "spec",
    [
        "type=image,name=repro",
        "type=image,name=repro,compression=zstd",
        "type=image,name=repro,compression=uncompressed,oci-mediatypes=true",
        "type=image,name=repro,rewrite-timestamp=true",
    ],
)
async def test_source_date_epoch_gives_the_same_digest(tmp_path: Path, spec: str) -> None:
    a = await _digest_on_fresh_state(tmp_path / "a", spec, T0)
    b = await _digest_on_fresh_state(tmp_path / "b", spec, T0)
    assert a.image_digest == b.image_digest
    assert a.config_digest == b.config_digest


async def test_epoch_sets_times(state: State) -> None:
    chain = await state.chain()
    resp = await _export(state, "type=image,name=t", chain[-1], epoch=T0, config=frontend_config())
    assert resp.image_digest is not None
    config = await _config(state, await _manifest(state, resp.image_digest))
    assert config.created == "2023-11-14T22:13:20Z"
    assert {h.created for h in config.history} == {"2023-11-14T22:13:20Z"}
    assert (
        resp.metadata()["containerimage.descriptor"]["annotations"][
            "org.opencontainers.image.created"
        ]
        == "2023-11-14T22:13:20Z"
    )
    # the option wins over the build's epoch
    other = await _export(
        state, f"type=image,name=t2,source-date-epoch={T0 - 10}", chain[-1], epoch=T0
    )
    assert other.image_digest is not None
    config = await _config(state, await _manifest(state, other.image_digest))
    assert config.created == "2023-11-14T22:13:10Z"


async def test_rewrite_timestamp_clamps_new_layers_only(state: State) -> None:
    chain = await state.chain()
    plain = await _export(state, "type=image,name=p", chain[1])
    assert plain.image_digest is not None
    plain_manifest = await _manifest(state, plain.image_digest)
    plain_config = await _config(state, plain_manifest)
    # the frontend's config says the base layer comes from the base image
    config = dataclasses.replace(frontend_config(), diff_ids=plain_config.diff_ids[:1])
    epoch = T0 - 1000
    clamped = await _export(
        state, "type=image,name=c,rewrite-timestamp=true", chain[1], epoch=epoch, config=config
    )
    assert clamped.image_digest is not None
    manifest = await _manifest(state, clamped.image_digest)
    assert manifest.layers[0].digest == plain_manifest.layers[0].digest
    assert manifest.layers[1].digest != plain_manifest.layers[1].digest
    app = _layer_members(await state.content.read(manifest.layers[1].digest))
    assert {m.mtime for m in app.values()} == {epoch}
    # the base layer is rewritten too when the config does not claim it
    everything = await _export(
        state, "type=image,name=e,rewrite-timestamp=true", chain[1], epoch=epoch
    )
    assert everything.image_digest is not None
    manifest = await _manifest(state, everything.image_digest)
    assert manifest.layers[0].digest != plain_manifest.layers[0].digest


async def test_annotations(state: State) -> None:
    chain = await state.chain()
    resp = await _export(
        state,
        "type=image,name=ann,annotation.org.opencontainers.image.title=T,"
        "annotation-manifest-descriptor.d=1,annotation[linux/arm64].arm=1",
        chain[0],
    )
    assert resp.image_digest is not None
    manifest = await _manifest(state, resp.image_digest)
    assert manifest.media_type == MediaType.OCI_MANIFEST
    assert dict(manifest.annotations) == {"org.opencontainers.image.title": "T"}
    assert resp.descriptor is not None
    assert resp.descriptor.annotations["d"] == "1"
    stored = await state.images.get("docker.io/library/ann:latest")
    assert stored.target.annotations == {"d": "1"}
    exporter = resolve(parse_output("type=image,annotation-index.k=v"), state.services)
    with pytest.raises(UsageError, match="index annotations"):
        await exporter.export(ExportRequest(ref=chain[0], epoch=None))


async def test_names_canonical_dangling_and_no_store(state: State) -> None:
    chain = await state.chain()
    dangling = await _export(state, "type=image", chain[0])
    images = await state.images.list()
    assert [i.dangling for i in images] == [True]
    resp = await _export(state, "type=image,name=n:1,name-canonical=true", chain[0])
    assert resp.image_digest == dangling.image_digest
    names = sorted(i.name for i in await state.images.list())
    assert names == ["docker.io/library/n:1", f"docker.io/library/n@{resp.image_digest}"]
    await _export(state, "type=image,name=hidden,store=false", chain[1])
    assert len(await state.images.list()) == 2


async def test_progress_is_reported(state: State) -> None:
    chain = await state.chain()
    reporter = CollectingReporter()
    exporter = resolve(parse_output("type=image,name=p"), state.services)
    await exporter.export(ExportRequest(ref=chain[1], reporter=reporter))
    statuses = [e for e in reporter.events if isinstance(e, VertexStatus)]
    assert statuses[0].name == "exporting to image"
    assert statuses[-1].completed is not None
    assert statuses[-1].error is None


@pytest.mark.parametrize("kind", ["oci", "docker"])
async def test_archives_load_back(state: State, tmp_path: Path, kind: str) -> None:
    chain = await state.chain()
    out = tmp_path / f"{kind}.tar"
    resp = await _export(state, f"type={kind},dest={out},name=reg.test/app:2", chain[-1], epoch=T0)
    with tarfile.open(out) as tf:
        names = tf.getnames()
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        if kind == "docker":
            manifest_json = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
            repositories = json.loads(tf.extractfile("repositories").read())  # type: ignore[union-attr]
    assert names[:2] == ["oci-layout", "index.json"]
    entry = index["manifests"][0]
    assert entry["digest"] == resp.image_digest
    assert entry["annotations"]["io.containerd.image.name"] == "reg.test/app:2"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "2"
    assert "config.digest" not in entry["annotations"]
    if kind == "docker":
        assert manifest_json[0]["RepoTags"] == ["reg.test/app:2"]
        assert manifest_json[0]["Config"] == f"blobs/sha256/{Digest(str(resp.config_digest)).hex}"
        assert len(manifest_json[0]["Layers"]) == 2
        assert repositories == {"reg.test/app": {"2": Digest(str(resp.config_digest)).hex}}
    # deterministic bytes
    again = tmp_path / "again.tar"
    await _export(state, f"type={kind},dest={again},name=reg.test/app:2", chain[-1], epoch=T0)
    assert again.read_bytes() == out.read_bytes()

    other = await open_state(tmp_path / "other")
    loaded = await load_archive(out, other.content, other.images)
    assert [img.target.digest for img in loaded] == [resp.image_digest]
    stored = await other.images.get("reg.test/app:2")
    local = await other.images.resolve(stored)
    assert local.manifest.config.digest == resp.config_digest


async def test_docker_archive_without_a_layout_loads(state: State, tmp_path: Path) -> None:
    chain = await state.chain()
    out = tmp_path / "docker.tar"
    resp = await _export(state, f"type=docker,dest={out},name=old:1", chain[-1])
    legacy = tmp_path / "legacy.tar.gz"
    with tarfile.open(out) as src, tarfile.open(legacy, "w:gz") as dst:
        for member in src.getmembers():
            if member.name in ("index.json", "oci-layout"):
                continue
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    other = await open_state(tmp_path / "other")
    with open(legacy, "rb") as f:  # noqa: ASYNC230 - a test reading a small file
        loaded = await load_archive(f, other.content, other.images, spool_dir=tmp_path / "spool")
    assert len(loaded) == 1
    assert loaded[0].config_digest == resp.config_digest
    assert [i.name for i in loaded[0].images] == ["docker.io/library/old:1"]
    local = await other.images.resolve("docker.io/library/old:1")
    assert (
        local.config.diff_ids == (await other.images.resolve(loaded[0].images[0])).config.diff_ids
    )
    assert not list((tmp_path / "spool").iterdir())


async def test_oci_layout_directory(state: State, tmp_path: Path) -> None:
    chain = await state.chain()
    dest = tmp_path / "layout"
    resp = await _export(state, f"type=oci,dest={dest},tar=false,name=dir", chain[1])
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["digest"] == resp.image_digest
    assert (dest / "blobs" / "sha256" / Digest(str(resp.image_digest)).hex).is_file()


async def test_tar_exporter_is_deterministic(state: State, tmp_path: Path) -> None:
    chain = await state.chain()
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    await _export(state, f"type=tar,dest={a}", chain[-1], epoch=T0 + 50)
    await _export(state, f"type=tar,dest={b}", chain[-1], epoch=T0 + 50)
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert tf.extractfile("etc/os-release").read() == b"ID=app\n"  # type: ignore[union-attr]
    assert "gone.txt" not in members
    assert members["bin/tool-link"].islnk()
    assert members["bin/alias"].linkname == "tool"
    assert members["app/main.py"].mtime == T0 + 50  # clamped
    assert members["bin/tool"].mtime == T0
    assert list(members) == sorted(members, key=lambda n: n.split("/"))  # depth-first, sorted


async def test_local_exporter_merges_and_stays_inside(state: State, tmp_path: Path) -> None:
    chain = await state.chain()
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    os.symlink(outside, dest / "etc")  # a hostile leftover: must not be written through
    os.symlink("/nonexistent", dest / "app")
    await _export(state, f"type=local,dest={dest}", chain[-1])
    assert list(outside.iterdir()) == []
    assert (dest / "keep.txt").read_text() == "mine"
    assert not (dest / "etc").is_symlink()
    assert (dest / "etc" / "os-release").read_text() == "ID=app\n"
    assert (dest / "app" / "main.py").read_text() == "print('hi')\n"
    assert os.readlink(dest / "bin" / "alias") == "tool"
    assert os.stat(dest / "bin" / "tool").st_ino == os.stat(dest / "bin" / "tool-link").st_ino
    assert os.stat(dest / "bin" / "tool").st_mode & 0o777 == 0o755
    assert int(os.stat(dest / "app" / "main.py").st_mtime) == T0 + 100
    assert not (dest / "gone.txt").exists()
    # a second export over the first replaces what is there
    await _export(state, f"type=local,dest={dest}", chain[0])
    assert (dest / "etc" / "os-release").read_text() == "ID=test\n"


async def test_failed_file_export_leaves_nothing(state: State, tmp_path: Path) -> None:
    dest = tmp_path / "x.tar"
    chain = await state.chain()
    await chain[1].release()
    with pytest.raises(Exception, match="after release"):
        await _export(state, f"type=tar,dest={dest}", chain[1])
    assert [n for n in os.listdir(tmp_path) if "x.tar" in n] == []


async def test_rewrite_timestamp_makes_build_times_irrelevant(tmp_path: Path) -> None:
    digests = []
    for n, when in enumerate((T0 + 100, T0 + 99999)):
        state = await open_state(tmp_path / str(n))

        def build(root: Path, when: int = when) -> None:
            (root / "out.bin").write_bytes(b"artifact")
            os.utime(root / "out.bin", (when, when))
            os.utime(root, (when, when))

        ref = await state.layer(build, description="RUN build")
        plain = await _export(state, "type=image,name=r", ref, epoch=T0)
        clamped = await _export(state, "type=image,name=r,rewrite-timestamp=true", ref, epoch=T0)
        digests.append((plain.image_digest, clamped.image_digest))
    assert digests[0][0] != digests[1][0]
    assert digests[0][1] == digests[1][1]


async def test_a_fifo_or_device_destination_is_written_in_place(
    state: State, tmp_path: Path
) -> None:
    """``dest=/dev/null`` or a named pipe is written where it is, never replaced by a
    file (a temp file renamed over /dev/null once replaced the machine's /dev/null)."""
    chain = await state.chain()
    (tmp_path / "out").mkdir()
    fifo = tmp_path / "out" / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the writer's open does not wait
    try:
        # a one-file tarball fits the pipe's buffer: nothing has to read meanwhile
        await _export(state, f"type=tar,dest={fifo}", chain[0])
        try:
            data = os.read(reader, 1 << 16)
        except BlockingIOError:
            data = b""
    finally:
        os.close(reader)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert "etc/os-release" in tf.getnames()
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert os.listdir(tmp_path / "out") == ["pipe"]


async def test_tar_to_stdout(state: State, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    chain = await state.chain()
    await _export(state, "type=tar,dest=-", chain[0])
    out = capfdbinary.readouterr().out
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        assert "etc/os-release" in tf.getnames()


class _Client:
    """An ExportCaller double: streams and directories the client would receive."""

    def __init__(self) -> None:
        self.streams: dict[str, bytes] = {}
        self.directories: dict[str, list[str]] = {}

    def has(self, target: str) -> bool:
        return True

    async def send_directory(
        self,
        target: str,
        source: Path,
        *,
        reporter: Any = None,
        progress_digest: str = "",
        prefix: str = "",
    ) -> Any:
        under = f"{prefix}/" if prefix else ""
        self.directories.setdefault(target, [])
        self.directories[target] += sorted(
            under + str(p.relative_to(source))
            for p in source.rglob("*")  # noqa: ASYNC240
        )

    @contextlib.asynccontextmanager
    async def open_stream(self, target: str) -> AsyncIterator[Any]:
        chunks: list[bytes] = []

        class Stream:
            async def write(self, data: bytes) -> None:
                chunks.append(data)

        yield Stream()
        self.streams[target] = b"".join(chunks)


async def test_outputs_to_the_clients_targets(state: State) -> None:
    chain = await state.chain()
    client = _Client()
    for spec in (
        "type=tar,dest=session:t",
        "type=local,dest=session:d",
        "type=oci,dest=session:o,name=x",
    ):
        exporter = resolve(parse_output(spec), state.services)
        await exporter.export(ExportRequest(ref=chain[-1], client=client))
    with tarfile.open(fileobj=io.BytesIO(client.streams["t"])) as tf:
        assert "app/main.py" in tf.getnames()
    with tarfile.open(fileobj=io.BytesIO(client.streams["o"])) as tf:
        assert "index.json" in tf.getnames()
    assert "app/main.py" in client.directories["d"]
    with pytest.raises(SessionError, match="no session"):
        await resolve(parse_output("type=tar,dest=session:t"), state.services).export(
            ExportRequest(ref=chain[0])
        )


async def test_config_and_manifest_are_written_side_by_side(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither small blob waits for the other to be made durable; a failure of either is
    the export's error."""
    import asyncio

    chain = await state.chain()
    writing: set[bytes] = set()
    both = asyncio.Event()
    original = state.content.write_blob

    async def write_blob(data: bytes, **kwargs: Any) -> Any:
        if data.startswith(b"{"):  # the config and the manifest (JSON), not layers
            writing.add(data)
            if len(writing) >= 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)
        return await original(data, **kwargs)

    monkeypatch.setattr(state.content, "write_blob", write_blob)
    resp = await _export(state, "type=image,name=app:2", chain[-1], config=frontend_config())
    assert resp.image_digest is not None
    assert state.content.has(resp.image_digest)
    assert resp.config_digest is not None
    assert state.content.has(resp.config_digest)

    async def failing(data: bytes, **kwargs: Any) -> Any:
        if b'"layers"' in data:
            raise OSError("disk full")
        return await original(data, **kwargs)

    monkeypatch.setattr(state.content, "write_blob", failing)
    with pytest.raises(OSError, match="disk full"):
        await _export(state, "type=image,name=app:3", chain[-1], config=frontend_config())
