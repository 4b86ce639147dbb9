"""The cache: refs over snapshots, SQLite metadata, content checksums, du and prune.

One :class:`CacheManager` per state directory (``await CacheManager.open(state_dir)``)
owns the snapshotter of ``<state>/snapshots`` and its tables in ``<state>/metadata.db``
(SQLite WAL, tables ``cache_*``; the solver's ``solver_*`` tables may share the file).
It takes ``<state>/locks/cache.lock``: a second manager on the same directory is refused.
Temporary mounts live under ``<state>/mnt``.

Records
    Each record is one snapshot (the record id is the snapshot key) with: kind (mutable
    or committed), record type (:class:`RecordType`), description, created, last used,
    usage count, size (computed when committed and kept), labels, what it is built on
    (``parent`` for a chain; ``merge`` inputs; a diff's ``lower`` and ``upper``), the
    compressed layer blobs made from it (:class:`LayerBlob`, per variant, so an
    unchanged layer is never compressed twice), and cached checksums.

Handles
    :class:`ImmutableRef` is a counted handle on a committed record: several handles may
    hold one record (``clone()``, ``get``, ``load``); ``release()`` never deletes, GC
    (``prune``) does, and only records no handle holds and no other record is built on.
    It satisfies the solver's ``Result``; the manager is the solver's ``ResultStorage``
    (``save`` returns the record ids, ``load`` a new handle or ``None`` once pruned).
    :class:`MutableRef` is a writable tree: ``new_mutable(parent)`` → mount it (specs
    from ``mounts()`` or a temporary mount from ``mount()``) → ``commit()`` into an
    ImmutableRef (same id), or ``release()`` to throw it away.

Persistent mutable refs
    ``cache_mount(id, sharing=..., parent=...)`` (``RUN --mount=type=cache``) and
    ``named_mutable(name)`` (a local source's synced context) are async context managers
    yielding a MutableRef that outlives its users, builds and restarts until pruned and
    is never committed into a result. :class:`Sharing`: ``shared`` users use one tree
    at once; a ``private`` user that finds it in use gets another tree (kept too);
    ``locked`` users take turns. ``named_mutable`` is always one user at a time.

File indexes (synced trees)
    A committed record may keep a :class:`FileIndex`: each entry's metadata as the file
    sync that wrote it sent it, and its checksum node. A local source makes
    ``new_mutable(previous)``, writes a sync's changes into ``own_path(mutable)`` (with
    overlayfs an upper directory: no mount, no copy), then ``index_tree(mutable, ...,
    base=previous index)`` re-reads only what the sync wrote, and
    ``commit_indexed(mutable, index)`` keeps it (as changes against the parent's index).
    ``file_index(ref)`` gives it back — the next sync's base — and ``checksum(ref,
    path)`` of a plain path is answered from it without reading the tree.

Snapshots of synced trees
    ``snapshot(mutable)`` commits a copy of a mutable ref while it stays usable: the
    local-source pattern is ``named_mutable(context)`` → sync changed files into it →
    ``checksum(ctx, "/")`` (stat cache: only changed files are read) → reuse a snapshot
    labelled with that digest, or ``snapshot(ctx)``. A snapshot is made on top of the
    previous one of the same ref (chains capped at ``SNAPSHOT_CHAIN`` layers), writing
    only what differs (rsync's quick check, confirmed by content hashes where known), and
    it inherits the stat cache, so its checksums read only files never hashed before.

Merge and diff
    ``merge(refs)`` is BuildKit's MergeOp: the layers of each input applied in order,
    later inputs win, and deletions recorded in a later input's layers delete from
    earlier ones. ``diff(lower, upper)`` is DiffOp: mounted alone it shows what ``upper``
    added or changed; merged on top of something its deletions apply too. When
    ``lower`` is an ancestor of ``upper`` the diff is the layers in between. With
    overlayfs neither copies data (layers are stacked); the native snapshotter
    materializes them. ``ref.layers()`` lists the layer records of any ref (bottom
    first) and ``write_layer`` writes one layer tar, for image exporters.

Checksums
    ``checksum(ref, path, include_patterns=..., exclude_patterns=..., follow_links=...,
    wildcard=...)`` digests content, file type, mode, uid, gid, symlink targets and
    xattrs — never timestamps — of ``path`` resolved inside the ref (see
    ``dockyard.cache._checksum``). Committed records cache results per selector, in
    memory and in SQLite. Mutable refs use a stat cache (path → size, mtime, inode,
    ctime, mode → content hash), so re-checksumming a synced context re-reads only the
    files that changed.

du, prune and recovery
    ``du(filters)`` lists :class:`UsageRecord`; ``prune(all=, keep_duration=,
    keep_storage=, filters=)`` removes unused leaf records least recently used first
    (repeating as parents become leaves). Opening the manager recovers from a crash:
    leftover mounts, uncommitted non-persistent trees, records whose snapshot is gone
    (and records built on them) and snapshots without a record are removed, so a record
    only ever points at complete content.
"""

from ._checksum import NO_MATCH
from ._index import EntryMeta, FileIndex
from ._manager import CacheManager
from ._refs import ImmutableRef, MutableRef
from .types import (
    CacheStatistics,
    LayerBlob,
    RecordType,
    Sharing,
    UsageFilter,
    UsageRecord,
)

__all__ = [
    "NO_MATCH",
    "CacheManager",
    "CacheStatistics",
    "EntryMeta",
    "FileIndex",
    "ImmutableRef",
    "LayerBlob",
    "MutableRef",
    "RecordType",
    "Sharing",
    "UsageFilter",
    "UsageRecord",
]
