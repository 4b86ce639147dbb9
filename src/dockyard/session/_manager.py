"""The engine's side: the :class:`SessionManager` keeps the attached sessions; a
:class:`SessionHandle` hands out a caller per service, whatever the transport."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, TypeVar

from dockyard.core import ContentError, Digest, NotFoundError, Reporter, SessionError

from ._local import LocalPeer
from ._receive import receive
from ._session import Session
from ._values import SessionCredentials, SessionInfo, SyncBase, SyncRequest, SyncResult
from ._walk import check_prefix
from .types import ByteChannel, ExportStream, ShellChannel, SyncSource

__all__ = ["Peer", "SessionHandle", "SessionManager"]

_T = TypeVar("_T")


class Peer(Protocol):
    """A transport's view of one attached client (in-process or a gRPC stream).

    Calls raise :class:`~dockyard.core.DockyardError` subclasses only; the handle adds
    disconnect detection and timeouts around them.
    """

    transport: str
    info: SessionInfo

    async def get_secret(self, id: str) -> bytes: ...

    async def get_credentials(self, host: str) -> SessionCredentials | None: ...

    def open_sync(self, request: SyncRequest) -> AbstractAsyncContextManager[SyncSource]: ...

    async def connect_ssh(self, id: str) -> ByteChannel: ...

    async def export_directory(
        self,
        target: str,
        source: Path,
        reporter: Reporter | None,
        progress_digest: str,
        prefix: str = "",
    ) -> SyncResult: ...

    def export_stream(self, target: str) -> AbstractAsyncContextManager[ExportStream]: ...

    async def content_info(self, store: str, digest: Digest) -> int | None: ...

    def content_read(
        self, store: str, digest: Digest, size: int
    ) -> AbstractAsyncContextManager[ByteReader]: ...

    def content_write(
        self, store: str, digest: Digest, size: int
    ) -> AbstractAsyncContextManager[ExportStream]: ...

    async def content_commit(
        self, store: str, media_type: str, digest: Digest, size: int
    ) -> None: ...

    def open_shell(self, line: str) -> AbstractAsyncContextManager[ShellChannel]: ...

    async def aclose(self) -> None: ...


class ByteReader(Protocol):
    """Bytes from the client, in order; ``b""`` after the last."""

    async def read(self) -> bytes: ...


class SessionHandle:
    """One attached session as the engine sees it.

    The callers (:attr:`filesync`, :attr:`secrets`, :attr:`ssh`, :attr:`credentials`,
    :attr:`exports`, :attr:`content`) work the same in-process and over gRPC;
    :attr:`shell` (a debug shell on the client's terminal) over gRPC only. When the client goes away
    every call in flight fails with :class:`~dockyard.core.SessionError`, :attr:`closed`
    becomes true and :meth:`wait_closed` returns; :meth:`cancel_on_close` cancels a
    whole build that way.
    """

    def __init__(self, manager: SessionManager, peer: Peer) -> None:
        self._manager = manager
        self._peer = peer
        self.info = peer.info
        self._closed = asyncio.Event()
        self._reason = ""
        self._callbacks: set[Callable[[], None]] = set()
        self.filesync = _FileSync(self)
        self.secrets = _Secrets(self)
        self.ssh = _Ssh(self)
        self.credentials = _Credentials(self)
        self.exports = _Exports(self)
        self.content = _Content(self)
        self.shell = _Shell(self)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def shared_key(self) -> str:
        return self.info.shared_key

    @property
    def transport(self) -> str:
        """``in-process`` or ``grpc``."""
        return self._peer.transport

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def close_reason(self) -> str:
        return self._reason

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SessionHandle {self.id} name={self.name!r} {self.transport} {state}>"

    async def wait_closed(self) -> None:
        """Return once the session has ended (the client went away or it was closed)."""
        await self._closed.wait()

    async def close(self) -> None:
        """End the session from the engine's side (a remote client sees its attach end)."""
        await self._peer.aclose()
        self._mark_closed("closed by the engine")

    def _mark_closed(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self._reason = reason
        self._closed.set()
        self._manager._forget(self)
        for callback in list(self._callbacks):
            callback()

    def _gone(self, what: str) -> SessionError:
        reason = f": {self._reason}" if self._reason else ""
        return SessionError(f"session {self.id} ended{reason} (while {what})")

    @contextlib.asynccontextmanager
    async def cancel_on_close(self, what: str = "building") -> AsyncIterator[None]:
        """Run the body; if the session ends meanwhile, cancel it and raise
        :class:`~dockyard.core.SessionError` instead (a build whose client is gone)."""
        task = asyncio.current_task()
        assert task is not None
        fired = False

        def on_close() -> None:
            nonlocal fired
            if not fired:
                fired = True
                task.cancel()

        if self.closed:
            raise self._gone(what)
        self._callbacks.add(on_close)
        try:
            yield
        except asyncio.CancelledError:
            if fired and task.uncancel() == 0:
                raise self._gone(what) from None
            raise
        finally:
            self._callbacks.discard(on_close)

    async def _call(self, what: str, fn: Callable[[], Awaitable[_T]], limit: float | None) -> _T:
        async with self.cancel_on_close(what):
            if limit is None:
                return await fn()
            try:
                async with asyncio.timeout(limit):
                    return await fn()
            except TimeoutError:
                raise SessionError(
                    f"session {self.id}: the client did not answer within {limit:g}s (while {what})"
                ) from None


class _FileSync:
    """:class:`~dockyard.session.types.FileSyncCaller` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def has(self, name: str) -> bool:
        return name in self._handle.info.directories

    def local_directory(self, name: str) -> Path | None:
        """Where directory ``name`` of an in-process session is (the client is this
        process: what it offers may be read where it is, inside that root), or ``None``
        for a remote peer, whose files must be synced."""
        peer = self._handle._peer
        if not isinstance(peer, LocalPeer) or self._handle.closed:
            return None
        if name not in self._handle.info.directories:
            return None  # sync() says which directories it offers
        return peer.session.directory(name)

    async def sync(
        self,
        request: SyncRequest,
        dest: Path | SyncBase,
        *,
        reporter: Reporter | None = None,
        progress_digest: str = "",
        compare: bool = True,
    ) -> SyncResult:
        handle = self._handle
        if request.name not in handle.info.directories:
            names = ", ".join(sorted(handle.info.directories)) or "none"
            raise NotFoundError(
                f"the client offers no directory {request.name!r} (it offers: {names})"
            )

        async def run() -> SyncResult:
            async with handle._peer.open_sync(request) as source:
                return await receive(
                    source,
                    dest,
                    name=request.name,
                    reporter=reporter,
                    progress_digest=progress_digest,
                    compare=compare,
                )

        return await handle._call(f"syncing {request.name!r}", run, None)


class _Secrets:
    """:class:`~dockyard.session.types.SecretStore` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def __repr__(self) -> str:
        return f"<secrets of session {self._handle.id}>"

    async def get(self, id: str) -> bytes:
        handle = self._handle
        if not handle.info.secrets:
            raise NotFoundError(f"secret {id!r} not found (the client forwards no secrets)")
        return await handle._call(
            f"fetching secret {id!r}",
            lambda: handle._peer.get_secret(id),
            handle._manager.call_timeout,
        )


class _Credentials:
    """:class:`~dockyard.session.types.CredentialsCaller` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    async def get(self, host: str) -> SessionCredentials | None:
        handle = self._handle
        if not handle.info.credentials:
            return None
        return await handle._call(
            f"asking for credentials of {host!r}",
            lambda: handle._peer.get_credentials(host),
            handle._manager.call_timeout,
        )


class _Ssh:
    """:class:`~dockyard.session.types.SshForwarder` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def has(self, id: str) -> bool:
        return id in self._handle.info.ssh_ids

    @contextlib.asynccontextmanager
    async def forward(
        self, id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600
    ) -> AsyncIterator[Path]:
        handle = self._handle
        if not self.has(id):
            raise NotFoundError(f"no SSH agent {id!r} forwarded from the client (use --ssh {id})")
        if handle.closed:
            raise handle._gone(f"forwarding SSH agent {id!r}")

        from ._ssh import forwarding_socket  # loaded when a build forwards an agent

        async def connect() -> ByteChannel:
            return await handle._call(
                f"connecting to SSH agent {id!r}",
                lambda: handle._peer.connect_ssh(id),
                handle._manager.call_timeout,
            )

        async with forwarding_socket(
            connect, uid=uid, gid=gid, mode=mode, parent=handle._manager.runtime_dir
        ) as path:
            yield path


class _Exports:
    """:class:`~dockyard.session.types.ExportCaller` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def has(self, target: str) -> bool:
        return target in self._handle.info.exports

    def _check(self, target: str) -> None:
        if not self.has(target):
            names = ", ".join(sorted(self._handle.info.exports)) or "none"
            raise NotFoundError(
                f"the client offers no export target {target!r} (it offers: {names})"
            )

    async def send_directory(
        self,
        target: str,
        source: Path,
        *,
        reporter: Reporter | None = None,
        progress_digest: str = "",
        prefix: str = "",
    ) -> SyncResult:
        self._check(target)
        if prefix:
            check_prefix(prefix)
        handle = self._handle
        where = f"{target!r}" + (f" ({prefix}/)" if prefix else "")
        return await handle._call(
            f"exporting to {where}",
            lambda: handle._peer.export_directory(
                target, source, reporter, progress_digest, prefix
            ),
            None,
        )

    @contextlib.asynccontextmanager
    async def open_stream(self, target: str) -> AsyncIterator[ExportStream]:
        self._check(target)
        handle = self._handle
        async with (
            handle.cancel_on_close(f"exporting to {target!r}"),
            handle._peer.export_stream(target) as stream,
        ):
            yield stream


_PUSH_CHUNK = 1 << 20


class _Content:
    """:class:`~dockyard.session.types.ContentCaller` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def has(self, store: str) -> bool:
        return store in self._handle.info.content_stores

    def writable(self, store: str) -> bool:
        return store in self._handle.info.writable_stores

    def _check(self, store: str, digest: Digest, *, write: bool = False) -> Digest:
        info = self._handle.info
        if not self.has(store):
            names = ", ".join(sorted(info.content_stores)) or "none"
            raise NotFoundError(
                f"the client offers no content store {store!r} (it offers: {names})"
            )
        if write and not self.writable(store):
            raise NotFoundError(f"the client offers content store {store!r} read-only")
        from ._content import blob_digest

        return blob_digest(digest)

    async def info(self, store: str, digest: Digest) -> int | None:
        d = self._check(store, digest)
        handle = self._handle
        size = await handle._call(
            f"looking up {d} in content store {store!r}",
            lambda: handle._peer.content_info(store, d),
            handle._manager.call_timeout,
        )
        if size is not None and size < 0:
            raise ContentError(f"the client reported a negative size for {d}")
        return size

    async def fetch(
        self,
        store: str,
        digest: Digest,
        size: int,
        sink: Callable[[bytes], Awaitable[None]],
    ) -> None:
        d = self._check(store, digest)
        if size < 0:
            raise ContentError(f"invalid size {size} of blob {d}")
        handle = self._handle

        async def run() -> None:
            hasher = hashlib.sha256()
            received = 0
            async with handle._peer.content_read(store, d, size) as reader:
                while True:
                    data = await reader.read()
                    if not data:
                        break
                    received += len(data)
                    if received > size:
                        raise ContentError(
                            f"blob {d} from content store {store!r}: more than its {size} bytes"
                        )
                    hasher.update(data)
                    await sink(data)
            if received != size:
                raise ContentError(
                    f"blob {d} from content store {store!r}: {received} bytes, not {size}"
                )
            if hasher.hexdigest() != d.hex:
                raise ContentError(
                    f"blob {d} from content store {store!r} does not match its digest"
                )

        await handle._call(f"reading {d} from content store {store!r}", run, None)

    async def read(self, store: str, digest: Digest, size: int, *, limit: int) -> bytes:
        if size > limit:
            raise ContentError(
                f"blob {digest} of content store {store!r} is too large ({size} bytes)"
            )
        parts: list[bytes] = []

        async def keep(data: bytes) -> None:
            parts.append(data)

        await self.fetch(store, digest, size, keep)
        return b"".join(parts)

    async def push(self, store: str, digest: Digest, size: int, source: Path) -> bool:
        d = self._check(store, digest, write=True)
        found = await self.info(store, d)
        if found == size:
            return False
        handle = self._handle

        async def run() -> None:
            with await asyncio.to_thread(source.open, "rb") as f:
                async with handle._peer.content_write(store, d, size) as stream:
                    while chunk := await asyncio.to_thread(f.read, _PUSH_CHUNK):
                        await stream.write(chunk)

        await handle._call(f"writing {d} into content store {store!r}", run, None)
        return True

    async def commit(self, store: str, media_type: str, digest: Digest, size: int) -> None:
        d = self._check(store, digest, write=True)
        handle = self._handle
        await handle._call(
            f"committing {d} in content store {store!r}",
            lambda: handle._peer.content_commit(store, media_type, d, size),
            handle._manager.call_timeout,
        )


class _Shell:
    """:class:`~dockyard.session.types.ShellCaller` of a handle."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def has(self) -> bool:
        return self._handle.info.shell

    @contextlib.asynccontextmanager
    async def open(self, line: str) -> AsyncIterator[ShellChannel]:
        handle = self._handle
        if not self.has():
            raise NotFoundError("the client offers no terminal for a debug shell")
        async with (
            handle.cancel_on_close("running a debug shell"),
            handle._peer.open_shell(line) as channel,
        ):
            yield channel


class SessionManager:
    """The sessions attached to one engine, by id.

    ``attach_timeout`` bounds how long :meth:`get` waits for a session that has not
    attached yet (a daemon receives the solve request and the session concurrently);
    ``call_timeout`` how long a client may take to answer a request (a secret,
    credentials, opening a stream); ``runtime_dir`` is where forwarded SSH sockets are
    made (the system's temp dir by default).
    """

    def __init__(
        self,
        *,
        attach_timeout: float = 10.0,
        call_timeout: float = 60.0,
        runtime_dir: Path | None = None,
    ) -> None:
        self.attach_timeout = attach_timeout
        self.call_timeout = call_timeout
        self.runtime_dir = runtime_dir
        self._sessions: dict[str, SessionHandle] = {}
        self._waiters: dict[str, list[asyncio.Future[SessionHandle]]] = {}

    def register(self, session: Session) -> SessionHandle:
        """Attach an in-process client's :class:`Session`; end it with
        :meth:`SessionHandle.close`."""
        return self.register_peer(LocalPeer(session))

    @contextlib.asynccontextmanager
    async def attach(self, session: Session) -> AsyncIterator[SessionHandle]:
        """:meth:`register` for the duration of a ``with`` block."""
        handle = self.register(session)
        try:
            yield handle
        finally:
            await handle.close()

    def register_peer(self, peer: Peer) -> SessionHandle:
        """Attach a session through a transport (used by the gRPC service)."""
        if peer.info.id in self._sessions:
            raise SessionError(f"session {peer.info.id!r} is already attached")
        if not peer.info.id:
            raise SessionError("a session needs an id")
        handle = SessionHandle(self, peer)
        self._sessions[handle.id] = handle
        for waiter in self._waiters.pop(handle.id, []):
            if not waiter.done():
                waiter.set_result(handle)
        return handle

    def _forget(self, handle: SessionHandle) -> None:
        if self._sessions.get(handle.id) is handle:
            del self._sessions[handle.id]

    def find(self, session_id: str) -> SessionHandle | None:
        """The attached session ``session_id``, if any."""
        return self._sessions.get(session_id)

    def sessions(self) -> tuple[SessionHandle, ...]:
        return tuple(self._sessions.values())

    async def get(self, session_id: str, *, wait: float | None = None) -> SessionHandle:
        """The session ``session_id``, waiting up to ``wait`` seconds (default
        ``attach_timeout``) for it to attach; :class:`~dockyard.core.SessionError` if it
        does not."""
        found = self._sessions.get(session_id)
        if found is not None:
            return found
        limit = self.attach_timeout if wait is None else wait
        waiter: asyncio.Future[SessionHandle] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(session_id, [])
        waiters.append(waiter)
        try:
            async with asyncio.timeout(limit):
                return await waiter
        except TimeoutError:
            raise SessionError(
                f"no session {session_id!r} attached (waited {limit:g}s): "
                "the client is gone or never connected"
            ) from None
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._waiters.get(session_id) is waiters:
                del self._waiters[session_id]

    async def aclose(self) -> None:
        """Close every session."""
        for handle in list(self._sessions.values()):
            await handle.close()
