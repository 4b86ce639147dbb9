"""du and prune semantics."""

from __future__ import annotations

import time

import pytest

from dockyard.cache import CacheManager, ImmutableRef, RecordType, UsageFilter
from dockyard.core import UsageError

from .helpers import committed


async def layer(
    manager: CacheManager,
    name: str,
    parent: ImmutableRef | None = None,
    *,
    size: int = 10,
    record_type: RecordType = RecordType.REGULAR,
) -> ImmutableRef:
    return await committed(
        manager,
        lambda r: (r / name).write_bytes(b"x" * size),
        parent,
        record_type=record_type,
        description=name,
    )


def set_last_used(manager: CacheManager, rid: str, when: float) -> None:
    manager._db._statement(
        "UPDATE cache_records SET last_used = ? WHERE id = ?", (when, rid)
    ).wait()


async def test_du_reports_records(manager: CacheManager) -> None:
    base = await layer(manager, "base", size=100_000)
    child = await layer(manager, "child", base)
    await base.release()
    extra = await manager.get(child.id)
    records = {r.description: r for r in await manager.du()}
    assert set(records) == {"base", "child"}
    b, c = records["base"], records["child"]
    assert b.size >= 100_000
    sizes = [r.size for r in await manager.du()]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    assert not b.in_use
    assert b.shared
    assert c.in_use
    assert not c.shared
    assert c.parents == (b.id,)
    assert c.record_type is RecordType.REGULAR
    assert not c.mutable
    assert c.usage_count == 2  # made, then handed out once more
    assert c.last_used is not None
    assert c.last_used >= c.created
    only = await manager.du(UsageFilter(ids=(c.id[:8],)))
    assert [r.id for r in only] == [c.id]
    await child.release()
    await extra.release()


async def test_prune_removes_unused_leaves_then_their_parents(manager: CacheManager) -> None:
    base = await layer(manager, "base")
    mid = await layer(manager, "mid", base)
    top = await layer(manager, "top", mid)
    other = await layer(manager, "other", base)
    for ref in (base, mid, top):
        await ref.release()
    removed = await manager.prune()
    assert [r.description for r in removed] == ["top", "mid"]  # base is under "other"
    assert {r.description for r in await manager.du()} == {"base", "other"}
    await other.release()
    assert [r.description for r in await manager.prune()] == ["other", "base"]
    assert await manager.du() == []
    assert [i async for i in manager.snapshotter.walk()] == []


async def test_prune_least_recently_used_first_and_keep_storage(manager: CacheManager) -> None:
    refs = [await layer(manager, f"r{i}", size=50_000) for i in range(4)]
    now = time.time()
    for i, ref in enumerate(refs):
        set_last_used(manager, ref.id, now - 1000 + i * 10)  # r0 oldest
        await ref.release()
    set_last_used(manager, refs[1].id, now - 5000)  # r1 is the oldest now
    total = sum(r.size for r in await manager.du())
    one = max(r.size for r in await manager.du())
    removed = await manager.prune(keep_storage=total - one)
    assert [r.description for r in removed] == ["r1"]
    removed = await manager.prune(keep_storage=total - 3 * one)
    assert [r.description for r in removed] == ["r0", "r2"]
    assert await manager.prune(keep_storage=10**12) == []


async def test_prune_keep_duration(manager: CacheManager) -> None:
    old = await layer(manager, "old")
    new = await layer(manager, "new")
    set_last_used(manager, old.id, time.time() - 3 * 86400)
    await old.release()
    await new.release()
    removed = await manager.prune(keep_duration=86400)
    assert [r.description for r in removed] == ["old"]


async def test_prune_filters_and_all(manager: CacheManager) -> None:
    refs = [
        await layer(manager, "regular"),
        await layer(manager, "local", record_type=RecordType.SOURCE_LOCAL),
        await layer(manager, "frontend", record_type=RecordType.FRONTEND),
        await layer(manager, "internal", record_type=RecordType.INTERNAL),
    ]
    for ref in refs:
        await ref.release()
    removed = await manager.prune(filters=UsageFilter(types=frozenset({RecordType.SOURCE_LOCAL})))
    assert [r.description for r in removed] == ["local"]
    removed = await manager.prune()
    assert [r.description for r in removed] == ["regular"]  # frontend, internal kept
    removed = await manager.prune(all=True)
    assert sorted(r.description for r in removed) == ["frontend", "internal"]


async def test_prune_keeps_records_in_use(manager: CacheManager) -> None:
    held = await layer(manager, "held")
    mutable = await manager.new_mutable()
    assert await manager.prune(all=True) == []
    await held.release()
    await mutable.release()
    assert [r.description for r in await manager.prune(all=True)] == ["held"]


def test_usage_filter_parse() -> None:
    f = UsageFilter.parse(["type=regular", "type=exec.cachemount", "id=abc", "inuse=false"])
    assert f.types == frozenset({RecordType.REGULAR, RecordType.EXEC_CACHEMOUNT})
    assert f.ids == ("abc",)
    assert f.in_use is False
    assert f.mutable is None
    assert UsageFilter.parse(["description=go build", "mutable=true"]) == UsageFilter(
        description="go build", mutable=True
    )
    for bad in ("type=nope", "nokey", "color=red", "mutable=maybe"):
        with pytest.raises(UsageError):
            UsageFilter.parse([bad])
