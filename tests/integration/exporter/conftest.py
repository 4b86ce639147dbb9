"""Exports of real snapshot chains (overlayfs and native, as root) checked with umoci,
skopeo and a real docker-registry."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import ContentStore, ImageStore
from dockyard.exporter import ExportServices
from dockyard.snapshot import copy_tree
from dockyard.snapshot.mount import mountpoints_under
from dockyard.testing.registry import REGISTRY_BINARY, RegistryProcess, start_registry
from tests.integration.conftest import need_root, need_tools, requirement_missing

EPOCH = 1_700_000_000


@pytest.fixture(autouse=True)
def _no_leaked_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    need_root()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    leaked = mountpoints_under(tmp_path)
    assert not leaked, f"mounts left behind: {leaked}"


@dataclass
class Stores:
    root: Path
    cache: CacheManager
    content: ContentStore
    images: ImageStore

    @property
    def services(self) -> ExportServices:
        return ExportServices(content=self.content, images=self.images)

    async def layer(
        self,
        fn: Callable[[Path], object],
        parent: ImmutableRef | None = None,
        description: str = "",
    ) -> ImmutableRef:
        """A committed layer made by ``fn`` on the mounted (writable) tree."""
        ref = await self.cache.new_mutable(parent, description=description)
        try:
            async with ref.mount() as root:
                await asyncio.to_thread(fn, root)
        except BaseException:
            await ref.release()
            raise
        return await ref.commit()

    async def busybox_chain(
        self, rootfs: Path, *, when: int | None = None, delete: bool = True
    ) -> list[ImmutableRef]:
        """busybox → a step that writes, links and (with ``delete``) deletes files and
        replaces a directory → a step that changes nothing. ``when``: the times of what
        the step writes (``None``: now, like a real build). Deletions leave whiteouts
        whose times are when they were made (overlayfs), as in a real build."""
        base = await self.layer(
            lambda root: copy_tree(str(rootfs), str(root)), description="busybox"
        )

        def app(root: Path) -> None:
            (root / "app").mkdir()
            (root / "app" / "hello.txt").write_text("hello\n")
            os.symlink("hello.txt", root / "app" / "link")
            os.link(root / "app" / "hello.txt", root / "app" / "hard")
            os.chmod(root / "app" / "hello.txt", 0o640)
            os.chown(root / "app" / "hello.txt", 1000, 1000)
            if delete:
                (root / "etc" / "hostname").unlink()
                os.rmdir(root / "home" / "app")
                os.mkdir(root / "home" / "app")
                (root / "home" / "app" / "new").write_text("fresh\n")
            if when is not None:
                for p in (
                    root / "app" / "hello.txt",
                    root / "app" / "link",
                    root / "app",
                    root / "home" / "app" / "new",
                    root / "home" / "app",
                    root / "home",
                    root / "etc",
                    root,
                ):
                    if p.exists():
                        os.utime(p, (when, when), follow_symlinks=False)

        step = await self.layer(app, base, description="RUN make app")
        nothing = await self.layer(lambda root: None, step, description="RUN true")
        return [base, step, nothing]


@pytest.fixture(params=["overlayfs", "native"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def open_stores(root: Path, kind: str) -> Stores:
    cache = await CacheManager.open(root, snapshotter=kind)  # type: ignore[arg-type]
    content = ContentStore(root / "content")
    return Stores(root=root, cache=cache, content=content, images=ImageStore.open(root, content))


async def close_stores(s: Stores) -> None:
    s.images.close()
    s.content.close()
    await s.cache.close()


@pytest.fixture
async def stores(tmp_path: Path, kind: str) -> AsyncIterator[Stores]:
    s = await open_stores(tmp_path / "state", kind)
    try:
        yield s
    finally:
        await close_stores(s)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    need_tools("skopeo")
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


async def run(*args: str, stdin: bytes | None = None) -> str:
    """Run a tool; its stdout, or an assertion error with its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}): {err.decode()}"
    return out.decode()
