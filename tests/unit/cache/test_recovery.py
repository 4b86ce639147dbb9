"""Crash recovery when a manager opens a state directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, _manager
from dockyard.core import ConfigError
from dockyard.snapshot import Kind, new_snapshotter

from .helpers import committed, contents, write


async def test_uncommitted_work_is_removed_and_results_kept(state_dir: Path) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    kept = await committed(manager, lambda r: (r / "kept").write_text("k"))
    work = await manager.new_mutable(kept)
    await write(work, lambda r: (r / "half").write_text("written"))
    async with manager.cache_mount("persist") as cm:
        await write(cm, lambda r: (r / "c").write_text("c"))
    await manager.close()  # a crash: handles never released, work never committed

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        ids = {r.id for r in await manager.du()}
        assert ids == {kept.id, cm.id}
        assert {i.key async for i in manager.snapshotter.walk()} == ids
        ref = await manager.get(kept.id)
        assert await contents(ref) == {"kept": "k"}
        await ref.release()
        async with manager.cache_mount("persist") as again:
            assert await contents(again) == {"c": "c"}
    finally:
        await manager.close()


async def test_snapshots_without_records_are_removed(state_dir: Path) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    await manager.close()
    # a crash between making snapshots and recording them
    sn = new_snapshotter(state_dir, "native")
    await sn.prepare("stray-1", ref.id)
    await sn.prepare("stray-2")
    await sn.commit("stray-2", "stray-2")
    await sn.prepare("stray-3", "stray-2")
    await sn.view("stray-view", ref.id)
    sn.close()

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert [i.key async for i in manager.snapshotter.walk()] == [ref.id]
        assert [r.id for r in await manager.du()] == [ref.id]
    finally:
        await manager.close()


async def test_records_without_snapshots_are_removed(state_dir: Path) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    base = await committed(manager, lambda r: (r / "a").write_text("a"))
    child = await committed(manager, lambda r: (r / "b").write_text("b"), base)
    other = await committed(manager, lambda r: (r / "c").write_text("c"))
    await manager.close()
    # a crash between removing snapshots and their records (or a damaged directory)
    sn = new_snapshotter(state_dir, "native")
    await sn.remove(child.id)
    await sn.remove(base.id)
    sn.close()

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert [r.id for r in await manager.du()] == [other.id]
        assert await manager.load(child.id) is None
    finally:
        await manager.close()


async def test_records_whose_snapshot_kind_disagrees_are_removed(state_dir: Path) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    child = await committed(manager, lambda r: (r / "b").write_text("b"), ref)
    await manager.close()
    # a record that says committed over a snapshot that is still active
    sn = new_snapshotter(state_dir, "native")
    await sn.remove(child.id)
    await sn.prepare(child.id, ref.id)
    assert (await sn.stat(child.id)).kind is Kind.ACTIVE
    sn.close()

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert [r.id for r in await manager.du()] == [ref.id]
        assert [i.key async for i in manager.snapshotter.walk()] == [ref.id]
    finally:
        await manager.close()


async def test_unknown_schema_version_is_refused(state_dir: Path) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    await manager.close()
    db = sqlite3.connect(state_dir / "metadata.db")
    db.execute("UPDATE cache_meta SET value = '99' WHERE name = 'version'")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        await CacheManager.open(state_dir, snapshotter="native")
    # the refusal released the directory lock
    db = sqlite3.connect(state_dir / "metadata.db")
    db.execute("UPDATE cache_meta SET value = '1' WHERE name = 'version'")
    db.commit()
    db.close()
    manager = await CacheManager.open(state_dir, snapshotter="native")
    await manager.close()


async def test_a_clean_close_skips_the_recovery_pass(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[bool] = []
    recover = CacheManager._recover

    async def spy(self: CacheManager, *, full: bool = True, lost: set[str] | None = None) -> None:
        passes.append(full)
        await recover(self, full=full, lost=lost)

    monkeypatch.setattr(CacheManager, "_recover", spy)
    manager = await CacheManager.open(state_dir, snapshotter="native")
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    await ref.release()
    await manager.close()

    manager = await CacheManager.open(state_dir, snapshotter="native")
    # while it is open a crash would leave no mark of a clean close
    assert manager._db.meta("clean-close") is None
    work = await manager.new_mutable(None)
    await manager.close()  # abandoned work: the next open looks at everything

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert await manager.load(work.id) is None
        assert [r.id for r in await manager.du()] == [ref.id]
    finally:
        await manager.close()
    assert passes == [True, False, True]


async def test_snapshot_directories_are_scanned_for_orphans_only_after_a_crash(
    state_dir: Path,
) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    ref = await committed(manager, lambda r: (r / "a").write_text("a"))
    await ref.release()
    await manager.close()
    snapshots = state_dir / "snapshots"
    (snapshots / "rm-left-over").mkdir()  # what a crash mid-removal would leave

    # after a clean close the open does not pass over every snapshot directory
    manager = await CacheManager.open(state_dir, snapshotter="native")
    assert (snapshots / "rm-left-over").is_dir()
    work = await manager.new_mutable(None)
    await manager.close()  # abandoned work: not a clean close
    assert work.id

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert not (snapshots / "rm-left-over").exists()
        assert [r.id for r in await manager.du()] == [ref.id]
    finally:
        await manager.close()


async def test_a_removal_that_left_files_behind_is_not_a_clean_close(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    manager = await CacheManager.open(state_dir, snapshotter="native")
    work = await manager.new_mutable(None)
    monkeypatch.setattr(shutil, "rmtree", lambda path, ignore_errors=False: None)
    await work.release()  # its directory stays (as if a file in it could not be removed)
    monkeypatch.undo()
    assert manager.snapshotter.left_over
    await manager.close()
    left = [p.name for p in (state_dir / "snapshots").iterdir() if p.name.startswith("rm-")]
    assert left

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert not [p for p in (state_dir / "snapshots").iterdir() if p.name in left]
    finally:
        await manager.close()


async def _unsynced_state(state_dir: Path) -> tuple[str, str, str, str]:
    """A state directory as a power cut would find it: ``synced`` made durable, then
    ``lost`` (built on it), ``above`` (built on ``lost``) and ``alone`` committed and
    kept but not flushed yet when the process ended."""
    manager = await CacheManager.open(state_dir, snapshotter="native")
    synced = await committed(manager, lambda r: (r / "a").write_text("a"))
    await manager.save([synced])
    await manager.flush()
    manager._sync_on_save = False  # the process ends before the next flush
    lost = await committed(manager, lambda r: (r / "b").write_text("b"), synced)
    above = await committed(manager, lambda r: (r / "c").write_text("c"), lost)
    alone = await committed(manager, lambda r: (r / "d").write_text("d"))
    await manager.save([above, alone])
    await manager.close()
    return synced.id, lost.id, above.id, alone.id


async def test_records_unsynced_when_the_machine_restarted_are_dropped(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart of the machine (another kernel boot id) may have lost what was not
    flushed: those records go, with what is built on them; flushed ones stay."""
    synced, lost, above, alone = await _unsynced_state(state_dir)
    monkeypatch.setattr(_manager, "_boot_id", lambda: "another-boot")
    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert [r.id for r in await manager.du()] == [synced]
        assert [i.key async for i in manager.snapshotter.walk()] == [synced]
        for rid in (lost, above, alone):
            assert await manager.load(rid) is None
    finally:
        await manager.close()


