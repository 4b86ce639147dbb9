"""Persistent mutable refs: cache mounts in their three sharing modes, named refs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, MutableRef, RecordType, Sharing
from dockyard.core import DockyardError, UsageError

from .helpers import committed, contents, write


async def settle() -> None:
    """Let every runnable task run until it blocks (no time involved)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_cache_mount_persists_across_uses_and_restarts(state_dir: Path) -> None:
    manager = await CacheManager.open(state_dir, snapshotter="native")
    async with manager.cache_mount("gocache") as ref:
        assert ref.persistent
        assert ref.name == "cachemount:gocache"
        await write(ref, lambda r: (r / "built.o").write_text("object"))
        first = ref.id
    assert ref.released
    async with manager.cache_mount("gocache", sharing=Sharing.LOCKED) as ref:
        assert ref.id == first
        assert await contents(ref) == {"built.o": "object"}
    async with manager.cache_mount("other") as ref:
        assert ref.id != first
        assert await contents(ref) == {}
    await manager.close()

    manager = await CacheManager.open(state_dir, snapshotter="native")
    try:
        async with manager.cache_mount("gocache") as ref:
            assert ref.id == first
            assert await contents(ref) == {"built.o": "object"}
        du = {r.id: r for r in await manager.du()}
        assert du[first].record_type is RecordType.EXEC_CACHEMOUNT
        assert du[first].mutable
        assert not du[first].in_use
    finally:
        await manager.close()


async def test_cache_mount_is_never_a_result(manager: CacheManager) -> None:
    async with manager.cache_mount("c") as ref:
        with pytest.raises(DockyardError, match="persistent"):
            await ref.commit()
        with pytest.raises(Exception, match="not a committed ref"):
            await manager.save([ref])
        await ref.release()  # a no-op for persistent refs: the block gives it back
    async with manager.cache_mount("c") as again:
        assert again.id == ref.id
    with pytest.raises(UsageError):
        async with manager.cache_mount(""):
            pass


async def test_shared_users_use_one_tree_at_once(manager: CacheManager) -> None:
    inside: list[str] = []
    both_in = asyncio.Event()

    async def user(name: str) -> str:
        async with manager.cache_mount("npm", sharing=Sharing.SHARED) as ref:
            inside.append(name)
            if len(inside) == 2:
                both_in.set()
            await both_in.wait()  # deadlocks unless both are inside together
            return ref.id

    a, b = await asyncio.gather(user("a"), user("b"))
    assert a == b
    assert sorted(inside) == ["a", "b"]


async def test_private_users_get_their_own_tree(manager: CacheManager) -> None:
    both_in = asyncio.Event()
    entered = 0

    async def user(content: str) -> str:
        nonlocal entered
        async with manager.cache_mount("apt", sharing=Sharing.PRIVATE) as ref:
            entered += 1
            if entered == 2:
                both_in.set()
            await both_in.wait()
            await write(ref, lambda r: (r / "who").write_text(content))
            return ref.id

    a, b = await asyncio.gather(user("a"), user("b"))
    assert a != b
    # later users reuse the trees that are free (the most recently used first)
    async with manager.cache_mount("apt", sharing=Sharing.PRIVATE) as ref:
        assert ref.id in (a, b)
        async with manager.cache_mount("apt", sharing=Sharing.PRIVATE) as other:
            assert {ref.id, other.id} == {a, b}
            assert {(await contents(x))["who"] for x in (ref, other)} == {"a", "b"}


async def test_locked_users_take_turns(manager: CacheManager) -> None:
    log: list[str] = []
    a_inside = asyncio.Event()
    a_may_leave = asyncio.Event()

    async def first() -> str:
        async with manager.cache_mount("m2", sharing=Sharing.LOCKED) as ref:
            log.append("a in")
            await write(ref, lambda r: (r / "a").write_text("from a"))
            a_inside.set()
            await a_may_leave.wait()
            log.append("a out")
            return ref.id

    async def second() -> tuple[str, dict[str, str]]:
        async with manager.cache_mount("m2", sharing=Sharing.LOCKED) as ref:
            log.append("b in")
            seen = await contents(ref)
            log.append("b out")
            return ref.id, seen

    task_a = asyncio.create_task(first())
    await a_inside.wait()
    task_b = asyncio.create_task(second())
    await settle()
    assert log == ["a in"]  # b is waiting for a
    assert not task_b.done()
    a_may_leave.set()
    a_id = await task_a
    b_id, seen = await task_b
    assert log == ["a in", "a out", "b in", "b out"]
    assert a_id == b_id
    assert seen == {"a": "from a"}


