from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.core import ConfigError, DockyardError, NotFoundError
from dockyard.snapshot import (
    BaseSnapshotter,
    Kind,
    NativeSnapshotter,
    OverlaySnapshotter,
    new_snapshotter,
)
from dockyard.snapshot.mount import mounted

from .trees import change_layer, manifest, populate_base

pytestmark = pytest.mark.integration


@pytest.fixture(params=["overlayfs", "native"])
async def sn(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseSnapshotter]:
    s = new_snapshotter(tmp_path / f"state-{request.param}", request.param)
    assert s.name == request.param
    yield s
    s.close()


async def _commit_layer(sn: BaseSnapshotter, key: str, parent: str | None, fn: object) -> None:
    mounts = await sn.prepare(f"{key}-active", parent)
    with mounted(mounts) as root:
        fn(root)  # type: ignore[operator]
    await sn.commit(key, f"{key}-active")


async def test_lifecycle(sn: BaseSnapshotter) -> None:
    await _commit_layer(sn, "base", None, lambda r: (r / "a").write_text("1"))
    await _commit_layer(sn, "top", "base", lambda r: (r / "b").write_text("2"))
    info = await sn.stat("top")
    assert info.kind is Kind.COMMITTED
    assert info.parent == "base"
    views = await sn.view("v", "top")
    assert all(m.readonly for m in views)
    with mounted(views) as root:
        assert sorted(p.name for p in root.iterdir()) == ["a", "b"]
        with pytest.raises(OSError):
            (root / "c").write_text("no")
    assert (await sn.stat("v")).kind is Kind.VIEW
    mounts = await sn.prepare("work", "top")
    assert mounts == await sn.mounts("work")
    with mounted(mounts) as root:
        (root / "a").unlink()
        (root / "big").write_bytes(b"x" * 100_000)
    usage = await sn.usage("work")
    assert usage.size >= 100_000
    keys = sorted([i.key async for i in sn.walk()])
    assert keys == ["base", "top", "v", "work"]

    with pytest.raises(NotFoundError):
        await sn.prepare("x", "missing")
    with pytest.raises(DockyardError, match="not committed"):
        await sn.prepare("x", "work")
    with pytest.raises(DockyardError, match="already exists"):
        await sn.prepare("work", "top")
    with pytest.raises(DockyardError, match="based on it"):
        await sn.remove("base")
    with pytest.raises(DockyardError, match="committed"):
        await sn.mounts("base")
    for key in ("work", "v", "top", "base"):
        await sn.remove(key)
    assert [i async for i in sn.walk()] == []
    assert sorted(os.listdir(sn.root)) == [
        "metadata.db",
        "metadata.db-shm",
        "metadata.db-wal",
        "snapshotter",
    ]
    with pytest.raises(NotFoundError):
        await sn.remove("base")


async def test_view_without_parent_and_empty_prepare(sn: BaseSnapshotter) -> None:
    with mounted(await sn.view("v")) as root:
        assert list(root.iterdir()) == []
    with mounted(await sn.prepare("p")) as root:
        (root / "x").write_text("x")
    await sn.commit("P", "p")
    assert (await sn.usage("P")).inodes >= 2


async def _layer_tars(sn: BaseSnapshotter) -> tuple[bytes, bytes]:
    await _commit_layer(sn, "L1", None, populate_base)
    await _commit_layer(sn, "L2", "L1", change_layer)
    t1, t2 = io.BytesIO(), io.BytesIO()
    r1 = await sn.diff("L1", t1)
    r2 = await sn.diff("L2", t2)
    assert r1.size == len(t1.getvalue())
    assert r2.size == len(t2.getvalue())
    return t1.getvalue(), t2.getvalue()


async def _tree_of(sn: BaseSnapshotter, key: str, parent: str) -> dict[str, tuple[object, ...]]:
    with mounted(await sn.view(key, parent)) as root:
        return manifest(root)


