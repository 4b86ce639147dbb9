"""The engine end to end, as root: a state directory holding the busybox base image
(made by ``examples/busybox_image.py`` from Debian's busybox-static), the real engine on
it (overlayfs, crun), and in-process client sessions."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import stat
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from dockyard.cache import ImmutableRef
from dockyard.content import ContentStore, ImageStore
from dockyard.core import CollectingReporter, Digest, VertexStatus, host_platform
from dockyard.engine import Engine, EngineConfig
from dockyard.llb import Definition
from dockyard.llbsolver import JobOptions
from dockyard.oci import ContainerConfig, Descriptor, ImageConfig, ImageManifest, MediaType
from dockyard.session import Session
from tests.integration.conftest import need_tools

ROOT = Path(__file__).resolve().parents[3]
BUSYBOX = "docker.io/library/busybox:latest"


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        f"examples_{name}", ROOT / "examples" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


StoreImage = Callable[..., Coroutine[Any, Any, Digest]]
store_busybox = cast(StoreImage, _example("busybox_image").store_image)


async def store_image(state: Path, name: str, layers: list[bytes]) -> Digest:
    """Store an image of uncompressed ``layers`` as ``name`` in ``state``'s image store."""
    platform = host_platform()
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        config=ContainerConfig(env=("PATH=/bin",)),
        diff_ids=tuple(Digest.from_bytes(layer) for layer in layers),
    ).to_bytes()
    manifest = ImageManifest(
        config=Descriptor.of(MediaType.OCI_CONFIG, config),
        layers=tuple(Descriptor.of(MediaType.layer("uncompressed"), layer) for layer in layers),
    ).to_bytes()
    content = ContentStore(state / "content")
    try:
        for blob in (*layers, config, manifest):
            await content.write_blob(blob)
        with ImageStore.open(state, content) as images:
            await images.put(name, Descriptor.of(MediaType.OCI_MANIFEST, manifest))
    finally:
        content.close()
    return Digest.from_bytes(manifest)


@pytest.fixture
async def state(busybox_rootfs: Path, tmp_path: Path, mountinfo_unchanged: None) -> Path:
    """A state directory whose image store holds busybox."""
    need_tools("crun")
    state = tmp_path / "state"
    await store_busybox(state, busybox_rootfs)
    return state


@contextlib.asynccontextmanager
async def open_engine(state: Path, **config: Any) -> AsyncIterator[Engine]:
    engine = await Engine.open(EngineConfig(state_dir=state, runtime="crun", **config))
    try:
        yield engine
        if not engine.closed:
            stats = engine.cache.statistics()
            assert stats.in_use == 0, f"{stats.in_use} cache records still in use"
    finally:
        await engine.close()


@pytest.fixture
async def engine(state: Path) -> AsyncIterator[Engine]:
    async with open_engine(state) as running:
        yield running


async def solve_tree(
    engine: Engine,
    definition: Definition,
    *,
    session: Session | None = None,
    reporter: CollectingReporter | None = None,
) -> dict[str, object]:
    """Solve on the engine's LLB solver and read the result's tree."""
    reporter = reporter if reporter is not None else CollectingReporter()
    async with contextlib.AsyncExitStack() as stack:
        options = JobOptions()
        if session is not None:
            handle = await stack.enter_async_context(engine.sessions.attach(session))
            options = JobOptions(session_id=handle.id, secrets=handle.secrets)
        ref = await engine.llb.solve(definition, options=options, reporter=reporter)
        assert ref is not None
        stack.push_async_callback(ref.release)
        value = ref.value
        assert isinstance(value, ImmutableRef)
        root = await stack.enter_async_context(value.mount())
        return read_tree(root)
    raise AssertionError("unreachable")


def read_tree(root: Path) -> dict[str, object]:
    """Every entry below ``root``: file contents, ``("link", target)``, ``"dir"``."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = path.read_bytes()
    return out


def final_statuses(reporter: CollectingReporter) -> dict[str, VertexStatus]:
    """The last status of each step."""
    out: dict[str, VertexStatus] = {}
    for status in reporter.statuses():
        out[status.digest] = status
    return out


def graph_statuses(reporter: CollectingReporter, definition: Definition) -> dict[str, VertexStatus]:
    """The last status of each op of ``definition`` (not the frontend's own steps)."""
    ops = {str(op.digest) for op in definition}
    return {d: s for d, s in final_statuses(reporter).items() if d in ops}
