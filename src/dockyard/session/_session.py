"""The client's side of a session: what it serves to the engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets as _random
import threading
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from types import MappingProxyType

from dockyard.core import NotFoundError, UsageError

from ._export import ExportTarget
from ._values import FileStat, SessionInfo, SyncRequest
from .types import ByteChannel, CredentialsLike, CredentialsSource, SecretStore, SshAgentProvider

__all__ = ["Session", "new_session_id"]


def new_session_id() -> str:
    """A random session id (128 bits, hex)."""
    return _random.token_hex(16)


def _check_name(kind: str, name: str) -> None:
    if not name or any(c in name for c in "\0\n"):
        raise UsageError(f"invalid {kind} name {name!r}")


class Session:
    """What one client serves for its builds: named directories (the build context, the
    Dockerfile's directory, named contexts), secrets, SSH agents, registry credentials
    and export targets. Attach it to an engine with
    :meth:`SessionManager.attach <dockyard.session.SessionManager.attach>` (in-process)
    or :func:`dockyard.session.attach` (over gRPC).

    ``shared_key`` identifies the client's checkout across sessions (the engine keeps
    synced directories per name and shared key). Nothing here reads a directory, a
    secret or a credential until the engine asks for it — except the walks asked for
    with :meth:`prefetch`. :attr:`synced` lists the sync requests served, in order.
    """

    __slots__ = (
        "_walks",
        "credentials",
        "directories",
        "exports",
        "id",
        "name",
        "secrets",
        "shared_key",
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
    ) -> None:
        self.id = id or new_session_id()
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
        self.synced: list[SyncRequest] = []
        self._walks: dict[SyncRequest, concurrent.futures.Future[list[FileStat]]] = {}

    def __repr__(self) -> str:
        return (
            f"Session(id={self.id!r}, name={self.name!r}, "
            f"directories={sorted(self.directories)!r}, exports={sorted(self.exports)!r})"
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
        )

    def directory(self, name: str) -> Path:
        try:
            return self.directories[name]
        except KeyError:
            raise NotFoundError(_missing("directory", name, self.directories)) from None

    def prefetch(self, request: SyncRequest) -> None:
        """Start walking ``request``'s directory now, in a thread of its own (a guess of
        what the engine will ask for, e.g. the request of the previous build): the
        first :meth:`walk` of an equal request takes these entries instead of walking
        again, so the walk runs while the engine does other work (opening its stores,
        the frontend). The entries are those of the moment the walk ran, which is after
        the build started — as a walk made when asked would be, only earlier. A request
        the engine never makes was walked for nothing; an unknown directory is ignored
        (the engine's request reports it)."""
        root = self.directories.get(request.name)
        if root is None or request in self._walks:
            return
        from ._walk import walk

        future: concurrent.futures.Future[list[FileStat]] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(walk(root, request))
            except BaseException as exc:
                future.set_exception(exc)

        self._walks[request] = future
        threading.Thread(target=run, name="dockyard-prefetch", daemon=True).start()

    async def walk(self, request: SyncRequest) -> list[FileStat]:
        """The entries of ``request``'s directory that a sync sends (see
        :func:`~dockyard.session.walk`): a walk :meth:`prefetch` started for an equal
        request (once), else a new walk in a thread. Notes ``request`` in
        :attr:`synced`."""
        root = self.directory(request.name)
        self.synced.append(request)
        future = self._walks.pop(request, None)
        if future is not None:
            try:
                return await asyncio.wrap_future(future)
            except Exception:
                pass  # walked again below: that walk's error is the one reported
        from ._walk import walk

        return await asyncio.to_thread(walk, root, request)

    def export_target(self, name: str) -> ExportTarget:
        try:
            return self.exports[name]
        except KeyError:
            raise NotFoundError(_missing("export target", name, self.exports)) from None

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