@pytest.mark.parametrize("target_kind", ["overlayfs", "native"])
async def test_diff_apply_round_trip(sn: BaseSnapshotter, tmp_path: Path, target_kind: str) -> None:
    t1, t2 = await _layer_tars(sn)
    expected1 = await _tree_of(sn, "v1", "L1")
    expected2 = await _tree_of(sn, "v2", "L2")
    assert "olddir" not in expected2
    assert "opaque/gone" not in expected2
    assert expected2["opaque/new"][0] is not None

    other = new_snapshotter(tmp_path / f"other-{target_kind}", target_kind)  # type: ignore[arg-type]
    try:
        await other.prepare("a1")
        r1 = await other.apply("a1", io.BytesIO(t1))
        await other.commit("A1", "a1")
        await other.prepare("a2", "A1")
        r2 = await other.apply("a2", io.BytesIO(t2))
        await other.commit("A2", "a2")
        assert r1.size == len(t1)
        assert r2.size == len(t2)
        assert await _tree_of(other, "w1", "A1") == expected1
        assert await _tree_of(other, "w2", "A2") == expected2
        # diffs of the re-applied layers are the same bytes (deterministic, lossless)
        again1, again2 = io.BytesIO(), io.BytesIO()
        d1 = await other.diff("A1", again1)
        await other.diff("A2", again2)
        assert d1 == r1
        assert again1.getvalue() == t1
        if other.name == sn.name:
            assert again2.getvalue() == t2
    finally:
        other.close()


async def test_a_re_applied_layer_diffs_the_same_a_second_later(tmp_path: Path) -> None:
    """The native differ's whiteouts carry the deleted entry's time, not their parent's:
    the parent's is when the tree was made (or re-applied), a second later here."""
    import asyncio

    sn = NativeSnapshotter(tmp_path / "made")
    other = NativeSnapshotter(tmp_path / "again")
    try:
        t1, t2 = await _layer_tars(sn)
        await asyncio.sleep(1.1)  # the re-applied tree's directories: another second
        await other.prepare("a1")
        await other.apply("a1", io.BytesIO(t1))
        await other.commit("A1", "a1")
        await other.prepare("a2", "A1")
        await other.apply("a2", io.BytesIO(t2))
        await other.commit("A2", "a2")
        again = io.BytesIO()
        await other.diff("A2", again)
        assert again.getvalue() == t2
    finally:
        other.close()
        sn.close()


async def test_clamped_mtimes(sn: BaseSnapshotter) -> None:
    await _commit_layer(sn, "L1", None, populate_base)
    plain, clamped = io.BytesIO(), io.BytesIO()
    await sn.diff("L1", plain)
    await sn.diff("L1", clamped, clamp_mtime=1000)
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(clamped.getvalue())) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1000}
    assert plain.getvalue() != clamped.getvalue()


async def test_apply_whiteouts_on_parent(sn: BaseSnapshotter) -> None:
    """Whiteouts written into an active snapshot hide the parent's entries."""
    await _commit_layer(sn, "L1", None, populate_base)
    _, t2 = await _layer_tars_second(sn)
    await sn.prepare("x", "L1")
    await sn.apply("x", io.BytesIO(t2))
    with mounted(await sn.mounts("x")) as root:
        assert not (root / "olddir").exists()
        assert sorted(p.name for p in (root / "opaque").iterdir()) == ["new"]
        assert (root / "replace-me").read_text() == "now a file"
        assert (root / "file-to-dir" / "inner").read_text() == "inner"
        assert not (root / "bin" / "ash").exists()


async def _layer_tars_second(sn: BaseSnapshotter) -> tuple[None, bytes]:
    await _commit_layer(sn, "L2", "L1", change_layer)
    t2 = io.BytesIO()
    await sn.diff("L2", t2)
    return None, t2.getvalue()