async def test_shared_users_do_not_wait(manager: CacheManager) -> None:
    """The counterpart of the locked test: the same choreography lets b in at once."""
    log: list[str] = []
    a_inside = asyncio.Event()
    a_may_leave = asyncio.Event()

    async def first() -> None:
        async with manager.cache_mount("m3", sharing=Sharing.SHARED):
            log.append("a in")
            a_inside.set()
            await a_may_leave.wait()
            log.append("a out")

    async def second() -> None:
        async with manager.cache_mount("m3", sharing=Sharing.SHARED):
            log.append("b in")

    task_a = asyncio.create_task(first())
    await a_inside.wait()
    task_b = asyncio.create_task(second())
    await settle()
    assert log == ["a in", "b in"]
    a_may_leave.set()
    await asyncio.gather(task_a, task_b)


async def test_cache_mount_from_a_parent(manager: CacheManager) -> None:
    base = await committed(manager, lambda r: (r / "seed").write_text("seed"))
    async with manager.cache_mount("c", parent=base) as ref:
        assert await contents(ref) == {"seed": "seed"}
        with_parent = ref.id
    async with manager.cache_mount("c") as ref:
        assert ref.id != with_parent
        assert await contents(ref) == {}
    await base.release()
    # the cache mount keeps its parent until the cache mount itself is pruned
    pruned = await manager.prune()
    assert {r.id for r in pruned} >= {with_parent}
    pruned_again = await manager.prune()
    assert base.id in {r.id for r in pruned + pruned_again}


async def test_named_mutable_is_exclusive_and_persistent(manager: CacheManager) -> None:
    log: list[str] = []
    a_inside = asyncio.Event()
    a_may_leave = asyncio.Event()

    async def first() -> MutableRef:
        async with manager.named_mutable("ctx:/src/app") as ref:
            log.append("a")
            await write(ref, lambda r: (r / "file").write_text("synced"))
            a_inside.set()
            await a_may_leave.wait()
            return ref

    async def second() -> dict[str, str]:
        async with manager.named_mutable("ctx:/src/app") as ref:
            log.append("b")
            return await contents(ref)

    task_a = asyncio.create_task(first())
    await a_inside.wait()
    task_b = asyncio.create_task(second())
    await settle()
    assert log == ["a"]
    a_may_leave.set()
    ref_a = await task_a
    assert await task_b == {"file": "synced"}
    assert ref_a.record_type is RecordType.SOURCE_LOCAL


async def test_in_use_cache_mounts_are_not_pruned(manager: CacheManager) -> None:
    async with manager.cache_mount("busy") as ref:
        await write(ref, lambda r: (r / "f").write_text("x"))
        assert await manager.prune(all=True) == []
        (record,) = await manager.du()
        assert record.in_use
        assert record.size > 0
    (removed,) = await manager.prune()
    assert removed.id == ref.id
    async with manager.cache_mount("busy") as fresh:
        assert fresh.id != ref.id
        assert await contents(fresh) == {}


async def test_snapshot_of_a_named_ref(manager: CacheManager) -> None:
    """The local-source pattern: sync in place, snapshot, reuse by content label."""
    async with manager.named_mutable("ctx") as ctx:
        await write(ctx, lambda r: (r / "app.py").write_text("v1"))
        digest = await manager.checksum(ctx, "/")
        snap = await manager.snapshot(ctx, record_type=RecordType.SOURCE_LOCAL)
        snap.set_label("dockyard.local.content", digest)
        await write(ctx, lambda r: (r / "app.py").write_text("v2"))
        assert await contents(snap) == {"app.py": "v1"}
        assert await contents(ctx) == {"app.py": "v2"}
        assert snap.record_type is RecordType.SOURCE_LOCAL
        assert await manager.checksum(snap, "/") == digest
        assert manager.records_with_label("dockyard.local.content", digest) == [snap.id]
        assert (
            manager.records_with_label("dockyard.local.content", await manager.checksum(ctx, "/"))
            == []
        )
    await snap.release()


async def test_many_locked_users_never_overlap(manager: CacheManager) -> None:
    inside = 0
    most = 0
    gates = [asyncio.Event() for _ in range(4)]

    async def locked(i: int) -> None:
        nonlocal inside, most
        async with manager.cache_mount("l", sharing=Sharing.LOCKED):
            inside += 1
            most = max(most, inside)
            await gates[i].wait()
            inside -= 1

    async def shared_passerby() -> None:
        async with manager.cache_mount("l", sharing=Sharing.SHARED):
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(locked(i)) for i in range(4)]
    await settle()
    for gate in gates:
        gate.set()
        await shared_passerby()  # comes and goes while locked users wait
        await settle()
    await asyncio.gather(*tasks)
    assert most == 1
    assert manager._named == {}
    assert manager._live == {}
