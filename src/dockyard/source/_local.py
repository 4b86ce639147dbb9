"""``local://NAME``: a directory the client serves through its session (the build
context, a named context, the Dockerfile's directory).

Each fetch syncs the client's directory into a new snapshot *on top of the previous one*
of the same *shared key* — the op's ``local.sharedkeyhint`` (else its name) and the
client's shared key, as BuildKit does — so only what changed travels and is written:

- the previous snapshot's file index (``CacheManager.file_index``: every entry's
  metadata as that sync sent it, and its checksum nodes) is the sync's base. The
  receiver compares the client's entries with it; when nothing differs nothing is
  written and the previous snapshot is the result (no copy, no walk of the tree);
- otherwise a new mutable ref is made on the previous snapshot and only the changes are
  written into its own directory — with overlayfs an upper directory over the previous
  tree (deletions become whiteouts; committing costs no copy), with the native
  snapshotter a full copy of it — and the index is carried over, re-reading only the
  entries the sync wrote. A tree with the same content as an existing snapshot (a
  change undone) reuses that snapshot instead. The first fetch writes every file once.
  When the chain reaches :data:`MAX_LAYERS` layers (overlayfs looks names up in every
  layer) the next one starts on a flattened copy of the tree made of hard links.

Include and exclude patterns (``.dockerignore`` semantics, ``!`` and ``**``) and follow
paths are applied by the client's walk; the receiver keeps everything inside the
snapshot (symlinks stay links, no path escapes). The op's cache key is unique per fetch
(the source always runs, like BuildKit's); its dependants read it by content checksum —
answered from the index, without reading files — so they still hit the cache when the
files they use are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.cache import CacheManager, FileIndex, ImmutableRef, MutableRef, RecordType
from dockyard.core import (
    InvalidDefinitionError,
    NotFoundError,
    SessionError,
    UsageError,
    jsontext,
)
from dockyard.llb import ATTR
from dockyard.session import (
    SessionHandle,
    SessionManager,
    SyncBase,
    SyncRequest,
    SyncResult,
    stat_key,
)
from dockyard.solver import JobValue, VertexContext

from .types import SourceOpRequest

__all__ = [
    "CONTENT_LABEL",
    "KEY_LABEL",
    "MAX_LAYERS",
    "LocalInstance",
    "LocalSource",
    "LocalSpec",
    "LocalStatistics",
]

CONTENT_LABEL = "dockyard.source.local.content"
"""Label on a local source's snapshot: the content checksum of its tree."""

KEY_LABEL = "dockyard.source.local.key"
"""Label on a local source's snapshot: the shared key whose next sync builds on it."""

_PREVIOUS_TRIED = 8
"""Snapshots of a key (newest first) a sync tries to build on."""

MAX_LAYERS = 32
"""Layers a local source's chain may reach; the next change starts a new chain on a
flattened copy of the tree made of hard links (``CacheManager.flatten``)."""

_INCLUDE_ATTRS = (ATTR.LOCAL_INCLUDE_PATTERNS, "local.includepatterns")


