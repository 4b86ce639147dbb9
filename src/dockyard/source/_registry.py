"""Registry clients for image sources: one per client session that forwards
credentials (so that one user's credentials never serve another's build), one for the
rest with the engine's own credentials (the docker config of the engine's user).

Sessions are found through the job's session ids (a :class:`~dockyard.solver.JobValue`
the engine passes in) in the :class:`~dockyard.session.SessionManager`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dockyard.content import ContentStore, Writer
from dockyard.core import ContentError, Digest
from dockyard.registry import Credentials, CredentialsProvider, RegistryConfig
from dockyard.session import SessionManager
from dockyard.session.types import CredentialsCaller

from ._follow import Follower
from ._tasks import complete

if TYPE_CHECKING:
    from dockyard.registry import RegistryClient

__all__ = ["ClientPool", "SessionCredentials", "StoreSink"]

_MAX_SESSION_CLIENTS = 32


class SessionCredentials:
    """:class:`~dockyard.registry.CredentialsProvider` that asks a client session
    (``None`` from the client means anonymous)."""

    def __init__(self, caller: CredentialsCaller) -> None:
        self._caller = caller

    async def get(self, host: str) -> Credentials | None:
        found = await self._caller.get(host)
        if found is None:
            return None
        return Credentials(
            username=found.username,
            password=found.password,
            identity_token=found.identity_token,
            registry_token=found.registry_token,
        )


class ClientPool:
    """Registry clients by credentials origin; see the module docstring."""

    def __init__(
        self,
        *,
        config: RegistryConfig | None,
        credentials: CredentialsProvider | None,
        sessions: SessionManager | None,
    ) -> None:
        self.config = config if config is not None else RegistryConfig()
        self._credentials = credentials
        self._sessions = sessions
        self._default: RegistryClient | None = None
        self._by_session: dict[str, RegistryClient] = {}
        self._lock = asyncio.Lock()

    def _new(self, credentials: CredentialsProvider | None) -> RegistryClient:
        from dockyard.registry import RegistryClient

        return RegistryClient(config=self.config, credentials=credentials)

    async def client(self, session_ids: Sequence[str]) -> RegistryClient:
        """The client for a job whose sessions are ``session_ids`` (oldest first): that
        of the first attached session forwarding credentials, else the default one."""
        async with self._lock:
            if self._sessions is not None:
                for sid in session_ids:
                    handle = self._sessions.find(sid)
                    if handle is None or handle.closed or not handle.info.credentials:
                        continue
                    found = self._by_session.get(sid)
                    if found is None:
                        await self._drop_closed()
                        found = self._new(SessionCredentials(handle.credentials))
                        self._by_session[sid] = found
                    return found
            if self._default is None:
                credentials = self._credentials
                if credentials is None:
                    from dockyard.registry import DockerConfigCredentials

                    credentials = DockerConfigCredentials()
                self._default = self._new(credentials)
            return self._default

    async def _drop_closed(self) -> None:
        for sid in list(self._by_session):
            handle = self._sessions.find(sid) if self._sessions is not None else None
            if handle is None or handle.closed or len(self._by_session) >= _MAX_SESSION_CLIENTS:
                await self._by_session.pop(sid).aclose()

    async def aclose(self) -> None:
        async with self._lock:
            clients = list(self._by_session.values())
            if self._default is not None:
                clients.append(self._default)
            self._by_session.clear()
            self._default = None
        for client in clients:
            await client.aclose()


class StoreSink:
    """:class:`~dockyard.registry.BlobSink` into the content store: the blob appears
    (verified, under ``lease``) only when committed; an abort leaves nothing. Each
    download has an ingest of its own (no resuming another's partial data). ``follower``
    is told how far each write got (a layer unpack reading the blob as it arrives)."""

    verifies_digest = True  # the store's writer hashes what it writes; commit checks it

    def __init__(
        self,
        store: ContentStore,
        *,
        digest: Digest,
        size: int,
        lease: str | None,
        follower: Follower | None = None,
    ) -> None:
        self._store = store
        self._follower = follower
        self._digest = digest
        self._size = size
        self._lease = lease
        self._writer: Writer | None = None
        self._pending: asyncio.Future[None] | None = None

    def _current(self) -> Writer:
        if self._writer is None:
            self._writer = self._store.writer(
                f"pull-{self._digest}-{uuid.uuid4().hex[:12]}",
                expected_digest=self._digest,
                expected_size=self._size,
            )
        return self._writer

    async def write(self, data: bytes) -> None:
        # one write in flight, in a thread, while the caller receives the next bytes
        writer = self._current()
        await self._settle()
        follower = self._follower

        def run() -> None:
            writer.write_sync(data)
            if follower is not None:
                follower.grew(writer.path, writer.offset)

        self._pending = asyncio.ensure_future(asyncio.to_thread(run))

    async def _settle(self) -> None:
        """Wait for the write in flight (its error is raised here); a thread cannot be
        stopped, so it ends before anything closes its file, even when cancelled."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await complete(lambda: pending)

    async def reset(self) -> None:
        await self.abort()

    async def commit(self, digest: Digest, size: int) -> None:
        await self._settle()
        writer = self._current()
        self._writer = None
        try:
            await complete(lambda: writer.commit(digest, size, lease=self._lease))
        except ContentError as exc:  # the writer discarded the content
            raise ContentError(f"downloaded blob {digest} is not what it should be: {exc}") from exc

    async def abort(self) -> None:
        with contextlib.suppress(Exception):  # the failed write is what is cleaned up
            await self._settle()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await complete(writer.abort)
