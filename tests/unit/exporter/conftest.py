"""A cache manager over the native snapshotter (plain directories: no mounts, no root)
with a content store and an image store in one temporary state directory, and a small
layer chain to export."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import ContentStore, ImageStore
from dockyard.exporter import ExportServices
from dockyard.oci import ContainerConfig, History, ImageConfig

T0 = 1_700_000_000


@dataclass
class State:
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
        ref = await self.cache.new_mutable(parent, description=description)
        mounts = await ref.mounts()
        assert mounts[0].type == "bind"
        fn(Path(mounts[0].source))
        return await ref.commit()

    async def chain(self) -> list[ImmutableRef]:
        """base (files, a symlink, a hard link) → app (adds, changes, deletes) → an
        empty step."""
        base = await self.layer(_base, description="base")
        app = await self.layer(_app, base, description="RUN make app")
        empty = await self.layer(lambda root: None, app, description="RUN true")
        return [base, app, empty]


def _touch(path: Path, when: int = T0) -> None:
    os.utime(path, (when, when), follow_symlinks=False)


def _base(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text("ID=test\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    os.chmod(root / "bin" / "tool", 0o755)
    os.link(root / "bin" / "tool", root / "bin" / "tool-link")
    os.symlink("tool", root / "bin" / "alias")
    (root / "gone.txt").write_text("deleted later\n")
    for p in (root / "etc" / "os-release", root / "bin" / "tool", root / "bin" / "alias"):
        _touch(p)
    for p in (root / "etc", root / "bin", root / "gone.txt"):
        _touch(p)


def _app(root: Path) -> None:
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / "etc" / "os-release").write_text("ID=app\n")
    (root / "gone.txt").unlink()
    for p in (root / "app" / "main.py", root / "app", root / "etc" / "os-release", root / "etc"):
        _touch(p, T0 + 100)
    _touch(root, T0 + 100)  # the whiteout of gone.txt takes its directory's time


def frontend_config() -> ImageConfig:
    """What a Dockerfile frontend would give: three steps, one without a layer."""
    return ImageConfig(
        architecture="amd64",
        os="linux",
        config=ContainerConfig(env=("PATH=/bin",), cmd=("python", "/app/main.py")),
        history=(
            History(created_by="ADD base /", comment="buildkit.dockerfile.v0"),
            History(created_by="ENV A=1", empty_layer=True),
            History(created_by="RUN make app # buildkit"),
            History(created_by="RUN true # buildkit"),
        ),
    )


@pytest.fixture
async def state(tmp_path: Path) -> State:
    return await open_state(tmp_path / "state")


_opened: list[State] = []


async def open_state(root: Path) -> State:
    cache = await CacheManager.open(root, snapshotter="native")
    content = ContentStore(root / "content")
    images = ImageStore.open(root, content)
    s = State(root=root, cache=cache, content=content, images=images)
    _opened.append(s)
    return s


@pytest.fixture(autouse=True)
async def _close_states() -> AsyncIterator[None]:
    yield
    while _opened:
        s = _opened.pop()
        s.images.close()
        s.content.close()
        await s.cache.close()
