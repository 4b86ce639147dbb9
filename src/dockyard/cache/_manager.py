"""The cache manager: records over snapshots, handles, merge/diff, persistent mutable
refs, checksums, du and prune, crash recovery. See the package docstring."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from dockyard.core import Digest, DockyardError, InternalError, NotFoundError, UsageError
from dockyard.core.singleflight import SingleFlight
from dockyard.core.statedir import bump_generation
from dockyard.snapshot import (
    BaseSnapshotter,
    Kind,
    SnapshotterKind,
    mirror_tree,
    new_snapshotter,
)
from dockyard.snapshot.mount import (
    mounted,
    mountpoints_under,
    readable,
    readonly_mounts,
    unmount,
)
from dockyard.snapshot.types import Mount

from ._checksum import (
    RACY_NS,
    ChecksumResult,
    Selector,
    StatCache,
    compute_checksum,
    content_hash,
)
from ._db import CacheDB, FileHash, Parent, RecordRow
from ._index import (
    MAX_DELTAS,
    EntryMeta,
    FileIndex,
    IndexBuild,
    decode_index,
    encode_index,
    index_tree,
    update_index,
)
from ._refs import ImmutableRef, MutableRef, finish
from .types import (
    CacheStatistics,
    RecordType,
    Sharing,
    UsageFilter,
    UsageRecord,
)

__all__ = ["CacheManager"]

_KEPT_WITHOUT_ALL = frozenset({RecordType.INTERNAL, RecordType.FRONTEND})
_CHECKSUM_MEMO = 50_000
_SEEDED_MAX = 8
_INDEXES_MAX = 4
_CLEAN = "clean-close"  # cache_meta: the snapshotter's fingerprint when last closed cleanly
_BOOT = "boot-id"  # cache_meta: the boot (kernel boot_id) its unsynced records were made in
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
SNAPSHOT_OF_LABEL = "dockyard.snapshot-of"
SNAPSHOT_CHAIN = 32
"""Layers a chain of snapshots of one mutable ref may reach before the next is a full copy."""


@dataclass(slots=True)
class _Live:
    """In-memory state of a record some handle holds."""

    refs: int = 0  # immutable handles
    users: int = 0  # mutable users (several only for a shared cache mount)


@dataclass(slots=True)
class _Named:
    """Who uses the persistent refs of one name right now."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # serializes locked users
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)  # picking or making a record
    shared_id: str | None = None
    in_use: set[str] = field(default_factory=set)
    users: int = 0  # inside or waiting: the state is dropped when none is left


