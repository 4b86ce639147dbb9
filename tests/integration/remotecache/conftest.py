"""Cache export and import through whole engines, as root: a busybox base image pushed to
a real ``docker-registry``, Dockerfile builds on separate empty state directories."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.cache import RecordType, UsageFilter
from dockyard.core import BuildWarning, CollectingReporter, VertexStatus
from dockyard.engine import (
    BuildRequest,
    CacheExport,
    CacheImport,
    Engine,
    EngineConfig,
    SolveResponse,
)
from dockyard.exporter import parse_output
from dockyard.frontend import DockerfileOptions
from dockyard.oci import MediaType
from dockyard.registry import RegistryClient
from dockyard.session import Session
from dockyard.snapshot.mount import mountpoints_under
from dockyard.testing.registry import REGISTRY_BINARY, RegistryProcess, start_registry
from tests.integration.conftest import need_root, need_tools, requirement_missing

EPOCH = 1_700_000_000
ROOT = Path(__file__).resolve().parents[3]

DOCKERFILE = """\
FROM {base}
COPY a.txt /a.txt
RUN --mount=type=cache,target=/runs echo a >> /runs/log && cat /a.txt > /ra
COPY b.txt /b.txt
RUN --mount=type=cache,target=/runs echo b >> /runs/log && cat /b.txt /ra > /rb
"""


@pytest.fixture(autouse=True)
def _no_leaked_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    need_root()
    need_tools("crun")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    leaked = mountpoints_under(tmp_path)
    assert not leaked, f"mounts left behind: {leaked}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def _busybox_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "examples_busybox_image", ROOT / "examples" / "busybox_image.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base(registry: RegistryProcess, busybox_rootfs: Path) -> str:
    """busybox pushed to the registry (one uncompressed layer); its reference."""
    manifest, blobs = _busybox_example().image_blobs(busybox_rootfs)
    name = registry.ref("base/busybox:1")

    async def push() -> None:
        async with RegistryClient(config=registry.registry_config()) as client:
            await client.push_image(
                name, manifest=manifest, media_type=MediaType.OCI_MANIFEST, blobs=blobs
            )

    asyncio.run(push())
    return name


@dataclass
class Built:
    response: SolveResponse
    reporter: CollectingReporter
    image: str  # the OCI archive's manifest digest
    image_layers: int  # layer records (pulled or imported) in the state dir afterwards

    def statuses(self) -> dict[str, VertexStatus]:
        """The last status of each named step."""
        return {s.name: s for s in self.reporter.statuses()}

    def runs(self) -> dict[str, bool]:
        """Each RUN step → whether it ran (started, not a cache hit)."""
        return {
            name: status.started is not None and not status.cached
            for name, status in self.statuses().items()
            if " RUN " in f" {name} "
        }

    def warnings(self) -> list[str]:
        return [e.short for e in self.reporter.events if isinstance(e, BuildWarning)]


def write_context(path: Path, base: str, *, a: str = "a1", b: str = "b1") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (path / "a.txt").write_text(a)
    (path / "b.txt").write_text(b)
    return path


async def build(
    state: Path,
    registry: RegistryProcess,
    context: Path,
    *,
    cache_to: tuple[CacheExport, ...] = (),
    cache_from: tuple[CacheImport, ...] = (),
    outputs: tuple[str, ...] = (),
    epoch: bool = True,
) -> Built:
    """One Dockerfile build on the engine of ``state`` (made if missing), exported as an
    OCI archive (and ``outputs``); ``epoch``: with ``SOURCE_DATE_EPOCH``."""
    reporter = CollectingReporter()
    archive = state.parent / f"{state.name}-image.tar"
    engine = await Engine.open(
        EngineConfig(state_dir=state, runtime="crun", registry=registry.registry_config())
    )
    try:
        session = Session(directories={"context": context, "dockerfile": context})
        async with engine.sessions.attach(session):
            response = await engine.solve(
                BuildRequest(
                    frontend="dockerfile.v0",
                    frontend_options=DockerfileOptions(
                        build_args={"SOURCE_DATE_EPOCH": str(EPOCH)} if epoch else {}
                    ),
                    exports=(
                        parse_output(f"type=oci,dest={archive}"),
                        *(parse_output(o) for o in outputs),
                    ),
                    cache_exports=cache_to,
                    cache_imports=cache_from,
                    session_id=session.id,
                    reporter=reporter,
                )
            )
        stats = engine.cache.statistics()
        assert stats.in_use == 0, f"{stats.in_use} cache records still in use"
        layers = await engine.du(UsageFilter(types=frozenset({RecordType.SOURCE_IMAGE})))
    finally:
        await engine.close()
    digest = response.exports[0].image_digest
    assert digest is not None
    os.unlink(archive)
    return Built(response=response, reporter=reporter, image=str(digest), image_layers=len(layers))
