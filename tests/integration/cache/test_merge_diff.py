"""Merge and diff refs on both snapshotters, through real mounts (BuildKit's MergeOp and
DiffOp semantics, with the examples of BuildKit's merge+diff documentation)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.snapshot import OverlaySnapshotter, SnapshotterKind

from .helpers import describe, make, names, tree


async def release(*refs: ImmutableRef | None) -> None:
    for ref in refs:
        if ref is not None:
            await ref.release()


async def test_merge_later_inputs_win(manager: CacheManager) -> None:
    def a(r: Path) -> None:
        (r / "dir").mkdir(mode=0o755)
        (r / "dir" / "a").write_text("a")

    def b(r: Path) -> None:
        (r / "dir").mkdir(mode=0o755)
        (r / "dir" / "b").write_text("b")
        (r / "otherdir").mkdir()

    def c(r: Path) -> None:
        (r / "dir").mkdir()
        os.chmod(r / "dir", 0o700)
        (r / "dir" / "a").write_text("overwritten")
        (r / "dir" / "c").write_text("c")

    ra, rb, rc = [await make(manager, fn) for fn in (a, b, c)]
    merged = await manager.merge([ra, rb, rc], description="merge a b c")
    assert merged.parent_ids == (ra.id, rb.id, rc.id)
    assert await names(merged) == {
        "dir": "<dir>",
        "dir/a": "overwritten",
        "dir/b": "b",
        "dir/c": "c",
        "otherdir": "<dir>",
    }
    assert (await tree(merged))["dir"][1] == 0o700
    # the merge is associative
    ab = await manager.merge([ra, rb])
    ab_c = await manager.merge([ab, rc])
    assert await tree(ab_c) == await tree(merged)
    await release(ra, rb, rc, merged, ab, ab_c)


async def test_merge_keeps_deletions_of_later_inputs(manager: CacheManager) -> None:
    foo = await make(manager, lambda r: (r / "foo").write_text("foo"))
    rm_foo = await make(manager, lambda r: (r / "foo").unlink(), foo)
    bar = await make(manager, lambda r: (r / "bar").write_text("bar"), rm_foo)
    merged = await manager.merge([foo, bar])
    assert await names(merged) == {"bar": "bar"}
    reversed_merge = await manager.merge([bar, foo])
    assert await names(reversed_merge) == {"bar": "bar", "foo": "foo"}
    # diffing out the deletion (the documented workaround)
    just_bar = await manager.diff(rm_foo, bar)
    assert just_bar is not None
    assert await names(just_bar) == {"bar": "bar"}
    both = await manager.merge([foo, just_bar])
    assert await names(both) == {"bar": "bar", "foo": "foo"}
    # a deletion alone shows nothing when mounted
    only_rm = await manager.diff(foo, rm_foo)
    assert only_rm is not None
    assert await names(only_rm) == {}
    await release(foo, rm_foo, bar, merged, reversed_merge, just_bar, both, only_rm)


async def test_diff_corner_case_creates_parent_dirs(manager: CacheManager) -> None:
    def dir_foo(r: Path) -> None:
        (r / "dir").mkdir()
        (r / "dir" / "foo").write_text("foo")

    base = await make(manager, dir_foo)
    removed = await make(manager, lambda r: (r / "dir" / "foo").unlink(), base)
    rm_foo = await manager.diff(base, removed)
    otherdir = await make(manager, lambda r: (r / "otherdir").mkdir())
    assert rm_foo is not None
    merged = await manager.merge([otherdir, rm_foo])
    # /dir is there, holding only an inapplicable deletion; no whiteout is ever visible
    assert await names(merged) == {"otherdir": "<dir>", "dir": "<dir>"}
    assert await names(rm_foo) == {"dir": "<dir>"}
    await release(base, removed, rm_foo, otherdir, merged)


def lower_tree(r: Path) -> None:
    (r / "etc").mkdir()
    (r / "etc" / "config").write_text("v1")
    (r / "etc" / "gone").write_text("removed later")
    (r / "data").mkdir()
    (r / "data" / "keep").write_text("keep")
    (r / "data" / "sub").mkdir()
    (r / "data" / "sub" / "deep").write_text("deep")
    (r / "file-then-dir").write_text("f")
    (r / "dir-then-file").mkdir()
    (r / "dir-then-file" / "x").write_text("x")
    os.symlink("etc/config", r / "link")
    (r / "same").write_text("same")


def upper_tree(r: Path) -> None:
    """A tree made independently of ``lower_tree`` (no chain between them)."""
    (r / "etc").mkdir()
    (r / "etc" / "config").write_text("v2")
    (r / "data").mkdir()
    (r / "data" / "keep").write_text("keep")
    (r / "data" / "new").write_text("new")
    (r / "file-then-dir").mkdir()
    (r / "file-then-dir" / "inner").write_text("inner")
    (r / "dir-then-file").write_text("now a file")
    os.symlink("data/new", r / "link")
    (r / "same").write_text("same")
    os.chmod(r / "data", 0o750)
    os.chown(r / "etc" / "config", 1000, 1000)


def change_tree(r: Path) -> None:
    """Changes to ``lower_tree`` in place (a chain)."""
    (r / "etc" / "config").write_text("v3")
    (r / "etc" / "gone").unlink()
    shutil.rmtree(r / "data" / "sub")
    (r / "data" / "more").write_text("more")
    os.chmod(r / "data" / "keep", 0o600)


async def test_computed_diff_rebases(manager: CacheManager) -> None:
    lower = await make(manager, lower_tree)
    upper = await make(manager, upper_tree)
    diff = await manager.diff(lower, upper)
    assert diff is not None
    assert diff.parent_ids == (lower.id, upper.id)
    # a diff with no chain between its inputs is one computed layer: itself
    layers = await diff.layers()
    assert [layer.id for layer in layers] == [diff.id]
    await release(*layers)
    seen = await names(diff)
    assert "etc/gone" not in seen
    assert "data/sub" not in seen
    assert seen["etc/config"] == "v2"
    assert seen["data/new"] == "new"
    assert seen["dir-then-file"] == "now a file"
    assert seen["link"] == "-> data/new"
    # Merge(A, Diff(A, B)) == B
    rebased = await manager.merge([lower, diff])
    assert await tree(rebased) == await tree(upper)
    # checksums see the same tree too
    assert await manager.checksum(rebased, "/") == await manager.checksum(upper, "/")
    # diffing against nothing removes everything of the lower tree
    wipe = await manager.diff(lower, None)
    assert wipe is not None
    assert await names(wipe) == {}
    other = await make(manager, lambda r: (r / "extra").write_text("e"))
    wiped = await manager.merge([lower, other, wipe])
    assert await names(wiped) == {"extra": "e"}
    await release(lower, upper, diff, rebased, wipe, other, wiped)


async def test_diff_along_a_chain_reuses_layers(manager: CacheManager) -> None:
    lower = await make(manager, lower_tree)
    middle = await make(manager, lambda r: (r / "etc" / "gone").unlink(), lower)
    upper = await make(manager, lambda r: (r / "added").write_text("a"), middle)
    diff = await manager.diff(lower, upper)
    assert diff is not None
    layers = await diff.layers()
    assert [layer.id for layer in layers] == [middle.id, upper.id]
    await release(*layers)
    # the deletion does not show, its directory does (as when unpacking the layers)
    assert await names(diff) == {"etc": "<dir>", "added": "a"}
    rebased = await manager.merge([lower, diff])
    assert await tree(rebased) == await tree(upper)
    # the same, in two steps
    first = await manager.diff(lower, middle)
    second = await manager.diff(middle, upper)
    assert first is not None
    assert second is not None
    steps = await manager.merge([lower, first, second])
    assert await tree(steps) == await tree(upper)
    # trivial diffs
    same = await manager.diff(upper, upper)
    assert same is not None
    assert await names(same) == {}
    from_nothing = await manager.diff(None, upper)
    assert from_nothing is not None
    assert from_nothing.id == upper.id
    assert await manager.diff(None, None) is None
    await release(lower, middle, upper, diff, rebased, first, second, steps, same, from_nothing)


async def test_work_on_top_of_a_merge(manager: CacheManager) -> None:
    a = await make(manager, lambda r: (r / "a").write_text("a"))

    def sub_b(r: Path) -> None:
        (r / "sub").mkdir()
        (r / "sub" / "b").write_text("b")

    b = await make(manager, sub_b)
    merged = await manager.merge([a, b])

    def change(r: Path) -> None:
        (r / "a").unlink()
        (r / "sub" / "c").write_text("c")

    child = await make(manager, change, merged)
    assert child.parent_ids == (merged.id,)
    assert await names(child) == {"sub": "<dir>", "sub/b": "b", "sub/c": "c"}
    layers = await child.layers()
    assert [layer.id for layer in layers] == [a.id, b.id, child.id]
    await release(*layers)
    # inputs are untouched
    assert await names(a) == {"a": "a"}
    await release(a, b, merged, child)


async def test_exported_layers_rebuild_the_same_tree(manager: CacheManager) -> None:
    """What an image exporter writes (one tar per layer) unpacks to what mounts show."""
    lower = await make(manager, lower_tree)
    upper = await make(manager, upper_tree)
    diff = await manager.diff(lower, upper)
    base = await make(manager, lambda r: (r / "base").write_text("base"))
    rm = await make(manager, lambda r: (r / "base").unlink(), base)
    assert diff is not None
    merged = await manager.merge([base, lower, diff, rm])
    final = await make(manager, lambda r: (r / "last").write_text("last"), merged)
    layers = await final.layers()
    unpacked = await manager.new_mutable()
    for layer in layers:
        buf = io.BytesIO()
        await layer.write_layer(buf)
        buf.seek(0)
        await manager.snapshotter.apply(unpacked.id, buf)
    result = await unpacked.commit()
    assert await tree(result) == await tree(final)
    assert "base" not in await names(final)
    await release(*layers, lower, upper, diff, base, rm, merged, final, result)


async def test_merge_input_released_early_is_kept(manager: CacheManager) -> None:
    a = await make(manager, lambda r: (r / "a").write_text("a"))
    b = await make(manager, lambda r: (r / "b").write_text("b"))
    merged = await manager.merge([a, b])
    await release(a, b)
    assert await manager.prune() == []  # a and b hold the merge's layers
    assert await names(merged) == {"a": "a", "b": "b"}
    await merged.release()
    assert len(await manager.prune()) == 3
    assert [i async for i in manager.snapshotter.walk()] == []


async def test_merge_of_one_and_of_the_same_ref(manager: CacheManager) -> None:
    a = await make(manager, lambda r: (r / "a").write_text("a"))
    b = await make(manager, lambda r: (r / "b").write_text("b"))
    one = await manager.merge([a])
    assert one.id == a.id
    twice = await manager.merge([a, b, a])
    assert await names(twice) == {"a": "a", "b": "b"}
    layers = await twice.layers()
    assert [layer.id for layer in layers] == [b.id, a.id]
    await release(*layers, a, b, one, twice)


@pytest.mark.parametrize("kind", ["overlayfs"])
async def test_deep_merged_chains_are_flattened(tmp_path: Path, kind: str) -> None:
    """Chains stacked by merges past the lower-layer limit mount through flattened
    copies that are specific to the merged stack (not the layer's own chain)."""
    sn = OverlaySnapshotter(tmp_path / "state" / "snapshots", max_lowers=6, flatten_stride=2)
    manager = await CacheManager.open(tmp_path / "state", snapshotter=sn)
    try:
        refs: dict[str, list[ImmutableRef]] = {"x": [], "y": []}
        for name in ("x", "y"):
            parent = None
            for i in range(5):
                ref = await make(
                    manager,
                    lambda r, n=name, i=i: (r / f"{n}{i}").write_text(f"{n}{i}"),  # type: ignore[misc]
                    parent,
                )
                refs[name].append(ref)
                parent = ref
        merged = await manager.merge([refs["x"][-1], refs["y"][-1]])
        expected = {f"{n}{i}": f"{n}{i}" for n in "xy" for i in range(5)}
        assert await names(merged) == expected
        assert list((tmp_path / "state" / "snapshots").glob("*/flat-*"))
        # y's own chain still mounts as itself (its flattened copies are separate)
        assert await names(refs["y"][-1]) == {f"y{i}": f"y{i}" for i in range(5)}
        child = await make(manager, lambda r: (r / "x0").unlink(), merged)
        del expected["x0"]
        assert await names(child) == expected
        await release(merged, child, *refs["x"], *refs["y"])
    finally:
        await manager.close()
        sn.close()


async def test_same_content_same_checksum_on_both_snapshotters(tmp_path: Path) -> None:
    digests = []
    kinds: tuple[SnapshotterKind, ...] = ("overlayfs", "native")
    for kind in kinds:
        manager = await CacheManager.open(tmp_path / kind, snapshotter=kind)
        try:
            lower = await make(manager, lower_tree)
            upper = await make(manager, change_tree, lower)
            merged = await manager.merge([lower, upper])
            digests.append(
                [
                    await manager.checksum(upper, "/"),
                    await manager.checksum(merged, "/data"),
                    await manager.checksum(upper, "/link", follow_links=True),
                ]
            )
            await release(lower, upper, merged)
        finally:
            await manager.close()
    assert digests[0] == digests[1]


def test_describe_sees_special_files(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "tmp")
    os.mkfifo(tmp_path / "fifo")
    assert describe(tmp_path)["fifo"][4] is None