class CacheManager:
    """Refs over the snapshots of one state directory; see the package docstring.

    Open with :meth:`open` (crash recovery happens there) and close with :meth:`close`
    (or ``async with``). One manager per state directory: a second one, in this process
    or another, is refused while the first is open. All methods are coroutines or cheap
    synchronous calls meant for the event loop thread. Metadata writes go to a writer
    thread (:mod:`dockyard.cache._db`) and are awaited, so the event loop never waits for
    SQLite; only the synchronous setters (``ImmutableRef.set_label``, ``set_blob``,
    ``set_created``) wait for their write where they are called.
    """

    def __init__(
        self,
        state_dir: Path,
        snapshotter: BaseSnapshotter,
        db: CacheDB,
        lock_fd: int,
        *,
        own_snapshotter: bool,
        sync_on_save: bool,
    ) -> None:
        self.state_dir = state_dir
        self.snapshotter = snapshotter
        self._db = db
        self._lock_fd = lock_fd
        self._own_snapshotter = own_snapshotter
        self._sync_on_save = sync_on_save
        self.mount_dir = state_dir / "mnt"
        self._live: dict[str, _Live] = {}
        self._named: dict[str, _Named] = {}
        self._lock = asyncio.Lock()  # record removal (prune) against itself
        # stat caches (kept in SQLite): of mutable records, and of committed snapshots
        # (a few in memory)
        self._stat_caches: dict[str, StatCache] = {}
        self._seeded: dict[str, StatCache] = {}
        self._checksums: dict[tuple[str, str], str] = {}
        self._flights: SingleFlight[tuple[str, str], str] = SingleFlight()
        self._indexes: dict[str, FileIndex] = {}  # a few loaded file indexes, latest last
        self._unindexed: set[str] = set()  # committed records known to have none
        self._files_hashed = 0
        self._bytes_hashed = 0
        self._checksum_hits = 0
        self._checksum_misses = 0
        self._racy_ns = RACY_NS  # tests lower it to make the stat cache deterministic
        self._closed = False
        # committed records not yet known to be on disk, and the background sync
        self._unsynced: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_error: OSError | DockyardError | sqlite3.Error | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        state_dir: Path | str,
        *,
        snapshotter: BaseSnapshotter | SnapshotterKind = "auto",
        sync_on_save: bool = True,
    ) -> CacheManager:
        """Open the cache of ``state_dir`` (made if missing) and recover from a crash.

        ``snapshotter``: a kind for :func:`dockyard.snapshot.new_snapshotter` on
        ``<state_dir>/snapshots`` (then the manager owns and closes it), or an open
        snapshotter. Every snapshot in it belongs to the manager: snapshots without a
        record are removed here. ``sync_on_save``: :meth:`save` flushes the file system
        (``syncfs``) before it returns ids (see :meth:`save`).
        """
        state = Path(state_dir)
        (state / "locks").mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(
            state / "locks" / "cache.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise DockyardError(
                f"the cache in {state} is in use by another Dockyard process"
            ) from None
        own = not isinstance(snapshotter, BaseSnapshotter)
        sn: BaseSnapshotter | None = None
        db: CacheDB | None = None
        try:
            sn = (
                new_snapshotter(state, snapshotter, remove_orphans=False)
                if not isinstance(snapshotter, BaseSnapshotter)
                else snapshotter
            )
            db = CacheDB(state / "metadata.db")
            manager = cls(state, sn, db, lock_fd, own_snapshotter=own, sync_on_save=sync_on_save)
            # a manager that closed cleanly left nothing to recover (unless the snapshots
            # changed behind its back): the whole check costs a pass over every record
            clean = own and db.meta(_CLEAN) == sn.fingerprint()
            if own and not clean:
                sn.remove_orphans()  # (a snapshotter made by the caller did it when made)
            await db.set_meta(_CLEAN, None)
            boot = _boot_id()
            made_in = db.meta(_BOOT)
            lost = await manager._lost_in_reboot(made_in, boot)
            await manager._recover(full=not clean or bool(lost), lost=lost)
            if made_in != boot:
                await db.set_meta(_BOOT, boot)
            if not clean:  # a clean close left every record synced
                manager._unsynced.update(db.unsynced())
        except BaseException:
            if db is not None:
                db.close()
            if own and sn is not None:
                sn.close()
            os.close(lock_fd)
            raise
        return manager

    async def close(self) -> None:
        """Close the database (and the snapshotter if the manager made it). Handles
        still live are abandoned: their records stay, as after a restart. Unless work
        areas were abandoned, the next open skips the crash recovery."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.flush()
        except (DockyardError, OSError, sqlite3.Error):
            pass  # left unsynced: dropped if the machine restarts before a sync
        # a clean close promises every record synced: the next open does not look
        synced = not self._unsynced
        with contextlib.suppress(DockyardError, OSError, sqlite3.Error):
            if (
                synced
                and self._own_snapshotter
                and not self._db.has_work_areas()
                and not self.snapshotter.left_over
            ):
                await self._db.set_meta(_CLEAN, self.snapshotter.fingerprint())
        # queued writes are written before the lock on the state directory goes; the two
        # databases close (and checkpoint their WAL: fsyncs) side by side
        closing = [asyncio.to_thread(self._db.close)]
        if self._own_snapshotter:
            closing.append(asyncio.to_thread(self.snapshotter.close))
        await finish(lambda: asyncio.gather(*closing))
        os.close(self._lock_fd)

    async def __aenter__(self) -> CacheManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _lost_in_reboot(self, made_in: str | None, boot: str) -> set[str]:
        """Committed records that may have lost data: those not known to be on disk when
        the machine restarted (``boot`` is not the boot ``made_in`` they were made in: a
        power cut loses what the kernel had not written; a crash of the process alone
        loses nothing written). A database from before boot ids were kept synced what it
        kept before keeping it, so its records are marked synced instead."""
        if made_in is None:
            await self._db.set_all_synced()
            return set()
        if boot and made_in == boot:
            return set()
        return set(self._db.unsynced())

    async def _recover(self, *, full: bool = True, lost: set[str] | None = None) -> None:
        """Undo what a crash left: mounts, uncommitted work areas, records without their
        snapshot or that may have lost data in a restart of the machine (``lost``; and
        records built on them), snapshots without a record. Without ``full`` (after a
        clean close) only the mount directory is checked."""
        self.mount_dir.mkdir(exist_ok=True)
        for mp in reversed(mountpoints_under(self.mount_dir)):
            await asyncio.to_thread(unmount, mp, detach=True)
        for entry in os.scandir(self.mount_dir):
            await asyncio.to_thread(shutil.rmtree, entry.path, True)
        if not full:
            return
        snapshots = {info.key: info async for info in self.snapshotter.walk()}
        rows = self._db.all()
        bad: set[str] = set(lost or ())
        for row in rows:
            info = snapshots.get(row.id)
            want = Kind.ACTIVE if row.mutable else Kind.COMMITTED
            if (row.mutable and not row.persistent) or info is None or info.kind is not want:
                bad.add(row.id)
        grew = True
        while grew:  # whatever is built on a bad record goes too
            grew = False
            for row in rows:
                if row.id not in bad and any(p.id in bad for p in row.parents):
                    bad.add(row.id)
                    grew = True
        if bad:
            await self._db.delete_many(bad)
            bump_generation(self.state_dir)
        kept = {row.id for row in rows} - bad
        orphans = [key for key in snapshots if key not in kept]
        while orphans:
            left: list[str] = []
            for key in orphans:
                try:
                    await self.snapshotter.remove(key)
                except NotFoundError:
                    continue
                except DockyardError:
                    left.append(key)  # another orphan is built on it: next round
            if len(left) == len(orphans):
                break  # kept snapshots are built on them (cannot happen: records say so)
            orphans = left

    # -- handles ---------------------------------------------------------------------------
    def _acquire(self, row: RecordRow, *, touch: bool = True) -> ImmutableRef:
        self._live.setdefault(row.id, _Live()).refs += 1
        if touch:
            self._db.touch(row.id)  # not waited for: see CacheDB.touch
        return ImmutableRef(self, row)

    def _release_immutable(self, rid: str) -> None:
        live = self._live.get(rid)
        if live is None or live.refs <= 0:
            raise InternalError(f"cache record {rid} released more often than acquired")
        live.refs -= 1
        if live.refs == 0 and live.users == 0:
            del self._live[rid]

    def _in_use(self, rid: str) -> bool:
        return rid in self._live

    def _new_id(self) -> str:
        return uuid.uuid4().hex

    def _row(self, rid: str) -> RecordRow:
        row = self._db.get(rid)
        if row is None:
            raise NotFoundError(f"cache record {rid} does not exist")
        return row

    async def get(self, record_id: str, *, touch: bool = True) -> ImmutableRef:
        """A new handle on committed record ``record_id``; :class:`NotFoundError` if it
        does not exist (pruned) or is not committed. ``touch=False``: the record is only
        looked at (its last use, which orders :meth:`records_with_label`, stays)."""
        ref = await self.load(record_id, touch=touch)
        if ref is None:
            raise NotFoundError(f"cache record {record_id} does not exist")
        return ref

    def records_with_label(self, key: str, value: str, *, limit: int | None = None) -> list[str]:
        """Ids of committed records labelled ``key=value``, most recently used first; at
        most ``limit`` (``None``: all of them)."""
        return self._db.committed_with_label(key, value, limit)

    def _set_label(self, ref: ImmutableRef, key: str, value: str | None) -> None:
        self._db.set_label(ref.id, key, value).wait()
        ref._row = self._row(ref.id)

    # -- the solver's ResultStorage --------------------------------------------------------
    async def save(self, results: Sequence[object]) -> Sequence[str]:
        """Make committed refs loadable by id across builds and restarts (they already
        are: this checks them and makes them durable, see ``sync_on_save``).

        One flush of the file system (``syncfs``) covers every record committed before
        it began, and marks them all synced (the layers below an image's top one too);
        saves that come while a flush runs share the next one. A committed record the
        machine restarted on before it was synced (the kernel's boot id tells) is
        dropped at the next open, with everything built on it: a kept record never
        points at data a power cut lost, whether or not it was saved."""
        refs: list[ImmutableRef] = []
        for result in results:
            if not isinstance(result, ImmutableRef) or result._manager is not self:
                raise InternalError(f"cannot save {result!r}: not a committed ref of this cache")
            result._check()
            refs.append(result)
        await self._wait_synced([r.id for r in refs])
        return [r.id for r in refs]

    def _raise_sync_error(self) -> None:
        error, self._sync_error = self._sync_error, None
        if error is not None:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise DockyardError(f"flushing the build cache to disk failed: {reason}") from error

    def _start_sync(self) -> asyncio.Task[None]:
        task = self._sync_task
        if task is None or task.done():
            task = self._sync_task = asyncio.get_running_loop().create_task(
                self._sync_loop(), name="dockyard-cache-sync"
            )
        return task

    async def _sync_loop(self) -> None:
        """Flush until every record committed so far is synced (records committed during
        a flush wait for the next one). Runs in its own task: a cancelled save stops
        waiting, not the flush other saves share."""
        while self._unsynced and self._sync_error is None:
            batch = set(self._unsynced)
            try:
                await asyncio.to_thread(_syncfs, self.snapshotter.root)
                await self._db.set_synced(sorted(batch))
            except (OSError, DockyardError, sqlite3.Error) as exc:
                self._sync_error = exc
                return
            self._unsynced -= batch

    async def flush(self) -> None:
        """Wait until every record committed so far is durable (see :meth:`save`)."""
        await self._wait_synced(None)

    async def _wait_synced(self, ids: Collection[str] | None) -> None:
        """Wait until records ``ids`` (``None``: all) are synced; raises a failed flush
        (once: the next call tries again)."""
        if not self._sync_on_save:
            return

        def waiting() -> bool:
            if ids is None:
                return bool(self._unsynced)
            return any(rid in self._unsynced for rid in ids)

        while waiting() and self._sync_error is None:
            await asyncio.shield(self._start_sync())
        self._raise_sync_error()

    async def load(self, result_id: str, *, touch: bool = True) -> ImmutableRef | None:
        """A new handle on committed record ``result_id``, or ``None`` if it is gone
        (``touch``: as in :meth:`get`)."""
        row = self._db.get(result_id)
        if row is None or row.mutable:
            return None
        return self._acquire(row, touch=touch)

    # -- making refs -----------------------------------------------------------------------
    async def new_mutable(
        self,
        parent: ImmutableRef | None = None,
        *,
        record_type: RecordType = RecordType.REGULAR,
        description: str = "",
    ) -> MutableRef:
        """A new writable tree on top of ``parent`` (``None``: empty)."""
        if parent is not None:
            self._own(parent)
        rid = self._new_id()
        self._live[rid] = _Live(users=1)
        try:
            await self.snapshotter.prepare(rid, parent.id if parent is not None else None)
            parents = [Parent(id=parent.id, role="parent")] if parent is not None else []
            await self._db.insert(
                rid, mutable=True, record_type=record_type, description=description, parents=parents
            )
        except BaseException:
            del self._live[rid]
            await _quietly(self.snapshotter.remove(rid))
            raise
        return MutableRef(self, self._row(rid))

    async def _commit(self, ref: MutableRef) -> ImmutableRef:
        rid = ref.id
        live = self._live[rid]
        try:
            await self.snapshotter.commit(rid, rid)
            usage = await self.snapshotter.usage(rid)
            await self._db.commit(rid, usage.size)
        except BaseException:
            await self._drop_mutable(rid)
            raise
        self._unsynced.add(rid)
        live.users -= 1
        self._stat_caches.pop(rid, None)
        return self._acquire(self._row(rid), touch=False)

    async def _release_mutable(self, ref: MutableRef) -> None:
        if ref.persistent:
            return  # the context manager that handed it out gives it back
        await self._drop_mutable(ref.id)

    async def _drop_mutable(self, rid: str) -> None:
        live = self._live.get(rid)
        if live is not None:
            live.users -= 1
            if live.users <= 0 and live.refs == 0:
                del self._live[rid]
        self._stat_caches.pop(rid, None)
        row = self._db.get(rid)
        if row is not None and row.mutable:
            await self._db.delete_many({rid})
        with contextlib.suppress(NotFoundError):
            await finish(lambda: self.snapshotter.remove(rid))

    async def merge(self, refs: Sequence[ImmutableRef], *, description: str = "") -> ImmutableRef:
        """The union of ``refs``' trees, later ones winning, deletions recorded in their
        layers included (BuildKit's MergeOp); overlayfs stacks layers without copying."""
        if not refs:
            raise UsageError("a merge needs at least one input")
        for ref in refs:
            self._own(ref)
        if len(refs) == 1:
            return refs[0].clone()
        return await self._composite(
            lambda rid: self.snapshotter.merge(rid, [r.id for r in refs]),
            [Parent(id=r.id, role="merge") for r in refs],
            description,
        )

    async def diff(
        self,
        lower: ImmutableRef | None,
        upper: ImmutableRef | None,
        *,
        description: str = "",
    ) -> ImmutableRef | None:
        """The changes from ``lower`` to ``upper`` (``None``: the empty tree), BuildKit's
        DiffOp: mounted alone it shows what ``upper`` added or changed; merged on top of
        something its deletions apply too. ``None`` only when both are ``None``."""
        for ref in (lower, upper):
            if ref is not None:
                self._own(ref)
        if lower is None:
            return upper.clone() if upper is not None else None
        parents = [Parent(id=lower.id, role="lower")]
        if upper is not None:
            parents.append(Parent(id=upper.id, role="upper"))
        up = upper.id if upper is not None else None
        return await self._composite(
            lambda rid: self.snapshotter.make_diff(rid, lower.id, up), parents, description
        )

    async def snapshot(
        self,
        ref: MutableRef,
        *,
        record_type: RecordType = RecordType.REGULAR,
        description: str = "",
    ) -> ImmutableRef:
        """A committed copy of ``ref``'s tree as it is now; ``ref`` stays usable.

        Meant for a persistent ref synced in place (a local source's context). The copy
        is made on top of the previous snapshot of ``ref`` (while that chain is shorter
        than :data:`SNAPSHOT_CHAIN` layers), writing only what differs by rsync's quick
        check (type, mode, owner, size, mtime, xattrs) or by content hash where both are
        known, so with overlayfs a rebuild after one change copies one file. Hard links
        are not kept. The new record's stat cache starts with what is known of the files
        it got (``checksum(ref, "/")`` just before makes that everything), so checksums
        of it read only files whose content was never hashed. Labelled
        ``dockyard.snapshot-of=<ref id>``.
        """
        self._own(ref)
        source = readonly_mounts(await ref.mounts())
        base = await self._snapshot_base(ref)
        base_id = base.id if base is not None else None
        base_cache = self._file_cache(base.id, committed=True) if base is not None else None
        src_cache = self._file_cache(ref.id, committed=False)
        seeds: dict[str, FileHash] = {}

        def known(cache: StatCache | None, rel: str, st: os.stat_result) -> FileHash | None:
            entry = cache.entries.get(rel) if cache is not None else None
            return entry if entry is not None and _valid(entry, st) else None

        def seed(rel: str, entry: FileHash, st: os.stat_result) -> None:
            seeds[rel] = FileHash(
                st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_mode,
                entry.sha256, entry.node,
            )  # fmt: skip

        base_root: list[str] = []

        src_root: list[str] = []

        def decide(rel: str, sst: os.stat_result, dstt: os.stat_result) -> bool | None:
            """Settle a file by the checksum nodes both stat caches know (content, mode,
            owner, xattrs) and the mtime; on overlayfs an untouched file of the copy is
            the base's own file, whose stat the base's cache knows."""
            mine = known(src_cache, rel, sst)
            theirs = known(base_cache, rel, dstt)
            if mine is None or theirs is None or not mine.node or not theirs.node:
                return None
            if mine.node != theirs.node or sst.st_mtime_ns != dstt.st_mtime_ns:
                return False
            seed(rel, mine, dstt)
            return True

        def verify(rel: str, sst: os.stat_result, dstt: os.stat_result) -> bool:
            """Whether a file passing the quick check has the same content: by the
            hashes the stat caches know, else hashed now (and remembered)."""
            mine = known(src_cache, rel, sst)
            if mine is None:
                mine = remember(src_cache, rel, os.path.join(src_root[0], rel), sst)
            base_path = os.path.join(base_root[0], rel)
            try:
                bst = os.lstat(base_path)  # the base's own file: this one is or copies it
            except OSError:
                return False
            theirs = known(base_cache, rel, bst)
            if theirs is None:
                theirs = remember(base_cache, rel, base_path, bst)
            if mine is None or theirs is None or mine.sha256 != theirs.sha256:
                return False  # same size and mtime, other content: copy it
            seed(rel, mine, dstt)
            return True

        def remember(
            cache: StatCache | None, rel: str, path: str, st: os.stat_result
        ) -> FileHash | None:
            if cache is None:
                return None
            entry = FileHash(
                st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_mode,
                content_hash(path),
            )  # fmt: skip
            if st.st_ctime_ns + cache.racy_ns < time.time_ns():
                cache.entries[rel] = entry
                cache.changed[rel] = entry
            return entry

        def copied(rel: str, sst: os.stat_result, dst: str) -> None:
            mine = known(src_cache, rel, sst)
            if mine is not None:
                seed(rel, mine, os.lstat(dst))

        def run(target: list[Mount], base_mounts: list[Mount] | None) -> None:
            with contextlib.ExitStack() as stack:
                stack.enter_context(src_cache.lock)
                if base_cache is not None:
                    stack.enter_context(base_cache.lock)
                if base_mounts is not None:
                    base_root.append(str(stack.enter_context(readable(base_mounts))))
                src_root.append(str(stack.enter_context(readable(source))))
                _mirror_between(src_root[0], target, decide, verify, copied)

        try:
            copy = await self.new_mutable(base, record_type=record_type, description=description)
            try:
                base_mounts = await base.mounts() if base is not None else None
                target = await copy.mounts()
                await finish(lambda: asyncio.to_thread(run, target, base_mounts))
            except BaseException:
                await copy.release()
                raise
        finally:
            if base is not None:
                await base.release()
        result = await copy.commit()
        changed, removed = src_cache.take_changes()
        if changed or removed:
            await self._db.update_file_hashes(ref.id, changed, removed)
        entries: dict[str, FileHash] = {}
        if base_cache is not None and base_id is not None:
            # the new snapshot takes over its base's stat cache: untouched files (on
            # overlayfs, the base's own) keep their entries; stale ones fail their stat
            # check; the base rarely needs it again (it would hash what it is asked)
            base_changed, base_removed = base_cache.take_changes()
            if base_changed or base_removed:
                await self._db.update_file_hashes(base_id, base_changed, base_removed)
            await self._db.move_file_hashes(base_id, result.id)
            self._seeded.pop(base_id, None)
            entries = dict(base_cache.entries)
        fresh = {rel: e for rel, e in seeds.items() if entries.get(rel) != e}
        entries.update(fresh)
        await self._db.update_file_hashes(result.id, fresh, ())
        await self._db.set_label(result.id, SNAPSHOT_OF_LABEL, ref.id)
        result._row = self._row(result.id)
        self._remember_cache(result.id, StatCache(entries=entries, racy_ns=0))
        return result

    async def _snapshot_base(self, ref: MutableRef) -> ImmutableRef | None:
        """The latest snapshot of ``ref``, unless its chain is long enough already."""
        rows = [r for r in self._db.with_label(SNAPSHOT_OF_LABEL, ref.id) if not r.mutable]
        if not rows:
            return None
        latest = max(rows, key=lambda r: r.created)
        if await self.snapshotter.layer_count(latest.id) >= SNAPSHOT_CHAIN:
            return None
        return await self.load(latest.id)

    def _file_cache(self, rid: str, *, committed: bool) -> StatCache:
        """The stat cache of a record, loaded from SQLite on first use. Committed
        records' files never change, so nothing is racy there."""
        store = self._seeded if committed else self._stat_caches
        cache = store.get(rid)
        if cache is None:
            racy = 0 if committed else self._racy_ns
            cache = StatCache(entries=self._db.file_hashes(rid), racy_ns=racy)
            if committed:
                self._remember_cache(rid, cache)
            else:
                store[rid] = cache
        return cache

    def _remember_cache(self, rid: str, cache: StatCache) -> None:
        """Keep a few committed records' stat caches in memory, most recent last."""
        self._seeded.pop(rid, None)
        self._seeded[rid] = cache
        while len(self._seeded) > _SEEDED_MAX:
            del self._seeded[next(iter(self._seeded))]

    async def _composite(
        self,
        make: Callable[[str], Awaitable[None]],
        parents: list[Parent],
        description: str,
    ) -> ImmutableRef:
        rid = self._new_id()
        self._live[rid] = _Live()
        try:
            await make(rid)
            usage = await self.snapshotter.usage(rid)
            await self._db.insert(
                rid,
                mutable=False,
                record_type=RecordType.REGULAR,
                description=description,
                parents=parents,
                size=usage.size,
            )
        except BaseException:
            del self._live[rid]
            await _quietly(self.snapshotter.remove(rid))
            raise
        del self._live[rid]
        return self._acquire(self._row(rid), touch=False)

    async def _layers(self, ref: ImmutableRef) -> list[ImmutableRef]:
        keys = await self.snapshotter.layers(ref.id)
        return [self._acquire(self._row(key), touch=False) for key in keys]

    def _own(self, ref: ImmutableRef | MutableRef) -> None:
        if ref._manager is not self:
            raise InternalError(f"{ref!r} belongs to another cache manager")
        ref._check()

    # -- persistent mutable refs -----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def cache_mount(
        self,
        cache_id: str,
        *,
        sharing: Sharing = Sharing.SHARED,
        parent: ImmutableRef | None = None,
        description: str = "",
    ) -> AsyncIterator[MutableRef]:
        """The persistent tree of cache mount ``cache_id`` (``RUN --mount=type=cache``),
        made empty or from ``parent`` (``from=``) the first time, kept across builds and
        restarts, never part of a result. ``sharing`` as in :class:`Sharing`. The same
        id on a different ``parent`` is a different cache."""
        if not cache_id:
            raise UsageError("a cache mount needs an id")
        name = "cachemount:" + cache_id + (f"@{parent.id}" if parent is not None else "")
        async with self._persistent(
            name,
            sharing,
            record_type=RecordType.EXEC_CACHEMOUNT,
            description=description or f"cache mount {cache_id}",
            parent=parent,
        ) as ref:
            yield ref

    @contextlib.asynccontextmanager
    async def named_mutable(
        self,
        name: str,
        *,
        record_type: RecordType = RecordType.SOURCE_LOCAL,
        description: str = "",
    ) -> AsyncIterator[MutableRef]:
        """A persistent writable tree by ``name`` (a local source's synced context),
        made empty the first time, kept across builds and restarts until pruned. One
        user at a time: a second one waits. Checksums of it use the stat cache."""
        if not name:
            raise UsageError("a named ref needs a name")
        async with self._persistent(
            "named:" + name,
            Sharing.LOCKED,
            record_type=record_type,
            description=description or name,
            parent=None,
        ) as ref:
            yield ref

    @contextlib.asynccontextmanager
    async def _persistent(
        self,
        name: str,
        sharing: Sharing,
        *,
        record_type: RecordType,
        description: str,
        parent: ImmutableRef | None,
    ) -> AsyncIterator[MutableRef]:
        if parent is not None:
            self._own(parent)
        state = self._named.setdefault(name, _Named())
        state.users += 1
        try:
            if sharing is Sharing.LOCKED:
                async with (
                    state.lock,
                    self._use_persistent(
                        state, name, False, record_type, description, parent
                    ) as ref,
                ):
                    yield ref
            else:
                shared = sharing is Sharing.SHARED
                async with self._use_persistent(
                    state, name, shared, record_type, description, parent
                ) as ref:
                    yield ref
        finally:
            state.users -= 1
            if state.users == 0 and self._named.get(name) is state:
                del self._named[name]

    @contextlib.asynccontextmanager
    async def _use_persistent(
        self,
        state: _Named,
        name: str,
        shared: bool,
        record_type: RecordType,
        description: str,
        parent: ImmutableRef | None,
    ) -> AsyncIterator[MutableRef]:
        async with state.mutex:
            rid = await self._pick_persistent(name, state, shared, record_type, description, parent)
            if shared:
                state.shared_id = rid
            state.in_use.add(rid)
        ref = MutableRef(self, self._row(rid))
        try:
            yield ref
        finally:
            ref._released = True
            live = self._live[rid]
            live.users -= 1
            if live.users == 0:
                state.in_use.discard(rid)
                if state.shared_id == rid:
                    state.shared_id = None
                if live.refs == 0:
                    del self._live[rid]

    async def _pick_persistent(
        self,
        name: str,
        state: _Named,
        shared: bool,
        record_type: RecordType,
        description: str,
        parent: ImmutableRef | None,
    ) -> str:
        """A record of ``name`` this user may use now (counted as used), made if none."""
        if shared and state.shared_id is not None:
            self._live[state.shared_id].users += 1
            return state.shared_id
        for row in self._db.named(name):
            if row.id not in state.in_use:
                self._live.setdefault(row.id, _Live()).users += 1
                self._db.touch(row.id)  # not waited for
                return row.id
        rid = self._new_id()
        self._live[rid] = _Live(users=1)
        try:
            await self.snapshotter.prepare(rid, parent.id if parent is not None else None)
            await self._db.insert(
                rid,
                mutable=True,
                persistent=True,
                name=name,
                record_type=record_type,
                description=description,
                parents=[Parent(id=parent.id, role="parent")] if parent is not None else [],
            )
        except BaseException:
            del self._live[rid]
            await _quietly(self.snapshotter.remove(rid))
            raise
        return rid

    # -- checksums -------------------------------------------------------------------------
    async def checksum(
        self,
        ref: ImmutableRef | MutableRef,
        path: str,
        *,
        include_patterns: Sequence[str] = (),
        exclude_patterns: Sequence[str] = (),
        follow_links: bool = False,
        wildcard: bool = False,
        xattrs: bool = True,
    ) -> Digest:
        """The content digest of ``path`` in ``ref`` (``sha256:...``); see
        :mod:`dockyard.cache._checksum` for exactly what it covers.

        For committed refs the result is cached per record and selector (they never
        change). For mutable refs the stat cache skips reading files whose size, mtime,
        inode, ctime and mode did not change since they were hashed. Raises
        :class:`NotFoundError` if ``path`` does not exist (without ``wildcard``).
        """
        self._own(ref)
        sel = Selector(
            path=path,
            include_patterns=tuple(include_patterns),
            exclude_patterns=tuple(exclude_patterns),
            follow_links=follow_links,
            wildcard=wildcard,
            xattrs=xattrs,
        )
        if isinstance(ref, MutableRef):
            return await self._checksum_mutable(ref, sel)
        key = (ref.id, sel.key())
        known = self._checksums.get(key)
        if known is None:
            stored = self._db.checksum(*key)
            if stored is not None:
                known = str(stored)
                self._remember(key, known)
        if known is not None:
            self._checksum_hits += 1
            return Digest(known)
        return Digest(await self._flights.do(key, lambda: self._checksum_committed(ref, sel, key)))

    async def _checksum_committed(
        self, ref: ImmutableRef, sel: Selector, key: tuple[str, str]
    ) -> str:
        self._checksum_misses += 1
        index = await self._index_of(ref.id)
        if index is not None and index.answers(sel):
            digest = index.checksum(sel)
            await self._db.set_checksum(key[0], key[1], digest)
            self._remember(key, digest)
            return str(digest)
        mounts = await self.snapshotter.view_mounts(ref.id)
        seeded = (
            self._file_cache(ref.id, committed=True)
            if SNAPSHOT_OF_LABEL in ref._row.labels
            else None
        )

        def run() -> ChecksumResult:
            with readable(mounts) as root:
                return compute_checksum(str(root), sel, seeded)

        result = await asyncio.to_thread(run)
        self._files_hashed += result.files_hashed
        self._bytes_hashed += result.bytes_hashed
        if seeded is not None:
            changed, removed = seeded.take_changes()
            if changed or removed:
                await self._db.update_file_hashes(ref.id, changed, removed)
        await self._db.set_checksum(key[0], key[1], result.digest)
        self._remember(key, result.digest)
        return str(result.digest)

    def _remember(self, key: tuple[str, str], digest: str) -> None:
        if len(self._checksums) >= _CHECKSUM_MEMO:
            self._checksums.clear()
        self._checksums[key] = digest

    async def _checksum_mutable(self, ref: MutableRef, sel: Selector) -> Digest:
        self._checksum_misses += 1
        cache = self._file_cache(ref.id, committed=False)
        mounts = readonly_mounts(await ref.mounts())

        def run() -> ChecksumResult:
            with readable(mounts) as root:
                return compute_checksum(str(root), sel, cache)

        result = await asyncio.to_thread(run)
        self._files_hashed += result.files_hashed
        self._bytes_hashed += result.bytes_hashed
        changed, removed = cache.take_changes()
        if changed or removed:
            await self._db.update_file_hashes(ref.id, changed, removed)
        return result.digest

    # -- file indexes ----------------------------------------------------------------------
    async def own_path(self, ref: MutableRef) -> tuple[Path, bool]:
        """Where ``ref``'s changes are written without a mount, and whether that is a
        *layer*: an overlayfs upper directory over its parent's tree (``True``), or the
        whole tree (``False``: no parent, or the native snapshotter's full copy)."""
        self._own(ref)
        layer = self.snapshotter.layered and bool(ref._row.parents)
        return await self.snapshotter.own_path(ref.id), layer

    async def flatten(self, ref: ImmutableRef, *, description: str = "") -> ImmutableRef:
        """A new committed record without a parent showing ``ref``'s tree, its files
        hard-linked from ``ref``'s layers (nothing copied; see
        ``BaseSnapshotter.flatten``), with ``ref``'s file index (stored whole): a base
        for new layers when ``ref``'s chain got long. ``du`` counts the shared files in
        both records."""
        self._own(ref)
        index = await self._index_of(ref.id)
        rid = self._new_id()
        self._live[rid] = _Live()
        try:
            await self.snapshotter.flatten(rid, ref.id)
            usage = await self.snapshotter.usage(rid)
            await self._db.insert(
                rid,
                mutable=False,
                record_type=ref.record_type,
                description=description or ref.description,
                size=usage.size,
            )
            if index is not None:
                flat = FileIndex(index.meta, index.nodes, index.heads)
                data = await asyncio.to_thread(encode_index, flat, delta=False)
                await self._db.set_index_blob(rid, None, data)
                self._remember_index(rid, flat)
        except BaseException:
            del self._live[rid]
            with contextlib.suppress(sqlite3.Error):
                await self._db.delete_many({rid})
            await _quietly(self.snapshotter.remove(rid))
            raise
        del self._live[rid]
        return self._acquire(self._row(rid), touch=False)

    async def layer_path(self, ref: ImmutableRef) -> Path | None:
        """The directory holding what committed ``ref`` alone owns (its layer with
        overlayfs, its whole tree with the native snapshotter), read only; ``None`` for a
        merge or diff."""
        self._own(ref)
        return await self.snapshotter.layer_path(ref.id)

    async def file_index(self, ref: ImmutableRef) -> FileIndex | None:
        """The file index kept for committed ``ref`` (:meth:`commit_indexed`), if any:
        every entry's metadata as the sync that wrote it sent it, and checksum nodes."""
        self._own(ref)
        return await self._index_of(ref.id)

    async def index_tree(
        self,
        ref: MutableRef,
        meta: dict[str, EntryMeta],
        *,
        base: FileIndex | None = None,
        written: Collection[str] = (),
        deleted: Sequence[str] = (),
        known: Mapping[str, tuple[int, bytes]] | None = None,
    ) -> FileIndex:
        """The file index of ``ref``'s tree after a sync wrote into :meth:`own_path`.

        Without ``base`` the whole tree is read (its own path must be the whole tree)
        and ``meta`` is every entry's metadata. With ``base`` — the index of ``ref``'s
        parent — ``meta`` has the metadata that differs from ``base``'s, and only the
        ``written`` entries are read; ``deleted`` ones are dropped, and the directories
        above all of them recomputed. ``known``: ``(size, content sha256)`` of files the
        sync saw whole (``SyncResult.digests``), not read again.
        """
        root, layer = await self.own_path(ref)
        if base is None and layer:
            raise UsageError("a file index of a layer needs its parent's index")

        def run() -> IndexBuild:
            if base is None:
                return index_tree(str(root), meta, known)
            return update_index(base, str(root), meta, written, deleted, known)

        build = await asyncio.to_thread(run)
        self._files_hashed += build.files_hashed
        self._bytes_hashed += build.bytes_hashed
        return build.index

    async def commit_indexed(self, ref: MutableRef, index: FileIndex) -> ImmutableRef:
        """Commit ``ref`` (see :meth:`MutableRef.commit`) and keep ``index`` for it (made
        by :meth:`index_tree`): checksums of plain paths in the result are then answered
        from it without reading the tree, and the next sync compares against it. Kept as
        the changes against the parent's index for up to :data:`MAX_DELTAS` layers."""
        self._own(ref)
        parent = ref._row.parents[0].id if ref._row.parents else None
        delta = 0 < index.depth <= MAX_DELTAS and parent is not None
        if not delta and index.depth:
            index = FileIndex(index.meta, index.nodes, index.heads)
        result = await ref.commit()
        try:
            data = await asyncio.to_thread(encode_index, index, delta=delta)
            await self._db.set_index_blob(result.id, parent if delta else None, data)
        except BaseException:
            await result.release()
            raise
        self._unindexed.discard(result.id)
        self._remember_index(result.id, index)
        return result

    async def _index_of(self, rid: str) -> FileIndex | None:
        index = self._indexes.get(rid)
        if index is not None:
            self._remember_index(rid, index)
            return index
        if rid in self._unindexed:
            return None
        chain: list[bytes] = []
        base: FileIndex | None = None
        cur: str | None = rid
        while cur is not None:
            known = self._indexes.get(cur)
            if known is not None:
                base = known
                break
            row = self._db.index_blob(cur)
            if row is None:
                if cur == rid:
                    self._unindexed.add(rid)
                return None  # a delta whose base is gone: as good as none
            cur, data = row
            chain.append(data)

        def decode() -> FileIndex:
            index = base
            for data in reversed(chain):
                index = decode_index(data, index)
            assert index is not None
            return index

        try:
            index = await asyncio.to_thread(decode)
        except DockyardError:
            return None  # unreadable: the record is used as if it had none
        self._remember_index(rid, index)
        return index

    def _remember_index(self, rid: str, index: FileIndex) -> None:
        self._indexes.pop(rid, None)
        self._indexes[rid] = index
        while len(self._indexes) > _INDEXES_MAX:
            del self._indexes[next(iter(self._indexes))]

    # -- du and prune ----------------------------------------------------------------------
    async def du(self, filters: UsageFilter | None = None) -> list[UsageRecord]:
        """Usage of every record matching ``filters``, largest first."""
        records = await self._usage()
        if filters is not None:
            records = [r for r in records if filters.matches(r)]
        records.sort(key=lambda r: (-r.size, r.id))
        return records

    async def _usage(self, mutable_sizes: dict[str, int] | None = None) -> list[UsageRecord]:
        """Every record's usage; the sizes of mutable ones are measured (a tree walk) once
        per ``mutable_sizes`` memo."""
        await self._db.flush()  # last-used times not waited for are in
        rows = self._db.all()
        children = self._db.children()
        memo = mutable_sizes if mutable_sizes is not None else {}
        out: list[UsageRecord] = []
        for row in rows:
            size = row.size
            if row.mutable:
                if row.id not in memo:
                    with contextlib.suppress(NotFoundError):
                        memo[row.id] = (await self.snapshotter.usage(row.id)).size
                size = memo.get(row.id, 0)
            out.append(
                UsageRecord(
                    id=row.id,
                    size=max(size, 0),
                    record_type=row.record_type,
                    mutable=row.mutable,
                    in_use=self._in_use(row.id),
                    shared=children.get(row.id, 0) > 0,
                    created=row.created,
                    last_used=row.last_used,
                    usage_count=row.usage_count,
                    description=row.description,
                    parents=tuple(p.id for p in row.parents),
                )
            )
        return out

    async def prune(
        self,
        *,
        all: bool = False,
        keep_duration: float | None = None,
        keep_storage: int | None = None,
        filters: UsageFilter | None = None,
    ) -> list[UsageRecord]:
        """Remove unused records, least recently used first; return what was removed.

        A record is removed only if no handle holds it and no other record is built on
        it (removing a leaf may make its parent removable: prune repeats until nothing
        more qualifies). Without ``all``, ``internal`` and ``frontend`` records are kept.
        ``keep_duration`` (seconds): keep records used more recently than that.
        ``keep_storage`` (bytes): stop once all records together use no more than that.
        ``filters``: only records matching them.
        """
        removed: list[UsageRecord] = []
        async with self._lock:
            cutoff = time.time() - keep_duration if keep_duration is not None else None
            sizes: dict[str, int] = {}
            while True:
                records = await self._usage(sizes)
                total = sum(r.size for r in records)
                if keep_storage is not None and total <= keep_storage:
                    break
                candidates = [
                    r
                    for r in records
                    if not r.in_use
                    and not r.shared
                    and (all or r.record_type not in _KEPT_WITHOUT_ALL)
                    and (cutoff is None or (r.last_used or r.created) < cutoff)
                    and (filters is None or filters.matches(r))
                ]
                if not candidates:
                    break
                candidates.sort(key=lambda r: (r.last_used or r.created, r.created))
                progress = False
                for record in candidates:
                    if keep_storage is not None and total <= keep_storage:
                        break
                    if self._in_use(record.id) or self._db.has_children(record.id):
                        continue
                    await self._db.delete_many({record.id})
                    self._stat_caches.pop(record.id, None)
                    self._seeded.pop(record.id, None)
                    self._indexes.pop(record.id, None)
                    await self._remove_snapshot(record.id)
                    total -= record.size
                    removed.append(record)
                    progress = True
                if not progress:
                    break
        if removed:  # builds remembered before this rely on what went: see core.statedir
            await asyncio.to_thread(bump_generation, self.state_dir)
        return removed

    async def _remove_snapshot(self, key: str) -> None:
        await _quietly(finish(lambda: self.snapshotter.remove(key)))

    def blob_digests(self) -> set[str]:
        """Digests of every layer blob recorded: roots for the content store's GC."""
        return {str(d) for d in self._db.blob_digests()}

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            records=self._db.count(),
            in_use=len(self._live),
            files_hashed=self._files_hashed,
            bytes_hashed=self._bytes_hashed,
            checksum_hits=self._checksum_hits,
            checksum_misses=self._checksum_misses,
        )


async def _quietly(aw: Awaitable[object]) -> None:
    """Await a cleanup; its failure must not hide the error being handled (the next
    open's recovery removes whatever it left)."""
    with contextlib.suppress(DockyardError, OSError):
        await aw


def _valid(entry: FileHash, st: os.stat_result) -> bool:
    return (
        entry.size == st.st_size
        and entry.mtime_ns == st.st_mtime_ns
        and entry.ino == st.st_ino
        and entry.ctime_ns == st.st_ctime_ns
        and entry.mode == st.st_mode
    )


def _mirror_between(
    src: str,
    target: Sequence[Mount],
    decide: Callable[[str, os.stat_result, os.stat_result], bool | None],
    verify: Callable[[str, os.stat_result, os.stat_result], bool],
    copied: Callable[[str, os.stat_result, str], None],
) -> None:
    if len(target) == 1 and target[0].type == "bind":
        mirror_tree(src, target[0].source, decide=decide, verify=verify, copied=copied)
        return
    with mounted(target) as dst:
        mirror_tree(src, str(dst), decide=decide, verify=verify, copied=copied)


_libc: ctypes.CDLL | None = None


def _boot_id() -> str:
    """This boot of the machine (empty when unknown: every open is then a new boot)."""
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""


def _syncfs(path: Path) -> None:
    """Flush the file system holding ``path`` (``syncfs(2)``; ``sync(2)`` if missing)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs = getattr(_libc, "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
