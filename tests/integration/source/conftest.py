"""An engine for the source integration tests: the real cache manager (overlayfs), a
content store, a session manager with in-process sessions, the three source resolvers
registered in a :class:`Worker`, and the LLB solver with SQLite keys."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import REF_NAME_ANNOTATION, ContentStore, ImageStore, write_oci_layout
from dockyard.core import CollectingReporter, Digest, Platform, VertexProgress, host_platform
from dockyard.executor import OciExecutor
from dockyard.llb import Definition
from dockyard.llbsolver import SESSION_ID, CacheRefs, JobOptions, LlbSolver, Worker
from dockyard.oci import (
    ContainerConfig,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
)
from dockyard.registry import CredentialsProvider, RegistryConfig, StaticCredentials
from dockyard.session import Session, SessionManager
from dockyard.snapshot import SnapshotterKind
from dockyard.solver import ResultRef, Solver, SqliteCacheKeyStorage
from dockyard.source import ImageSource, LayerUnpacker, LocalSource, OCILayoutSource


@dataclass
class Engine:
    state: Path
    cache: CacheManager
    content: ContentStore
    image_store: ImageStore
    keys: SqliteCacheKeyStorage
    sessions: SessionManager
    local: LocalSource
    images: ImageSource
    layouts: OCILayoutSource
    unpacker: LayerUnpacker
    llb: LlbSolver

    async def solve(
        self, definition: Definition, *, session: Session | None = None
    ) -> tuple[ResultRef | None, CollectingReporter]:
        reporter = CollectingReporter()
        if session is None:
            ref = await self.llb.solve(definition, reporter=reporter)
            return ref, reporter
        async with self.sessions.attach(session) as handle:
            ref = await self.llb.solve(
                definition, options=JobOptions(session_id=handle.id), reporter=reporter
            )
        return ref, reporter

    async def tree(self, ref: ResultRef | ImmutableRef) -> dict[str, object]:
        value = ref.value if isinstance(ref, ResultRef) else ref
        assert isinstance(value, ImmutableRef)
        async with value.mount() as root:
            return read_tree(root)


def read_tree(root: Path) -> dict[str, object]:
    """Every entry below ``root``: file contents with their mode, link targets, ``dir``
    with the mode for directories."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = (path.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def tar_of(root: Path) -> bytes:
    """An uncompressed layer tar of the tree at ``root`` (owners, modes, links kept)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(p for p in root.rglob("*")):
            tar.add(entry, arcname=entry.relative_to(root).as_posix(), recursive=False)
    return buf.getvalue()


def transferred(reporter: CollectingReporter) -> list[VertexProgress]:
    return [e for e in reporter.events if isinstance(e, VertexProgress)]


@contextlib.asynccontextmanager
async def open_engine(
    state: Path,
    *,
    registry: RegistryConfig | None = None,
    credentials: CredentialsProvider | None = None,
    snapshotter: SnapshotterKind = "auto",
) -> AsyncIterator[Engine]:
    cache = await CacheManager.open(state, snapshotter=snapshotter)
    content = ContentStore(state / "content")
    image_store = ImageStore.open(state, content)
    keys = SqliteCacheKeyStorage(state / "metadata.db")
    sessions = SessionManager(attach_timeout=2.0)
    unpacker = LayerUnpacker(cache, content)
    local = LocalSource(cache=cache, sessions=sessions, session_key=SESSION_ID)
    images = ImageSource(
        cache=cache,
        content=content,
        registry=registry,
        credentials=credentials if credentials is not None else StaticCredentials({}),
        sessions=sessions,
        session_key=SESSION_ID,
        images=image_store,
        unpacker=unpacker,
    )
    layouts = OCILayoutSource(cache=cache, content=content, unpacker=unpacker)
    try:
        worker = Worker(
            refs=CacheRefs(cache),
            executor=OciExecutor(state / "executor", runtime="crun"),
            sources={"local": local, "docker-image": images, "oci-layout": layouts},
            mount_dir=cache.mount_dir,
        )
        solver = Solver(result_storage=cache, key_storage=keys)
        yield Engine(
            state, cache, content, image_store, keys, sessions, local, images, layouts, unpacker,
            LlbSolver(worker, solver),
        )  # fmt: skip
        stats = cache.statistics()
        assert stats.in_use == 0, f"{stats.in_use} cache records still in use"
    finally:
        await images.aclose()
        await sessions.aclose()
        keys.close()
        image_store.close()
        content.close()
        await cache.close()


@pytest.fixture
async def engine(tmp_path: Path, mountinfo_unchanged: None) -> AsyncIterator[Engine]:
    async with open_engine(tmp_path / "state") as running:
        yield running


# -- images made by the tests ------------------------------------------------------------


@dataclass(frozen=True)
class MadeImage:
    """An image in memory: its blobs by digest, manifest and config."""

    manifest: ImageManifest
    manifest_bytes: bytes
    config: ImageConfig
    blobs: dict[Digest, bytes]

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.manifest_bytes)

    def descriptor(self, **details: object) -> Descriptor:
        return Descriptor.of(MediaType.OCI_MANIFEST, self.manifest_bytes, **details)


def compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(tar)
    return tar


def make_image(layers: list[tuple[bytes, str]], *, platform: Platform | None = None) -> MadeImage:
    """An OCI image of ``layers`` (uncompressed tar, compression) for ``platform``."""
    plat = platform or host_platform()
    blobs: dict[Digest, bytes] = {}
    descs = []
    for tar, compression in layers:
        blob = compress(tar, compression)
        blobs[Digest.from_bytes(blob)] = blob
        descs.append(Descriptor.of(MediaType.layer(compression), blob))
    config = ImageConfig(
        architecture=plat.architecture,
        os=plat.os,
        variant=plat.variant,
        config=ContainerConfig(env=("PATH=/bin",)),
        diff_ids=tuple(Digest.from_bytes(tar) for tar, _ in layers),
    )
    config_bytes = config.to_bytes()
    blobs[Digest.from_bytes(config_bytes)] = config_bytes
    manifest = ImageManifest(
        config=Descriptor.of(MediaType.OCI_CONFIG, config_bytes), layers=tuple(descs)
    )
    return MadeImage(
        manifest=manifest, manifest_bytes=manifest.to_bytes(), config=config, blobs=blobs
    )


def layer_tar(files: dict[str, bytes | str | None]) -> bytes:
    """A layer tar: ``path`` → content (``bytes``), a symlink (``"->target"``), a
    directory (``None``); ``dir/.wh.name`` entries are whiteouts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if value is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(value, str):
                info.type = tarfile.SYMTYPE
                info.linkname = value.removeprefix("->")
                tar.addfile(info)
            else:
                info.size = len(value)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(value))
    return buf.getvalue()


async def write_layout(dest: Path, images: dict[str, MadeImage], *, tar: bool = False) -> Path:
    """An OCI layout with ``images`` tagged by name (a directory, or a tarball)."""
    store = ContentStore(dest.parent / f".{dest.name}-store")
    try:
        entries = []
        for tag, image in images.items():
            for blob in (*image.blobs.values(), image.manifest_bytes):
                await store.write_blob(blob)
            entries.append(image.descriptor(annotations={REF_NAME_ANNOTATION: tag}))
        await write_oci_layout(store, ImageIndex(manifests=tuple(entries)), dest, tar=tar)
    finally:
        store.close()
    return dest
