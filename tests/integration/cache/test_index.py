"""File indexes (``index_tree`` / ``commit_indexed`` / ``file_index``): checksums of plain
paths answered from the index equal a walk of the mounted tree, layers re-read only what
a sync wrote, and the index survives a restart (deltas and full indexes alike)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, FileIndex, ImmutableRef, RecordType
from dockyard.cache._checksum import Selector, compute_checksum
from dockyard.cache._index import MAX_DELTAS
from dockyard.core import DockyardError
from dockyard.session import LocalSyncSource, SyncBase, SyncResult, receive, stat_key, walk

from .helpers import describe


def _tree(root: Path) -> None:
    (root / "d1" / "sub").mkdir(parents=True)
    (root / "d2").mkdir()
    (root / "d1" / "a.txt").write_text("a\n")
    (root / "d1" / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (root / "d2" / "c").write_text("c")
    (root / "top").write_text("top")
    (root / "exe").write_text("#!/bin/sh\n")
    os.chmod(root / "exe", 0o755)
    os.setxattr(root / "top", "user.note", b"kept")
    os.symlink("d1", root / "to-d1")
    os.symlink("/d1/sub", root / "abs-sub")
    os.symlink("../../../d2", root / "d1" / "up-d2")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("missing", root / "dangling")
    os.link(root / "top", root / "d2" / "top-again")


_PATHS = [
    "/",
    "/d1",
    "d1/",
    "/d1/a.txt",
    "/d1/sub/b.bin",
    "/top",
    "/d2/top-again",
    "/to-d1",
    "/to-d1/sub/b.bin",
    "/abs-sub",
    "/abs-sub/b.bin",
    "/d1/up-d2/c",
    "/d1/up-d2",
    "/d1/../d2/c",
    "/../../top",
    "/dangling",
    "/missing",
    "/top/below",
    "/loop-a",
    "/d1/*.txt",  # no wildcard flag: a name like any other
]


async def _walked(ref: ImmutableRef, sel: Selector) -> str:
    async with ref.mount() as root:
        try:
            result = await asyncio.to_thread(compute_checksum, str(root), sel)
        except DockyardError as exc:
            return type(exc).__name__
    return str(result.digest)


async def _indexed(manager: CacheManager, ref: ImmutableRef, sel: Selector) -> str:
    try:
        return str(
            await manager.checksum(
                ref, sel.path, follow_links=sel.follow_links, wildcard=sel.wildcard
            )
        )
    except DockyardError as exc:
        return type(exc).__name__


async def _indexed_ref(manager: CacheManager) -> tuple[ImmutableRef, FileIndex]:
    mutable = await manager.new_mutable(None, record_type=RecordType.SOURCE_LOCAL)
    root, layer = await manager.own_path(mutable)
    assert not layer
    _tree(root)
    meta = {e.path: stat_key(e) for e in walk(root)}
    index = await manager.index_tree(mutable, meta)
    return await manager.commit_indexed(mutable, index), index


async def test_index_answers_like_a_walk(manager: CacheManager) -> None:
    ref, index = await _indexed_ref(manager)
    assert await manager.file_index(ref) is index
    before = manager.statistics().files_hashed
    for path in _PATHS:
        for follow in (False, True):
            sel = Selector(path=path, follow_links=follow)
            assert await _indexed(manager, ref, sel) == await _walked(ref, sel), (path, follow)
    assert manager.statistics().files_hashed == before  # nothing was read for them
    assert index.digest == await manager.checksum(ref, "/")
    # patterns, wildcards and no-xattr selections are not the index's: they walk
    assert not index.answers(Selector(path="/d1", exclude_patterns=("*.txt",)))
    assert not index.answers(Selector(path="/d1/*.txt", wildcard=True))
    assert not index.answers(Selector(path="/", xattrs=False))
    assert index.answers(Selector(path="/d1/a.txt", wildcard=True))
    sel = Selector(path="/d*/*.txt", wildcard=True)
    got = await manager.checksum(ref, sel.path, wildcard=True)
    assert str(got) == await _walked(ref, sel)
    await ref.release()


async def _sync(
    manager: CacheManager, src: Path, previous: ImmutableRef | None, base: FileIndex | None
) -> tuple[ImmutableRef, SyncResult, FileIndex]:
    made = []

    async def open_layer() -> tuple[Path, bool]:
        mutable = await manager.new_mutable(previous, record_type=RecordType.SOURCE_LOCAL)
        made.append(mutable)
        return await manager.own_path(mutable)

    entries = base.meta if base is not None else {}
    result = await receive(LocalSyncSource(src), SyncBase(entries=entries, open=open_layer))
    assert made, "the test changes something every time"
    if base is None:
        meta = {e.path: stat_key(e) for e in result.tree}
        index = await manager.index_tree(made[0], meta)
    else:
        written = set(result.changed)
        changes = {
            e.path: stat_key(e)
            for e in result.tree
            if e.path in written or base.meta.get(e.path) != stat_key(e)
        }
        index = await manager.index_tree(
            made[0], changes, base=base, written=written, deleted=result.deleted
        )
    ref = await manager.commit_indexed(made[0], index)
    kept = await manager.file_index(ref)  # the next sync's base, as a local source gets it
    assert kept is not None
    assert kept.digest == index.digest
    return ref, result, kept


async def test_layers_reread_only_what_changed_and_survive_a_restart(
    tmp_path: Path, kind: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    for i in range(40):
        (src / "d2" / f"f{i:02d}").write_text(f"file {i}\n")
    manager = await CacheManager.open(tmp_path / "state", snapshotter=kind)  # type: ignore[arg-type]
    refs: list[ImmutableRef] = []
    indexes: list[FileIndex] = []
    try:
        ref, _, index = await _sync(manager, src, None, None)
        refs.append(ref)
        indexes.append(index)
        for step in range(MAX_DELTAS + 3):
            if step % 3 == 0:
                (src / "d2" / f"f{step:02d}").write_text(f"changed {step}\n")
            elif step % 3 == 1:
                shutil.rmtree(src / "d1" / "sub", ignore_errors=True)
                (src / f"new{step}").write_text("new")
            else:
                (src / "d1" / "sub").mkdir(exist_ok=True)
                (src / "d1" / "sub" / "b.bin").write_bytes(os.urandom(100))
                (src / f"new{step - 1}").unlink()
            before = manager.statistics().files_hashed
            ref, result, index = await _sync(manager, src, refs[-1], indexes[-1])
            hashed = manager.statistics().files_hashed - before
            regular = [p for p in result.changed if (src / p).is_file()]
            assert hashed == len(regular), (step, result.changed)
            async with ref.mount() as root:
                assert describe(root) == describe(src)
            sel = Selector(path="/")
            assert str(index.digest) == await _walked(ref, sel)
            refs.append(ref)
            indexes.append(index)
        # every MAX_DELTAS layers a full index is kept, the others as changes
        bases = [manager._db.index_blob(r.id) for r in refs]
        assert [row is not None and row[0] is None for row in bases].count(True) == 2
        digests = [str(i.digest) for i in indexes]
        ids = [r.id for r in refs]
    finally:
        for ref in refs:
            await ref.release()
        await manager.close()

    reopened = await CacheManager.open(tmp_path / "state", snapshotter=kind)  # type: ignore[arg-type]
    try:
        for rid, digest, before_index in zip(ids, digests, indexes, strict=True):
            ref = await reopened.get(rid)
            loaded = await reopened.file_index(ref)
            assert loaded is not None
            assert str(loaded.digest) == digest
            assert loaded.meta == before_index.meta
            assert loaded.nodes == before_index.nodes
            await ref.release()
    finally:
        await reopened.close()


async def test_unindexed_records_walk_as_before(manager: CacheManager) -> None:
    mutable = await manager.new_mutable(None)
    async with mutable.mount() as root:
        _tree(root)
    ref = await mutable.commit()
    assert await manager.file_index(ref) is None
    sel = Selector(path="/d1", follow_links=True)
    assert await _indexed(manager, ref, sel) == await _walked(ref, sel)
    await ref.release()


async def test_a_layer_index_needs_its_base(manager: CacheManager) -> None:
    ref, _ = await _indexed_ref(manager)
    child = await manager.new_mutable(ref)
    try:
        _, layer = await manager.own_path(child)
        if layer:
            with pytest.raises(DockyardError, match="parent's index"):
                await manager.index_tree(child, {})
    finally:
        await child.release()
        await ref.release()
