"""Merge and diff snapshots at the snapshotter level (``dockyard.snapshot``)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dockyard.core import DockyardError
from dockyard.snapshot import BaseSnapshotter, new_snapshotter
from dockyard.snapshot.mount import mounted

from .helpers import describe


@pytest.fixture
async def sn(tmp_path: Path, kind: str) -> AsyncIterator[BaseSnapshotter]:
    s = new_snapshotter(tmp_path / "state", kind)  # type: ignore[arg-type]
    yield s
    s.close()


async def layer(
    sn: BaseSnapshotter, key: str, parent: str | None, fn: Callable[[Path], object]
) -> None:
    with mounted(await sn.prepare(key + "-work", parent)) as root:
        fn(root)
    await sn.commit(key, key + "-work")


async def view(sn: BaseSnapshotter, key: str) -> dict[str, tuple[object, ...]]:
    with mounted(await sn.view_mounts(key)) as root:
        return describe(root)


async def test_layers_of_composites_are_protected(sn: BaseSnapshotter) -> None:
    await layer(sn, "a", None, lambda r: (r / "a").write_text("a"))
    await layer(sn, "a2", "a", lambda r: (r / "a").unlink())
    await layer(sn, "b", None, lambda r: (r / "b").write_text("b"))
    await sn.merge("m", ["a2", "b"])
    assert await sn.layers("m") == ["a", "a2", "b"]
    assert (await sn.stat("m")).parent is None
    for key in ("a", "a2", "b"):
        with pytest.raises(DockyardError, match="based on it"):
            await sn.remove(key)
    await sn.make_diff("d", "a", "a2")
    assert await sn.layers("d") == ["a2"]
    await sn.make_diff("c", "b", "a2")  # no chain between them: computed
    assert await sn.layers("c") == ["c"]
    # a layer tar of a composite of several layers is refused; one layer is that layer's
    with pytest.raises(DockyardError, match="each of its layers"):
        await sn.diff("m", io.BytesIO())
    one, own = io.BytesIO(), io.BytesIO()
    await sn.diff("d", one)
    await sn.diff("a2", own)
    assert one.getvalue() == own.getvalue()
    for key in ("c", "d", "m", "a2", "a", "b"):
        await sn.remove(key)
    assert [i async for i in sn.walk()] == []
    assert sorted(n for n in os.listdir(sn.root) if n.isdigit()) == []


async def test_layers_need_committed_snapshots(sn: BaseSnapshotter) -> None:
    await sn.prepare("active")
    with pytest.raises(DockyardError, match="not committed"):
        await sn.layers("active")
    with pytest.raises(DockyardError, match="not committed"):
        await sn.merge("m", ["active"])
    with pytest.raises(DockyardError, match="not committed"):
        await sn.view_mounts("active")
    with pytest.raises(DockyardError, match="at least one"):
        await sn.merge("m", [])
    # a failed merge leaves nothing behind
    assert [i.key async for i in sn.walk()] == ["active"]


async def test_views_and_children_of_composites(sn: BaseSnapshotter) -> None:
    def base(r: Path) -> None:
        (r / "d").mkdir()
        (r / "d" / "x").write_text("x")
        (r / "d" / "y").write_text("y")

    await layer(sn, "base", None, base)
    await layer(sn, "rm", "base", lambda r: (r / "d" / "x").unlink())
    await sn.make_diff("only-rm", "base", "rm")
    await layer(sn, "other", None, lambda r: (r / "o").write_text("o"))
    await sn.merge("m", ["other", "only-rm"])
    # the whiteout of d/x sits in a directory no other layer of the merge has
    assert set(await view(sn, "m")) == {"o", "d"}
    with mounted(await sn.view("v", "m")) as root:
        assert sorted(os.listdir(root / "d")) == []
    with mounted(await sn.prepare("child", "m")) as root:
        assert sorted(os.listdir(root)) == ["d", "o"]
        assert os.listdir(root / "d") == []
        (root / "d" / "new").write_text("new")
    await sn.commit("child-c", "child")
    assert set(await view(sn, "child-c")) == {"o", "d", "d/new"}
    assert await sn.layers("child-c") == ["other", "rm", "child-c"]


async def test_whiteouts_from_unpacked_layers_stay_hidden(sn: BaseSnapshotter) -> None:
    """Layers unpacked from tars (images) hold plain whiteout devices: stacked over a tree
    without their directory, those directories must still be listed without them."""

    def base(r: Path) -> None:
        (r / "etc").mkdir()
        (r / "etc" / "a").write_text("a")
        (r / "etc" / "b").write_text("b")

    await layer(sn, "base", None, base)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("etc/.wh.a"))
        info = tarfile.TarInfo("etc/c")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"c"))
    buf.seek(0)
    await sn.prepare("unpack", "base")
    await sn.apply("unpack", buf)
    await sn.commit("img", "unpack")
    await sn.make_diff("img-only", "base", "img")
    await layer(sn, "other", None, lambda r: (r / "o").write_text("o"))
    await sn.merge("m", ["other", "img-only"])
    assert set(await view(sn, "m")) == {"o", "etc", "etc/c"}
    assert set(await view(sn, "img-only")) == {"etc", "etc/c"}
    await sn.make_diff("computed", "other", "img")
    assert set(await view(sn, "computed")) == {"etc", "etc/b", "etc/c"}
