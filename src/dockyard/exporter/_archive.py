"""OCI and Docker image archives: written by the ``oci``/``docker`` exporters and
``dockyard image save``, read by ``dockyard image load``.

An OCI archive is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``) as a
tarball or a directory. A Docker archive is the same layout plus ``manifest.json`` (the
config and layer paths with the ``RepoTags`` of each image, what ``docker load`` reads)
and ``repositories``. Tarballs have their entries in a fixed order with one timestamp,
so the same images give the same bytes.

Loading accepts both, and Docker archives without an OCI layout (older ``docker save``,
``skopeo copy docker-archive:``), compressed or not. Every blob is verified against its
digest while it is copied into the content store; member names are resolved inside the
archive (no ``..``, no absolute paths, links only to other members).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dockyard.content import (
    REF_NAME_ANNOTATION,
    ContentStore,
    Image,
    ImageStore,
    OCILayout,
    write_oci_layout,
)
from dockyard.core import ContentError, Digest, NotFoundError, PathEscapeError, clean_rel, jsontext
from dockyard.oci import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
    canonical_json,
    parse_manifest,
)
from dockyard.registry import InvalidReferenceError, Reference

from ._compress import compression_of

__all__ = [
    "CONTAINERD_NAME_ANNOTATION",
    "ArchiveImage",
    "LoadedImage",
    "docker_manifest_json",
    "index_entry",
    "load_archive",
    "write_archive",
]

CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"
CREATED_ANNOTATION = "org.opencontainers.image.created"
_CHUNK = 1 << 20
_MAX_JSON = 16 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveImage:
    """One image to put in an archive: its manifest descriptor (as it goes into
    ``index.json``), config and layers (for ``manifest.json``) and its names."""

    descriptor: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    names: tuple[Reference, ...] = ()


def index_entry(descriptor: Descriptor, name: Reference | None, created: str | None) -> Descriptor:
    """An ``index.json`` entry: ``descriptor`` with the image name annotations BuildKit
    writes (``io.containerd.image.name``, ``org.opencontainers.image.ref.name``) and its
    creation time; ``config.digest`` (a BuildKit response detail) is dropped."""
    annotations = {k: v for k, v in descriptor.annotations.items() if k != "config.digest"}
    if name is not None:
        annotations[CONTAINERD_NAME_ANNOTATION] = str(name)
        if name.tag:
            annotations[REF_NAME_ANNOTATION] = name.tag
    if created is not None:
        annotations[CREATED_ANNOTATION] = created
    return Descriptor(
        media_type=descriptor.media_type,
        digest=descriptor.digest,
        size=descriptor.size,
        annotations=annotations,
        platform=descriptor.platform,
    )


def _blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def docker_manifest_json(images: Sequence[ArchiveImage]) -> bytes:
    """``manifest.json`` of a Docker archive for ``images``."""
    entries = []
    for image in images:
        entries.append(
            {
                "Config": _blob_path(image.config.digest),
                "RepoTags": [n.familiar() for n in image.names if n.tag],
                "Layers": [_blob_path(layer.digest) for layer in image.layers],
            }
        )
    return canonical_json(entries)


def _repositories_json(images: Sequence[ArchiveImage]) -> bytes | None:
    repos: dict[str, dict[str, str]] = {}
    for image in images:
        for name in image.names:
            if name.tag:
                repos.setdefault(name.familiar_name, {})[name.tag] = image.config.digest.hex
    if not repos:
        return None
    return canonical_json({k: dict(sorted(v.items())) for k, v in sorted(repos.items())})


def _tar_entry(name: str, size: int, mtime: int, *, directory: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = 0 if directory else size
    ti.mtime = mtime
    ti.mode = 0o755 if directory else 0o644
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.uname = ti.gname = ""
    return ti


def _write_tar(
    content: ContentStore,
    files: list[tuple[str, bytes]],
    blobs: list[Descriptor],
    out: BinaryIO,
    mtime: int,
) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK) as tw:
        for name, data in files:
            tw.addfile(_tar_entry(name, len(data), mtime), io.BytesIO(data))
        tw.addfile(_tar_entry("blobs", 0, mtime, directory=True))
        tw.addfile(_tar_entry("blobs/sha256", 0, mtime, directory=True))
        for d in blobs:
            with content.open(d.digest) as src:
                size = os.fstat(src.fileno()).st_size
                tw.addfile(_tar_entry(_blob_path(d.digest), size, mtime), src)
    out.flush()


def _blobs_of(images: Sequence[ArchiveImage], extra: Sequence[Descriptor] = ()) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for image in images:
        for d in (image.descriptor, image.config, *image.layers):
            seen.setdefault(str(d.digest), d)
    for d in extra:
        seen.setdefault(str(d.digest), d)
    return [seen[k] for k in sorted(seen)]


async def write_archive(
    content: ContentStore,
    images: Sequence[ArchiveImage],
    index: ImageIndex,
    out: BinaryIO | Path,
    *,
    docker: bool,
    tar: bool = True,
    mtime: int = 0,
    extra_blobs: Sequence[Descriptor] = (),
) -> None:
    """Write ``index`` and the blobs of ``images`` (and ``extra_blobs``: an image
    index and attestation manifests ``index`` points at) as an OCI archive (``docker``
    adds ``manifest.json`` and ``repositories``): a tarball to the blocking writer
    ``out``, or (``tar=False``) a layout directory at path ``out``."""
    blobs = _blobs_of(images, extra_blobs)
    for d in blobs:
        if not content.has(d.digest):
            raise NotFoundError(f"blob {d.digest} ({d.media_type}) is not in the content store")
    extra: list[tuple[str, bytes]] = []
    if docker:
        extra.append(("manifest.json", docker_manifest_json(images)))
        repositories = _repositories_json(images)
        if repositories is not None:
            extra.append(("repositories", repositories))
    if not tar:
        if not isinstance(out, Path):
            raise ContentError("an image layout directory needs a path")
        await write_oci_layout(content, index, out)
        for name, data in extra:
            await asyncio.to_thread(_atomic_write, out / name, data)
        return
    if isinstance(out, Path):
        raise ContentError("an image archive is written to an open file")
    files = [
        ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", index.to_bytes()),
        *extra,
    ]
    await asyncio.to_thread(_write_tar, content, files, blobs, out, mtime)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- loading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedImage:
    """An image ``load_archive`` stored: under ``images`` (several names, or one
    dangling record)."""

    target: Descriptor
    config_digest: Digest | None
    images: tuple[Image, ...] = field(default=())


def _name(text: str) -> Reference | None:
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError:
        return None
    return ref if ref.digest is None else None


def _names_from_annotations(desc: Descriptor) -> list[Reference]:
    full = desc.annotations.get(CONTAINERD_NAME_ANNOTATION, "")
    if full and (ref := _name(full)) is not None:
        return [ref]
    tag = desc.annotations.get(REF_NAME_ANNOTATION, "")
    if tag and ("/" in tag or ":" in tag) and (ref := _name(tag)) is not None:
        return [ref]
    return []


class _Members:
    """The regular-file members of a tarball by cleaned name."""

    def __init__(self, tar: tarfile.TarFile, source: str) -> None:
        self.tar = tar
        self.source = source
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            if not (m.isreg() or m.islnk()):
                continue
            try:
                name = clean_rel(m.name)
            except PathEscapeError:
                continue
            self.members[name] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> BinaryIO:
        try:
            member = self.members[clean_rel(name)]
        except (KeyError, PathEscapeError) as exc:
            raise ContentError(f"{self.source}: {name!r} is not in the archive") from exc
        try:
            f = self.tar.extractfile(member)
        except (KeyError, tarfile.TarError) as exc:
            raise ContentError(f"{self.source}: cannot read {name!r}: {exc}") from exc
        if f is None:
            raise ContentError(f"{self.source}: {name!r} is not a regular file")
        return f  # type: ignore[return-value]

    def read_json(self, name: str) -> object:
        with self.open(name) as f:
            data = f.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise ContentError(f"{self.source}: {name} is too large")
        try:
            return jsontext.loads(data)
        except ValueError as exc:
            raise ContentError(f"{self.source}: {name} is not valid JSON") from exc


async def _ingest(
    content: ContentStore, src: BinaryIO, lease: str, expected: Digest | None = None
) -> tuple[Digest, int]:
    info = await content.ingest(
        f"load-{uuid.uuid4().hex}", src, expected_digest=expected, lease=lease
    )
    return info.digest, info.size


async def _load_docker(
    members: _Members, content: ContentStore, lease: str
) -> list[tuple[Descriptor, Digest, list[Reference]]]:
    doc = members.read_json("manifest.json")
    if not isinstance(doc, list):
        raise ContentError(f"{members.source}: manifest.json is not a list")
    out: list[tuple[Descriptor, Digest, list[Reference]]] = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ContentError(f"{members.source}: manifest.json entry {i} has no Config")
        layers = entry.get("Layers") or []
        tags = entry.get("RepoTags") or []
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ContentError(f"{members.source}: manifest.json entry {i}: bad Layers")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise ContentError(f"{members.source}: manifest.json entry {i}: bad RepoTags")

        def opener(name: str) -> BinaryIO:
            return members.open(name)

        src = await asyncio.to_thread(opener, entry["Config"])
        with src:
            config_digest, config_size = await _ingest(content, src, lease)
        config = ImageConfig.parse(await content.read(config_digest))
        descs: list[Descriptor] = []
        for name in layers:
            src = await asyncio.to_thread(opener, name)
            with src:
                head = src.read(8)
            kind = compression_of(head)
            if kind not in ("gzip", "zstd", "uncompressed"):
                raise ContentError(f"{members.source}: layer {name} is {kind}-compressed")
            src = await asyncio.to_thread(opener, name)
            with src:
                digest, size = await _ingest(content, src, lease)
            media = MediaType.layer(kind, oci=kind == "zstd")
            descs.append(Descriptor(media_type=media, digest=digest, size=size))
        if len(descs) != len(config.diff_ids):
            raise ContentError(
                f"{members.source}: image {i} has {len(descs)} layers but its config lists "
                f"{len(config.diff_ids)}"
            )
        manifest = ImageManifest(
            config=Descriptor(
                media_type=MediaType.DOCKER_CONFIG, digest=config_digest, size=config_size
            ),
            layers=tuple(descs),
            media_type=MediaType.DOCKER_MANIFEST,
        )
        data = manifest.to_bytes(indent=3)
        await content.write_blob(data, lease=lease)
        names = [ref for tag in tags if (ref := _name(tag)) is not None]
        out.append((Descriptor.of(MediaType.DOCKER_MANIFEST, data), config_digest, names))
    return out


async def _load_oci(
    path: Path, content: ContentStore, lease: str, docker_tags: list[list[Reference]] | None
) -> list[tuple[Descriptor, Digest | None, list[Reference]]]:
    out: list[tuple[Descriptor, Digest | None, list[Reference]]] = []
    layout = await asyncio.to_thread(OCILayout.open, path)
    try:
        for i, entry in enumerate(layout.index.manifests):
            if not (
                MediaType.is_manifest(entry.media_type) or MediaType.is_index(entry.media_type)
            ):
                continue
            await layout.copy_to(content, entry, lease=lease)
            config: Digest | None = None
            if MediaType.is_manifest(entry.media_type):
                manifest = parse_manifest(await content.read(entry.digest), entry.media_type)
                if isinstance(manifest, ImageManifest):
                    config = manifest.config.digest
            names = _names_from_annotations(entry)
            if not names and docker_tags is not None and i < len(docker_tags):
                names = docker_tags[i]
            target = Descriptor(
                media_type=entry.media_type,
                digest=entry.digest,
                size=entry.size,
                platform=entry.platform,
            )
            out.append((target, config, names))
    finally:
        layout.close()
    return out


def _docker_tags(members: _Members) -> list[list[Reference]] | None:
    if not members.has("manifest.json"):
        return None
    try:
        doc = members.read_json("manifest.json")
    except ContentError:
        return None
    if not isinstance(doc, list):
        return None
    out: list[list[Reference]] = []
    for entry in doc:
        tags = entry.get("RepoTags") if isinstance(entry, dict) else None
        out.append(
            [ref for t in tags or [] if isinstance(t, str) and (ref := _name(t)) is not None]
        )
    return out


async def load_archive(
    source: Path | BinaryIO,
    content: ContentStore,
    images: ImageStore,
    *,
    spool_dir: Path | None = None,
) -> list[LoadedImage]:
    """Load a Docker or OCI archive (a path, or a stream such as stdin that is spooled
    to a temporary file in ``spool_dir`` first) into the store; returns what was
    stored, in archive order."""
    spooled: Path | None = None
    if not isinstance(source, Path):
        if spool_dir is not None:
            os.makedirs(spool_dir, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="load-", suffix=".tar", dir=spool_dir)
        spooled = Path(name)
        with os.fdopen(fd, "wb") as f:
            await asyncio.to_thread(shutil.copyfileobj, source, f, _CHUNK)
        path = spooled
        what = "the input"
    else:
        path = source
        what = str(source)
    try:
        async with content.lease() as lease:
            found = await _load_from(path, what, content, lease)
            out: list[LoadedImage] = []
            for target, config, names in found:
                stored: list[Image] = []
                if names:
                    for ref in names:
                        stored.append(await images.put(str(ref), target))
                else:
                    stored.append(await images.put(None, target))
                out.append(LoadedImage(target=target, config_digest=config, images=tuple(stored)))
            return out
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


async def _load_from(
    path: Path, what: str, content: ContentStore, lease: str
) -> list[tuple[Descriptor, Digest | None, list[Reference]]]:
    if await asyncio.to_thread(path.is_dir):
        if await asyncio.to_thread((path / "index.json").is_file):
            return await _load_oci(path, content, lease, None)
        raise ContentError(f"{what} is a directory but not an OCI image layout")
    try:
        tar = await asyncio.to_thread(tarfile.open, path, "r:*")
    except FileNotFoundError as exc:
        raise NotFoundError(f"{what} does not exist") from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContentError(f"{what} is not an image archive (tar): {exc}") from exc
    try:
        members = await asyncio.to_thread(_Members, tar, what)
        if members.has("index.json") and members.has("oci-layout"):
            tags = _docker_tags(members)
        elif members.has("manifest.json"):
            return list(await _load_docker(members, content, lease))
        else:
            raise ContentError(
                f"{what} is not an image archive: it has neither manifest.json nor index.json"
            )
    except (tarfile.TarError, EOFError) as exc:
        raise ContentError(f"{what}: broken archive: {exc}") from exc
    finally:
        tar.close()
    return await _load_oci(path, content, lease, tags)
