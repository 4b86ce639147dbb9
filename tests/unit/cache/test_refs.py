"""Refs lifecycle, refcounts, the solver's ResultStorage, labels and blobs."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef, LayerBlob, RecordType, _manager
from dockyard.core import Digest, DockyardError, InternalError, NotFoundError
from dockyard.solver import Result, ResultStorage

from .helpers import committed, contents, write


def in_use(manager: CacheManager, rid: str) -> bool:
    return manager._in_use(rid)


async def test_mutable_commit_and_immutable_handles(manager: CacheManager) -> None:
    mut = await manager.new_mutable(description="base layer")
    assert not mut.persistent
    await write(mut, lambda r: (r / "a").write_text("a"))
    assert await contents(mut) == {"a": "a"}
    rid = mut.id
    ref = await mut.commit()
    assert ref.id == rid
    assert mut.released
    assert ref.description == "base layer"
    assert ref.record_type is RecordType.REGULAR
    assert ref.size > 0
    assert ref.parent_ids == ()
    assert await contents(ref) == {"a": "a"}
    assert all(m.readonly for m in await ref.mounts())
    with pytest.raises(InternalError):
        await mut.mounts()
    with pytest.raises(InternalError):
        await mut.commit()

    second = ref.clone()
    await ref.release()
    await ref.release()  # a second release of one handle is harmless
    assert in_use(manager, rid)
    with pytest.raises(InternalError, match="after release"):
        await ref.mounts()
    await second.release()
    assert not in_use(manager, rid)
    # releasing never deletes: the record is still there
    again = await manager.get(rid)
    assert await contents(again) == {"a": "a"}
    await again.release()


async def test_chain_parents(manager: CacheManager) -> None:
    base = await committed(manager, lambda r: (r / "a").write_text("a"))
    child = await committed(manager, lambda r: (r / "b").write_text("b"), base)
    assert child.parent_ids == (base.id,)
    assert await contents(child) == {"a": "a", "b": "b"}
    await base.release()
    # the parent is kept by its child even without handles
    du = {r.id: r for r in await manager.du()}
    assert du[base.id].shared
    assert not du[base.id].in_use
    assert du[child.id].parents == (base.id,)
    await child.release()


async def test_released_mutable_is_removed(manager: CacheManager) -> None:
    mut = await manager.new_mutable()
    await write(mut, lambda r: (r / "x").write_text("x"))
    rid = mut.id
    await mut.release()
    await mut.release()
    assert [r.id for r in await manager.du()] == []
    assert await manager.load(rid) is None
    assert [i.key async for i in manager.snapshotter.walk()] == []


async def test_result_protocols(manager: CacheManager) -> None:
    storage: ResultStorage = manager  # checked by mypy
    assert isinstance(storage, ResultStorage)
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    result: Result = ref
    assert isinstance(result, Result)
    await ref.release()


async def test_save_and_load(manager: CacheManager) -> None:
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    ids = await manager.save([ref])
    assert list(ids) == [ref.id]
    loaded = await manager.load(ids[0])
    assert isinstance(loaded, ImmutableRef)
    assert loaded is not ref
    assert await contents(loaded) == {"a": "a"}
    await loaded.release()
    await ref.release()
    assert await manager.load("0" * 32) is None
    with pytest.raises(NotFoundError):
        await manager.get("0" * 32)


async def test_save_refuses_what_is_not_a_committed_ref(manager: CacheManager) -> None:
    mut = await manager.new_mutable()
    with pytest.raises(InternalError):
        await manager.save([mut])
    ref = await mut.commit()
    await ref.release()
    with pytest.raises(InternalError):
        await manager.save([ref])  # released handle


async def test_round_trip_across_managers(state_dir: Path) -> None:
    first = await CacheManager.open(state_dir, snapshotter="native")
    base = await committed(first, lambda r: (r / "a").write_text("a"))
    child = await committed(first, lambda r: (r / "b").write_text("b"), base)
    ids = await first.save([child, base])
    await child.release()
    await base.release()
    await first.close()

    second = await CacheManager.open(state_dir)  # "auto" keeps the native kind
    try:
        assert second.snapshotter.name == "native"
        loaded = await second.load(ids[0])
        assert loaded is not None
        assert loaded.parent_ids == (ids[1],)
        assert await contents(loaded) == {"a": "a", "b": "b"}
        await loaded.release()
        assert (await second.du())[0].usage_count >= 1
    finally:
        await second.close()


async def test_one_manager_per_state_dir(manager: CacheManager, state_dir: Path) -> None:
    with pytest.raises(DockyardError, match="in use by another"):
        await CacheManager.open(state_dir, snapshotter="native")


async def test_load_after_prune_is_none(manager: CacheManager) -> None:
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    (rid,) = await manager.save([ref])
    await ref.release()
    assert [r.id for r in await manager.prune()] == [rid]
    assert await manager.load(rid) is None


async def test_labels(manager: CacheManager) -> None:
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    ref.set_label("dockyard.local.digest", "sha256:abc")
    assert ref.labels == {"dockyard.local.digest": "sha256:abc"}
    assert manager.records_with_label("dockyard.local.digest", "sha256:abc") == [ref.id]
    assert manager.records_with_label("dockyard.local.digest", "sha256:other") == []
    ref.set_label("dockyard.local.digest", None)
    assert manager.records_with_label("dockyard.local.digest", "sha256:abc") == []
    await ref.release()


async def test_records_with_label_most_recently_used_first(manager: CacheManager) -> None:
    key, value = "dockyard.copy.of", "sha256:abc@base"
    first = await committed(manager, lambda r: (r / "a").write_text("a"))
    second = await committed(manager, lambda r: (r / "b").write_text("b"))
    other = await committed(manager, lambda r: (r / "c").write_text("c"))
    for ref in (first, second):
        ref.set_label(key, value)
    other.set_label(key, "sha256:abc")
    other.set_label("unrelated", value)
    # the later record was used last
    assert manager.records_with_label(key, value) == [second.id, first.id]
    again = await manager.get(first.id)  # using a record makes it the most recent
    manager._db.flush().wait()
    assert manager.records_with_label(key, value) == [first.id, second.id]
    assert manager.records_with_label(key, value, limit=1) == [first.id]
    looked_at = await manager.get(second.id, touch=False)  # looking is not using
    manager._db.flush().wait()
    assert manager.records_with_label(key, value) == [first.id, second.id]
    await looked_at.release()
    # a work area is never an answer, whatever its labels say
    work = await manager.new_mutable(first)
    manager._db.set_label(work.id, key, value).wait()
    assert manager.records_with_label(key, value) == [first.id, second.id]
    await work.release()
    for ref in (first, second, other, again):
        await ref.release()


async def test_blobs(manager: CacheManager) -> None:
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    assert ref.blob("gzip") is None
    blob = LayerBlob(
        variant="gzip",
        diff_id=Digest.from_bytes(b"tar"),
        digest=Digest.from_bytes(b"gz"),
        media_type="application/vnd.oci.image.layer.v1.tar+gzip",
        size=2,
    )
    ref.set_blob(blob)
    assert ref.blob("gzip") == blob
    assert ref.blob("zstd") is None
    assert manager.blob_digests() == {str(blob.digest)}
    await ref.release()
    await manager.prune()
    assert manager.blob_digests() == set()


async def test_layers_and_layer_tars(manager: CacheManager) -> None:
    def change(root: Path) -> None:
        (root / "a").unlink()
        (root / "b").write_text("b")

    base = await committed(manager, lambda r: (r / "a").write_text("a"))
    child = await committed(manager, change, base)
    layers = await child.layers()
    assert [layer.id for layer in layers] == [base.id, child.id]
    out = io.BytesIO()
    result = await layers[1].write_layer(out)
    assert result.size == len(out.getvalue())
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert sorted(tar.getnames()) == [".wh.a", "b"]
    for ref in (*layers, base, child):
        await ref.release()


async def test_mutable_refs_keep_their_parent(manager: CacheManager) -> None:
    base = await committed(manager, lambda r: (r / "a").write_text("a"))
    mut = await manager.new_mutable(base)
    await base.release()
    assert await manager.prune() == []  # base is what mut is built on
    assert await contents(mut) == {"a": "a"}
    await mut.release()
    assert len(await manager.prune()) == 1


async def test_save_flushes_once_for_every_record_committed_before(
    manager: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flush covers every record committed before it began (the parent too, which
    was never saved); saves that come while it runs share the next flush."""
    flushing = threading.Event()
    release = threading.Event()
    calls: list[Path] = []

    def slow_syncfs(path: Path) -> None:
        calls.append(path)
        flushing.set()
        assert release.wait(10)

    monkeypatch.setattr(_manager, "_syncfs", slow_syncfs)
    base = await committed(manager, lambda r: (r / "a").write_text("a"))
    ref = await committed(manager, lambda r: (r / "b").write_text("b"), base)

    def synced(rid: str) -> bool:
        return manager._row(rid).synced

    assert not synced(ref.id)
    saving = asyncio.ensure_future(manager.save([ref]))
    assert await asyncio.to_thread(flushing.wait, 5)
    late = [await committed(manager, lambda r: (r / "c").write_text("c")) for _ in range(2)]
    others = [asyncio.ensure_future(manager.save([r])) for r in late]
    await asyncio.sleep(0.05)
    assert not saving.done()
    assert not any(o.done() for o in others)
    release.set()
    assert await asyncio.wait_for(saving, 5) == [ref.id]
    assert synced(ref.id)
    assert synced(base.id)
    await asyncio.wait_for(asyncio.gather(*others), 5)
    assert all(synced(r.id) for r in late)
    assert len(calls) == 2  # the late saves shared one flush
    await manager.save([ref])  # already synced: no flush
    await manager.flush()
    assert len(calls) == 2
    for r in (ref, base, *late):
        await r.release()


async def test_a_failed_flush_fails_the_save(
    manager: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_manager, "_syncfs", broken)
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    with pytest.raises(DockyardError, match="flushing the build cache to disk failed"):
        await manager.save([ref])
    assert not manager._row(ref.id).synced
    monkeypatch.undo()
    assert await manager.save([ref]) == [ref.id]  # the next save tries again
    assert manager._row(ref.id).synced
    await ref.release()


async def test_mutable_mount_writes(manager: CacheManager) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounts need root")
    mut = await manager.new_mutable()
    async with mut.mount() as root:
        (root / "f").write_text("through a mount")
    async with mut.mount(readonly=True) as root:
        assert (root / "f").read_text() == "through a mount"
        with pytest.raises(OSError):
            (root / "g").write_text("no")
    ref = await mut.commit()
    async with ref.mount() as root:
        assert isinstance(root, Path)
        assert (root / "f").read_text() == "through a mount"
        with pytest.raises(OSError):
            (root / "g").write_text("no")
    await ref.release()