async def test_apply_through_lower_symlink(tmp_path: Path) -> None:
    """A parent's symlinked directory is followed as the mounted tree would follow it."""
    sn = OverlaySnapshotter(tmp_path / "s")
    try:

        def base(root: Path) -> None:
            (root / "usr" / "lib").mkdir(parents=True)
            os.chmod(root / "usr" / "lib", 0o750)
            os.symlink("usr/lib", root / "lib")

        await _commit_layer(sn, "L1", None, base)
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            ti = tarfile.TarInfo("lib/x.so")
            ti.size = 2
            tar.addfile(ti, io.BytesIO(b"so"))
        await sn.prepare("x", "L1")
        await sn.apply("x", io.BytesIO(buf.getvalue()))
        with mounted(await sn.mounts("x")) as root:
            assert (root / "lib").is_symlink()
            assert (root / "usr" / "lib" / "x.so").read_text() == "so"
            assert oct((root / "usr" / "lib").stat().st_mode & 0o777) == oct(0o750)
    finally:
        sn.close()


async def test_deep_overlay_chain(tmp_path: Path) -> None:
    """More than 500 layers (the kernel's limit) and lowerdir strings beyond a page."""
    sn = OverlaySnapshotter(tmp_path / ("long-state-dir-name-" * 3))
    try:
        parent = None
        depth = 620
        long_option_seen = False
        for i in range(depth):
            key = f"layer-{i}"
            mounts = await sn.prepare(f"{key}-a", parent)
            lowerdir = next((o for o in mounts[0].options if o.startswith("lowerdir=")), "")
            long_option_seen |= len(lowerdir) > 4096
            with mounted(mounts) as root:
                (root / f"f{i}").write_text(str(i))
                (root / "top").write_text(str(i))
                if i == 300:
                    (root / "f7").unlink()
            await sn.commit(key, f"{key}-a")
            parent = key
        assert long_option_seen
        with mounted(await sn.view("v", parent)) as root:
            names = {p.name for p in root.iterdir()}
            assert len(names) == depth  # f0..f619 minus f7, plus top
            assert "f7" not in names
            assert (root / "top").read_text() == str(depth - 1)
            assert (root / "f0").read_text() == "0"
        mounts = await sn.mounts("v")
        lowers = mounts[0].options[0].removeprefix("lowerdir=").split(":")
        assert len(lowers) <= 500
        assert any(p.endswith("/flat") for p in lowers)
    finally:
        sn.close()


def test_new_snapshotter_kinds(tmp_path: Path) -> None:
    s = new_snapshotter(tmp_path, "auto")
    assert isinstance(s, OverlaySnapshotter)  # this machine has overlayfs
    s.close()
    with pytest.raises(ConfigError):
        new_snapshotter(tmp_path, "native")
    with pytest.raises(ConfigError):
        new_snapshotter(tmp_path, "zfs")  # type: ignore[arg-type]
    n = new_snapshotter(tmp_path / "n", "native")
    assert isinstance(n, NativeSnapshotter)
    n.close()
    again = new_snapshotter(tmp_path / "n")
    assert isinstance(again, NativeSnapshotter)
    again.close()


async def test_reopen_keeps_records_and_cleans_orphans(tmp_path: Path) -> None:
    s = new_snapshotter(tmp_path, "overlayfs")
    await _commit_layer(s, "base", None, lambda r: (r / "a").write_text("1"))
    s.close()
    (tmp_path / "snapshots" / "999").mkdir()
    (tmp_path / "snapshots" / "rm-5").mkdir()
    s = new_snapshotter(tmp_path)
    try:
        assert (await s.stat("base")).kind is Kind.COMMITTED
        assert not (tmp_path / "snapshots" / "999").exists()
        assert not (tmp_path / "snapshots" / "rm-5").exists()
    finally:
        s.close()