async def test_records_unsynced_when_only_the_process_ended_are_kept_and_synced(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same boot: the kernel still has (or wrote) everything the process wrote, so
    nothing is dropped; the next manager flushes the records and marks them."""
    ids = await _unsynced_state(state_dir)
    calls: list[Path] = []
    real = _manager._syncfs

    def counting(path: Path) -> None:
        calls.append(path)
        real(path)

    monkeypatch.setattr(_manager, "_syncfs", counting)
    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert {r.id for r in await manager.du()} == set(ids)
        await manager.flush()
        assert len(calls) == 1
        assert all(manager._row(rid).synced for rid in ids)
    finally:
        await manager.close()
    monkeypatch.setattr(_manager, "_boot_id", lambda: "another-boot")
    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert {r.id for r in await manager.du()} == set(ids)  # all flushed before
    finally:
        await manager.close()


async def test_a_database_from_before_background_syncs_keeps_its_records(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records of a database without a boot id were synced before they were kept (the
    old rule): after a restart they stay."""
    ids = await _unsynced_state(state_dir)
    db = sqlite3.connect(state_dir / "metadata.db")
    with db:
        db.execute("DELETE FROM cache_meta WHERE name = 'boot-id'")
    db.close()
    monkeypatch.setattr(_manager, "_boot_id", lambda: "another-boot")
    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        assert {r.id for r in await manager.du()} == set(ids)
        assert all(manager._row(rid).synced for rid in ids)
    finally:
        await manager.close()
