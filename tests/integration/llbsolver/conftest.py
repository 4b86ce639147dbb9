"""A small engine for the llbsolver integration tests: the real cache manager (overlayfs
snapshots in a state dir), crun, the solver with SQLite keys, and two test sources — a
busybox "image" made from Debian's ``busybox-static`` and local directories."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.core import CollectingReporter, NotFoundError, VertexStatus
from dockyard.executor import OciExecutor
from dockyard.executor.types import ExecMount, OutputSink, ProcessSpec
from dockyard.llb import Definition
from dockyard.llbsolver import CacheRefs, JobOptions, LlbSolver, SourceRequest, Worker
from dockyard.snapshot.types import Mount
from dockyard.solver import ResultRef, Solver, SqliteCacheKeyStorage, VertexContext
from tests.integration.conftest import need_tools

BUSYBOX_REF = "docker.io/library/busybox:latest"


async def _fill(cache: CacheManager, source: Path, description: str) -> ImmutableRef:
    """A committed ref holding a copy of ``source`` (owners, modes, links kept)."""
    mutable = await cache.new_mutable(None, description=description)
    try:
        async with mutable.mount() as root:
            proc = await asyncio.create_subprocess_exec("cp", "-a", f"{source}/.", f"{root}/")
            assert await proc.wait() == 0
    except BaseException:
        await mutable.release()
        raise
    return await mutable.commit()


class BusyboxImages:
    """``docker-image://`` for the one image the tests know, with a fixed key."""

    def __init__(self, cache: CacheManager, rootfs: Path) -> None:
        self.cache = cache
        self.rootfs = rootfs
        self.snapshots = 0

    async def resolve(self, request: SourceRequest, ctx: VertexContext) -> BusyboxImages:
        if request.path != BUSYBOX_REF:
            raise NotFoundError(f"test image {request.path!r} does not exist")
        return self

    async def cache_key(self, ctx: VertexContext) -> str:
        return "busybox-test-image-v1"

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        self.snapshots += 1
        return await _fill(self.cache, self.rootfs, "busybox test image")


@dataclass
class LocalDirs:
    """``local://NAME`` for directories of the test, keyed by their content (so an
    unchanged directory is not copied again)."""

    cache: CacheManager
    dirs: dict[str, Path] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)

    async def resolve(self, request: SourceRequest, ctx: VertexContext) -> _LocalInstance:
        if request.path not in self.dirs:
            raise NotFoundError(f"no local directory {request.path!r}")
        return _LocalInstance(self, request.path)


class _LocalInstance:
    def __init__(self, source: LocalDirs, name: str) -> None:
        self.source = source
        self.name = name

    async def cache_key(self, ctx: VertexContext) -> str:
        return await asyncio.to_thread(_dir_key, self.name, self.source.dirs[self.name])

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        self.source.snapshots.append(self.name)
        return await _fill(self.source.cache, self.source.dirs[self.name], f"local {self.name}")


def _dir_key(name: str, root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for entry in sorted(filenames) + dirnames:
            path = Path(dirpath, entry)
            st = os.lstat(path)
            h.update(f"{path.relative_to(root)}\0{st.st_mode}\0{st.st_uid}\0".encode())
            if path.is_symlink():
                h.update(os.readlink(path).encode())
            elif path.is_file():
                h.update(path.read_bytes())
    return f"local:{name}:{h.hexdigest()}"


class CountingExecutor:
    def __init__(self, inner: OciExecutor) -> None:
        self.inner = inner
        self.runs: list[ProcessSpec] = []

    async def run(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        output: OutputSink | None = None,
    ) -> int:
        self.runs.append(process)
        return await self.inner.run(root=root, mounts=mounts, process=process, output=output)


@dataclass
class Engine:
    cache: CacheManager
    keys: SqliteCacheKeyStorage
    executor: CountingExecutor
    images: BusyboxImages
    locals: LocalDirs
    llb: LlbSolver

    async def solve(
        self, definition: Definition, *, options: JobOptions | None = None
    ) -> tuple[ResultRef, CollectingReporter]:
        reporter = CollectingReporter()
        ref = await self.llb.solve(definition, options=options, reporter=reporter)
        assert ref is not None
        return ref, reporter

    async def read(self, ref: ResultRef) -> dict[str, object]:
        """The result's tree: file contents, link targets, ``None`` for directories."""
        value = ref.value
        assert isinstance(value, ImmutableRef)
        async with value.mount() as root:
            return read_tree(root)


def read_tree(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = {"link": os.readlink(path)}
            elif path.is_dir():
                out[rel + "/"] = None
            else:
                out[rel] = path.read_bytes()
    return out


def final_statuses(reporter: CollectingReporter) -> dict[str, VertexStatus]:
    """The last status of each vertex."""
    out: dict[str, VertexStatus] = {}
    for status in reporter.statuses():
        out[status.digest] = status
    return out


@contextlib.asynccontextmanager
async def open_engine(state: Path, rootfs: Path, dirs: dict[str, Path]) -> AsyncIterator[Engine]:
    cache = await CacheManager.open(state)
    keys = SqliteCacheKeyStorage(state / "metadata.db")
    try:
        executor = CountingExecutor(OciExecutor(state / "executor", runtime="crun"))
        images = BusyboxImages(cache, rootfs)
        local = LocalDirs(cache, dict(dirs))
        worker = Worker(
            refs=CacheRefs(cache),
            executor=executor,
            sources={"docker-image": images, "local": local},
            mount_dir=cache.mount_dir,
        )
        solver = Solver(result_storage=cache, key_storage=keys)
        yield Engine(cache, keys, executor, images, local, LlbSolver(worker, solver))
        stats = cache.statistics()
        assert stats.in_use == 0, f"{stats.in_use} cache records still in use"
    finally:
        keys.close()
        await cache.close()


@pytest.fixture
def engine_parts(
    busybox_rootfs: Path, tmp_path: Path, mountinfo_unchanged: None
) -> tuple[Path, Path]:
    need_tools("crun")
    return tmp_path / "state", busybox_rootfs


@pytest.fixture
async def engine(engine_parts: tuple[Path, Path], tmp_path: Path) -> AsyncIterator[Engine]:
    state, rootfs = engine_parts
    async with open_engine(state, rootfs, {}) as engine:
        yield engine