def _small_tar(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, data or None for a dir, hard-link target or "")"""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if link:
                ti.type = tarfile.LNKTYPE
                ti.linkname = link
                tar.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


async def test_apply_does_not_resurrect_deleted_lower_dirs(sn: BaseSnapshotter) -> None:
    await _commit_layer(sn, "L1", None, populate_base)
    await _commit_layer(sn, "L2", "L1", change_layer)  # deletes olddir/
    tar = _small_tar(
        [
            ("olddir/new", b"new", ""),  # no directory entry: made implicitly
            ("bin/ash2", None, ""),
            ("ashlink", b"", "bin/sh"),  # hard link to a file of a lower layer
        ]
    )
    # bin/ash2 is a dir entry, the file entry for a hard link target lives below
    await sn.prepare("x", "L2")
    await sn.apply("x", io.BytesIO(tar))
    await sn.commit("X", "x")
    with mounted(await sn.view("v", "X")) as root:
        assert sorted(p.name for p in (root / "olddir").iterdir()) == ["new"]
        assert (root / "ashlink").read_bytes() == (root / "bin" / "sh").read_bytes()
        assert (root / "ashlink").stat().st_ino == (root / "bin" / "sh").stat().st_ino
        assert (root / "bin" / "ash2").is_dir()
        assert oct((root / "bin" / "sh").stat().st_mode & 0o7777) == oct(0o4755)


async def test_flatten_links_the_tree_of_a_chain(sn: BaseSnapshotter) -> None:
    """``flatten``: one layer showing a chain's tree (whiteouts, opaque directories and
    type changes resolved), its regular files hard links to the chain's files."""

    def third(root: Path) -> None:
        (root / "third.txt").write_text("third")
        os.chmod(root, 0o750)
        for victim in sorted(root.rglob("*")):
            if victim.is_file() and not victim.is_symlink() and "third" not in victim.name:
                victim.unlink()  # a whiteout over a lower layer's file
                break

    await _commit_layer(sn, "L1", None, populate_base)
    await _commit_layer(sn, "L2", "L1", change_layer)
    await _commit_layer(sn, "L3", "L2", third)
    await sn.flatten("F", "L3")
    info = await sn.stat("F")
    assert (info.kind, info.parent) == (Kind.COMMITTED, None)
    with mounted(await sn.view_mounts("L3")) as chain, mounted(await sn.view_mounts("F")) as flat:
        assert manifest(flat) == manifest(chain)
        files = [p for p in flat.rglob("*") if p.is_file() and not p.is_symlink()]
        assert files
        assert all(os.lstat(p).st_nlink > 1 for p in files)
    assert [k for k in await sn.layers("F")] == ["F"]
    for key in ("L1", "L2", "L3", "F"):
        assert await sn.layer_count(key) == len(await sn.layers(key))
    assert await sn.layer_count("L3") == 3


async def test_directories_changed_only_in_their_times_are_no_change(sn: BaseSnapshotter) -> None:
    """A mount point made and removed (what a RUN --mount leaves), a file made and
    deleted in /tmp, a chown to the same owner: the directories differ from the layer
    below only in their times, and BuildKit's differs (overlay and walking) leave them
    out, so the layer is empty. A change below such a directory still brings it along
    as a parent, and a changed mode is a change (found by differential testing against
    docker 20.10's BuildKit)."""
    import tarfile

    def base(root: Path) -> None:
        for d in ("run", "tmp", "var/a/b", "etc"):
            (root / d).mkdir(parents=True)
        (root / "tmp").chmod(0o1777)
        (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        for d in ("run", "tmp", "var/a/b", "var/a", "var", "etc"):
            os.utime(root / d, (1_000_000, 1_000_000))

    def touch_only(root: Path) -> None:
        (root / "run" / "secrets").mkdir()
        (root / "run" / "secrets").rmdir()
        (root / "tmp" / "x").write_text("x")
        (root / "tmp" / "x").unlink()
        os.chown(root / "etc", 0, 0)

    def one_change(root: Path) -> None:
        (root / "var" / "a" / "b" / "g").write_text("g")
        (root / "var" / "a" / "b" / "g").unlink()
        (root / "var" / "a" / "new").write_text("new")
        (root / "etc").chmod(0o700)

    await _commit_layer(sn, "B", None, base)
    await _commit_layer(sn, "T", "B", touch_only)
    await _commit_layer(sn, "C", "T", one_change)
    empty, changed = io.BytesIO(), io.BytesIO()
    await sn.diff("T", empty)
    await sn.diff("C", changed)
    with tarfile.open(fileobj=io.BytesIO(empty.getvalue())) as tar:
        assert tar.getnames() == []
    with tarfile.open(fileobj=io.BytesIO(changed.getvalue())) as tar:
        assert sorted(tar.getnames()) == ["etc", "var", "var/a", "var/a/new"]