def _json_list(key: str, value: str | None) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    try:
        items = jsontext.loads(value)
    except ValueError as exc:
        raise InvalidDefinitionError(f"{key}: not a JSON list of strings: {value!r}") from exc
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidDefinitionError(f"{key}: not a JSON list of strings: {value!r}")
    return tuple(items)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalSpec:
    """A ``local://`` op, parsed: the client's directory ``name``, the ``sync`` request
    (patterns, follow paths), the ``session_id`` it names (``local.session``; else the
    job's sessions), the ``shared_key_hint`` and ``unique_id`` (``local.unique``)."""

    name: str
    sync: SyncRequest
    session_id: str = ""
    shared_key_hint: str = ""
    unique_id: str = ""

    @classmethod
    def parse(cls, request: SourceOpRequest) -> LocalSpec:
        name = request.path
        if not name:
            raise InvalidDefinitionError(f"local source {request.identifier!r} names no directory")
        attrs = request.attrs
        include: tuple[str, ...] = ()
        for key in _INCLUDE_ATTRS:
            include += _json_list(key, attrs.get(key))
        exclude = _json_list(ATTR.LOCAL_EXCLUDE_PATTERNS, attrs.get(ATTR.LOCAL_EXCLUDE_PATTERNS))
        follow = _json_list(ATTR.LOCAL_FOLLOW_PATHS, attrs.get(ATTR.LOCAL_FOLLOW_PATHS))
        try:
            sync = SyncRequest(
                name=name,
                include_patterns=include,
                exclude_patterns=exclude,
                follow_paths=follow,
            )
        except UsageError as exc:
            raise InvalidDefinitionError(f"local source {name!r}: {exc.message}") from exc
        return cls(
            name=name,
            sync=sync,
            session_id=attrs.get(ATTR.LOCAL_SESSION_ID, ""),
            shared_key_hint=attrs.get(ATTR.LOCAL_SHARED_KEY_HINT, ""),
            unique_id=attrs.get(ATTR.LOCAL_UNIQUE_ID, ""),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalStatistics:
    """Counters since the source was made: ``syncs`` done, file contents and bytes
    transferred by them, snapshots committed (``copies``) and existing ones returned
    instead (``reused``: nothing changed, or a change undone), and file indexes
    computed (``checksums``; none when a sync changed nothing)."""

    syncs: int
    files_transferred: int
    bytes_transferred: int
    copies: int
    reused: int
    checksums: int


class LocalSource:
    """The ``local`` resolver (``Worker.sources["local"]``).

    ``sessions`` is where client sessions are found: by the op's ``local.session``
    attribute, else by the ids the job carries under ``session_key`` (the engine's
    ``dockyard.llbsolver.SESSION_ID``; in embedded mode the session is in-process, the
    same code path). A job without a session cannot read local sources.
    """

    def __init__(
        self,
        *,
        cache: CacheManager,
        sessions: SessionManager,
        session_key: JobValue[str] | None = None,
    ) -> None:
        self.cache = cache
        self.sessions = sessions
        self._session_key = session_key
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._syncs = 0
        self._files = 0
        self._bytes = 0
        self._copies = 0
        self._reused = 0
        self._checksums = 0

    def statistics(self) -> LocalStatistics:
        return LocalStatistics(
            syncs=self._syncs,
            files_transferred=self._files,
            bytes_transferred=self._bytes,
            copies=self._copies,
            reused=self._reused,
            checksums=self._checksums,
        )

    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> LocalInstance:
        return LocalInstance(self, LocalSpec.parse(request))

    def _session_ids(self, spec: LocalSpec, ctx: VertexContext) -> tuple[str, ...]:
        if spec.session_id:
            return (spec.session_id,)
        if self._session_key is None:
            return ()
        return ctx.values(self._session_key)

    async def session(self, spec: LocalSpec, ctx: VertexContext) -> SessionHandle:
        """The first of the job's sessions that offers the directory."""
        ids = self._session_ids(spec, ctx)
        if not ids:
            raise SessionError(
                f"local source {spec.name!r}: the build has no client session to read it from"
            )
        offered: list[str] = []
        for sid in ids:
            handle = self.sessions.find(sid) or await self.sessions.get(sid)
            if handle.filesync.has(spec.name):
                return handle
            offered.extend(handle.info.directories)
        names = ", ".join(sorted(set(offered))) or "none"
        raise NotFoundError(
            f"local source {spec.name!r}: the client offers no such directory (it offers: {names})"
        )

    async def fetch(self, spec: LocalSpec, ctx: VertexContext) -> ImmutableRef:
        """Sync the directory and return its snapshot (see the module docstring)."""
        handle = await self.session(spec, ctx)
        key = f"local:{spec.shared_key_hint or spec.name}:{handle.shared_key}"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:  # the second of two syncs of one key builds on the first
            previous, index = await self._previous(key)
            made: list[MutableRef] = []

            async def open_layer() -> tuple[Path, bool]:
                base = previous
                flat: ImmutableRef | None = None
                if base is not None and await self._deep(base):
                    base = flat = await self.cache.flatten(base)
                try:
                    mutable = await self.cache.new_mutable(
                        base,
                        record_type=RecordType.SOURCE_LOCAL,
                        description=f"local source for {spec.name}",
                    )
                finally:
                    if flat is not None:
                        await flat.release()
                made.append(mutable)
                return await self.cache.own_path(mutable)

            base = SyncBase(entries=index.meta if index is not None else {}, open=open_layer)
            try:
                result = await handle.filesync.sync(
                    spec.sync, base, reporter=ctx, progress_digest=ctx.digest
                )
                self._count(result)
                if not made and previous is not None:
                    self._reused += 1
                    ref, previous = previous, None
                    return ref
                if not made:
                    await open_layer()  # an empty directory, the first time
                return await self._commit(made[0], key, result, index)
            finally:
                try:
                    for mutable in made:
                        if not mutable.released:
                            await mutable.release()
                finally:  # even when cancelled again meanwhile
                    if previous is not None:
                        await previous.release()

    async def _deep(self, ref: ImmutableRef) -> bool:
        """Whether a new layer on ``ref`` would make its chain longer than
        :data:`MAX_LAYERS` (overlayfs looks a name up in every layer)."""
        snapshotter = self.cache.snapshotter
        return snapshotter.layered and await snapshotter.layer_count(ref.id) >= MAX_LAYERS

    async def _previous(self, key: str) -> tuple[ImmutableRef | None, FileIndex | None]:
        """The latest snapshot of ``key`` that has a file index (a new handle), if any."""
        # the latest few: each sync of the key adds one, and older ones are only tried
        # when newer ones lost their index (then a full sync is as good)
        for rid in self.cache.records_with_label(KEY_LABEL, key, limit=_PREVIOUS_TRIED):
            try:
                ref = await self.cache.get(rid)
            except NotFoundError:
                continue
            index = await self.cache.file_index(ref)
            if index is not None:
                return ref, index
            await ref.release()
        return None, None

    async def _commit(
        self, mutable: MutableRef, key: str, result: SyncResult, base: FileIndex | None
    ) -> ImmutableRef:
        self._checksums += 1
        if base is None:
            meta = {e.path: stat_key(e) for e in result.tree}
            index = await self.cache.index_tree(mutable, meta, known=result.digests)
        else:
            written = set(result.changed)
            changes = {}
            if result.different is not None:
                # the receiver compared every entry with the base already
                tree = result.tree
                for i in result.different:
                    changes[tree[i].path] = stat_key(tree[i])
                if not written.issubset(changes):  # rewritten though alike (hard links)
                    for entry in tree:
                        if entry.path in written:
                            changes[entry.path] = stat_key(entry)
            else:
                known = base.meta
                for entry in result.tree:
                    stats = stat_key(entry)
                    if entry.path in written or known.get(entry.path) != stats:
                        changes[entry.path] = stats
            index = await self.cache.index_tree(
                mutable,
                changes,
                base=base,
                written=written,
                deleted=result.deleted,
                known=result.digests,
            )
        digest = str(index.digest)
        for rid in self.cache.records_with_label(CONTENT_LABEL, digest):
            with contextlib.suppress(NotFoundError):
                ref = await self.cache.get(rid)
                if await self.cache.file_index(ref) is None:
                    await ref.release()
                    continue
                self._reused += 1
                await self._label(ref, key=key)
                return ref
        ref = await self.cache.commit_indexed(mutable, index)
        await self._label(ref, key=key, content=digest)
        self._copies += 1
        return ref

    async def _label(self, ref: ImmutableRef, *, key: str, content: str | None = None) -> None:
        try:
            if content is not None:
                ref.set_label(CONTENT_LABEL, content)
            ref.set_label(KEY_LABEL, key)
        except BaseException:
            await ref.release()
            raise

    def _count(self, result: SyncResult) -> None:
        self._syncs += 1
        self._files += result.files_transferred
        self._bytes += result.bytes_transferred


class LocalInstance:
    """One ``local://`` op (a :class:`~dockyard.llbsolver.SourceInstance`)."""

    def __init__(self, source: LocalSource, spec: LocalSpec) -> None:
        self.source = source
        self.spec = spec

    async def cache_key(self, ctx: VertexContext) -> str:
        # unique per fetch (``random:``, BuildKit's mark, so cache exports leave it
        # out): the source always runs; dependants key on content
        sessions: Sequence[str] = self.source._session_ids(self.spec, ctx)
        first = sessions[0] if sessions else ""
        return f"random:local:{first}:{self.spec.name}:{uuid.uuid4().hex}"

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        return await self.source.fetch(self.spec, ctx)
