"""The client's side of a session: what it serves to the engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets as _random
import threading
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from dockyard.core import NotFoundError, UsageError

from ._export import ExportTarget
from ._values import FileStat, SessionInfo, SyncRequest, UserTerminal
from .types import ByteChannel, CredentialsLike, CredentialsSource, SecretStore, SshAgentProvider

if TYPE_CHECKING:
    from ._content import LayoutStore

__all__ = ["PREFETCH_WAIT", "Session", "new_session_id"]

PREFETCH_WAIT = 1.0
"""Seconds a prefetched walk waits for the syncs before it to end (see
:meth:`Session.prefetch`)."""


class _Counter(threading.Condition):
    """A condition with the number of syncs that ended."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def wait_until(self, count: int, timeout: float) -> bool:
        """Wait (holding the lock) until :attr:`count` reaches ``count``, at most
        ``timeout`` seconds; whether it did."""
        return self.wait_for(lambda: self.count >= count, timeout=timeout)


def new_session_id() -> str:
    """A random session id (128 bits, hex)."""
    return _random.token_hex(16)


def _check_name(kind: str, name: str) -> None:
    if not name or any(c in name for c in "\0\n"):
        raise UsageError(f"invalid {kind} name {name!r}")


class Session:
    """What one client serves for its builds: named directories (the build context, the
    Dockerfile's directory, named contexts), secrets, SSH agents, registry credentials
    and export targets, OCI layout directories as content stores (by id: the engine
    never learns their paths), and the user's terminal for a debug shell (``shell``;
    over gRPC only: an in-process engine gives a shell this process's streams itself).
    Attach it to an engine with :meth:`SessionManager.attach
    <dockyard.session.SessionManager.attach>` (in-process) or
    :func:`dockyard.session.attach` (over gRPC).

    ``owners=False`` sends every file of the directories as owned by 0:0, as docker build
    and buildx send a local build context (so ``COPY`` without ``--chown`` gives root's
    files whoever owns them on the client); by default owners travel (buildctl's way).

    ``shared_key`` identifies the client's checkout across sessions (the engine keeps
    synced directories per name and shared key). Nothing here reads a directory, a
    secret or a credential until the engine asks for it — except the walks asked for
    with :meth:`prefetch`. :attr:`synced` lists the sync requests served, in order.
    """

    __slots__ = (
        "_ended",
        "_walks",
        "content_stores",
        "credentials",
        "directories",
        "exports",
        "id",
        "name",
        "owners",
        "secrets",
        "shared_key",
        "shell",
        "ssh",
        "synced",
    )

    def __init__(
        self,
        *,
        id: str | None = None,
        name: str = "",
        shared_key: str = "",
        directories: Mapping[str, str | PathLike[str]] | None = None,
        secrets: SecretStore | None = None,
        ssh: SshAgentProvider | None = None,
        credentials: CredentialsSource | None = None,
        exports: Mapping[str, ExportTarget] | None = None,
        content_stores: Mapping[str, LayoutStore] | None = None,
        shell: UserTerminal | None = None,
        owners: bool = True,
    ) -> None:
        self.id = id or new_session_id()
        self.owners = owners
        self.name = name
        self.shared_key = shared_key
        dirs: dict[str, Path] = {}
        for key, value in (directories or {}).items():
            _check_name("directory", key)
            dirs[key] = Path(value).absolute()
        for key in exports or {}:
            _check_name("export target", key)
        self.directories: Mapping[str, Path] = MappingProxyType(dirs)
        self.secrets = secrets
        self.ssh = ssh
        self.credentials = credentials
        self.exports: Mapping[str, ExportTarget] = MappingProxyType(dict(exports or {}))
        if content_stores:
            from ._content import check_store_id

            for key in content_stores:
                check_store_id(key)
        self.content_stores: Mapping[str, LayoutStore] = MappingProxyType(
            dict(content_stores or {})
        )
        self.shell = shell
        self.synced: list[SyncRequest] = []
        self._walks: dict[SyncRequest, concurrent.futures.Future[list[FileStat]]] = {}
        self._ended = _Counter()

    def __repr__(self) -> str:
        return (
            f"Session(id={self.id!r}, name={self.name!r}, "
            f"directories={sorted(self.directories)!r}, exports={sorted(self.exports)!r}, "
            f"content_stores={sorted(self.content_stores)!r})"
        )

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.id,
            name=self.name,
            shared_key=self.shared_key,
            directories=frozenset(self.directories),
            ssh_ids=self.ssh.ids() if self.ssh is not None else frozenset(),
            exports=frozenset(self.exports),
            secrets=self.secrets is not None,
            credentials=self.credentials is not None,
            content_stores=frozenset(self.content_stores),
            writable_stores=frozenset(k for k, v in self.content_stores.items() if v.writable),
            shell=self.shell is not None,
        )

    def directory(self, name: str) -> Path:
        try:
            return self.directories[name]
        except KeyError:
            raise NotFoundError(_missing("directory", name, self.directories)) from None

    def prefetch(self, requests: Sequence[SyncRequest]) -> None:
        """Walk the directories of ``requests`` ahead of the engine's asking (a guess of
        what it will ask for, e.g. the requests of the previous build, in the order it
        made them): the first :meth:`walk` of an equal request takes those entries
        instead of walking again. The walks run one after the other in a thread of
        their own, the ``i``-th once ``i`` syncs of this session have ended: a walk
        holds the GIL often enough to slow down serving the syncs before it several
        times over, and the engine asks for the next directory only after those (a
        Dockerfile's context after the Dockerfile). When that takes longer than
        :data:`PREFETCH_WAIT` seconds the build goes another way and the walks left are
        dropped. A walk asked for before it started is made when asked, as without a
        guess.

        The entries are those of the moment the walk ran, which is after the build
        started — as a walk made when asked would be, only earlier. A request the
        engine never makes was walked for nothing; a directory the session does not
        offer is left out (the engine's request reports it)."""
        from ._walk import walk

        planned: list[tuple[Path, SyncRequest, concurrent.futures.Future[list[FileStat]]]] = []
        for request in requests:
            root = self.directories.get(request.name)
            if root is None or request in self._walks:
                continue
            future: concurrent.futures.Future[list[FileStat]] = concurrent.futures.Future()
            self._walks[request] = future
            planned.append((root, request, future))
        if not planned:
            return
        ended = self._ended

        def run() -> None:
            for position, (root, request, future) in enumerate(planned):
                with ended:
                    in_turn = ended.wait_until(position, PREFETCH_WAIT)
                if not in_turn:  # the build goes another way (or is over): no more guesses
                    for _, _, rest in planned[position:]:
                        rest.cancel()
                    return
                if not future.set_running_or_notify_cancel():
                    continue  # asked for meanwhile: walked when asked
                try:
                    future.set_result(walk(root, request, owners=self.owners))
                except BaseException as exc:
                    future.set_exception(exc)

        threading.Thread(target=run, name="dockyard-prefetch", daemon=True).start()

    async def walk(self, request: SyncRequest) -> list[FileStat]:
        """The entries of ``request``'s directory that a sync sends (see
        :func:`~dockyard.session.walk`): a walk :meth:`prefetch` made for an equal
        request (once), else a new walk in a thread. Notes ``request`` in
        :attr:`synced`; the transport calls :meth:`sync_ended` when it has served it."""
        root = self.directory(request.name)
        self.synced.append(request)
        future = self._walks.pop(request, None)
        if future is not None and not future.cancel():
            try:
                return await asyncio.wrap_future(future)
            except Exception:
                pass  # walked again below: that walk's error is the one reported
        from ._walk import walk

        return await asyncio.to_thread(walk, root, request, owners=self.owners)

    def sync_ended(self) -> None:
        """A sync of this session was served (or failed): lets the next prefetched walk
        start (see :meth:`prefetch`)."""
        with self._ended:
            self._ended.count += 1
            self._ended.notify_all()

    def export_target(self, name: str) -> ExportTarget:
        try:
            return self.exports[name]
        except KeyError:
            raise NotFoundError(_missing("export target", name, self.exports)) from None

    def content_store(self, id: str, *, write: bool = False) -> LayoutStore:
        """The content store ``id`` (``write``: one offered writable), else
        :class:`~dockyard.core.NotFoundError` naming it."""
        store = self.content_stores.get(id)
        if store is None:
            raise NotFoundError(_missing("content store", id, self.content_stores))
        if write and not store.writable:
            raise NotFoundError(f"the client offers content store {id!r} read-only")
        return store

    async def get_secret(self, id: str) -> bytes:
        if self.secrets is None:
            raise NotFoundError(f"secret {id!r} not found (the client forwards no secrets)")
        return await self.secrets.get(id)

    async def get_credentials(self, host: str) -> CredentialsLike | None:
        if self.credentials is None:
            return None
        return await self.credentials.get(host)

    async def connect_ssh(self, id: str) -> ByteChannel:
        if self.ssh is None or id not in self.ssh.ids():
            raise NotFoundError(f"no SSH agent {id!r} forwarded from the client (use --ssh {id})")
        return await self.ssh.connect(id)


def _missing(kind: str, name: str, offered: Mapping[str, object]) -> str:
    names = ", ".join(sorted(offered)) or "none"
    return f"the client offers no {kind} {name!r} (it offers: {names})"
