"""``local://NAME``: a directory the client serves through its session (the build
context, a named context, the Dockerfile's directory).

Each fetch syncs the client's directory incrementally into a persistent work area of the
cache (``CacheManager.named_mutable``) kept per *shared key* — the op's
``local.sharedkeyhint`` (else its name) and the client's shared key, as BuildKit does —
so only what changed since the last build travels. Include and exclude patterns
(``.dockerignore`` semantics, ``!`` and ``**``) and follow paths are applied by the
client's walk; the receiver keeps everything inside the work area (symlinks stay links,
no path escapes).

The result is a committed copy of the work area. Its content checksum (the cache's stat
cache re-reads only files whose stat changed; nothing at all when the sync changed
nothing) labels the copy, and a later fetch with the same content reuses that copy
instead of copying again. The op's cache key is unique per fetch (the source always
runs, like BuildKit's); its dependants read it by content checksum, so they still hit
the cache when the files they use are unchanged.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef, MutableRef, RecordType
from dockyard.core import (
    Digest,
    InvalidDefinitionError,
    NotFoundError,
    SessionError,
    UsageError,
)
from dockyard.llb import ATTR
from dockyard.session import SessionHandle, SessionManager, SyncRequest, SyncResult
from dockyard.solver import JobValue, VertexContext

from .types import SourceOpRequest

__all__ = ["CONTENT_LABEL", "LocalInstance", "LocalSource", "LocalSpec", "LocalStatistics"]

CONTENT_LABEL = "dockyard.source.local.content"
"""Label on a local source's committed copy: the content checksum of its tree."""

_INCLUDE_ATTRS = (ATTR.LOCAL_INCLUDE_PATTERNS, "local.includepatterns")


def _json_list(key: str, value: str | None) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    try:
        items = json.loads(value)
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
    transferred by them, committed copies made (``copies``) and reused (``reused``),
    and ``checksums`` computed of the work areas (skipped when a sync changed nothing)."""

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
        self._digests: dict[str, Digest] = {}  # work area id → checksum after its last sync
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
        """Sync the directory and return its committed tree (see the module docstring)."""
        handle = await self.session(spec, ctx)
        key = f"local:{spec.shared_key_hint or spec.name}:{handle.shared_key}"
        async with self.cache.named_mutable(
            key, record_type=RecordType.SOURCE_LOCAL, description=f"local source for {spec.name}"
        ) as work:
            # forget the last checksum first: a sync that fails halfway changes the tree
            known = self._digests.pop(work.id, None)
            async with _directory(work) as dest:
                result = await handle.filesync.sync(
                    spec.sync, dest, reporter=ctx, progress_digest=ctx.digest
                )
            self._count(result)
            digest = known if result.unchanged else None
            if digest is None:
                self._checksums += 1
                digest = await self.cache.checksum(work, "/")
            for rid in self.cache.records_with_label(CONTENT_LABEL, str(digest)):
                with contextlib.suppress(NotFoundError):
                    ref = await self.cache.get(rid)
                    self._digests[work.id] = digest
                    self._reused += 1
                    return ref
            ref = await self.cache.snapshot(
                work, record_type=RecordType.SOURCE_LOCAL, description=f"local {spec.name}"
            )
            try:
                ref.set_label(CONTENT_LABEL, str(digest))
            except BaseException:
                await ref.release()
                raise
            self._digests[work.id] = digest
            self._copies += 1
            return ref

    def _count(self, result: SyncResult) -> None:
        self._syncs += 1
        self._files += result.files_transferred
        self._bytes += result.bytes_transferred


@contextlib.asynccontextmanager
async def _directory(work: MutableRef) -> AsyncIterator[Path]:
    """The work area as a directory: its own path when it is a plain directory (no
    mount needed), else mounted for the block."""
    mounts = await work.mounts()
    if len(mounts) == 1 and mounts[0].type == "bind" and not mounts[0].readonly:
        yield Path(mounts[0].source)
        return
    async with work.mount() as root:
        yield root


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
