"""The client's side of a session: what it serves to the engine."""

from __future__ import annotations

import secrets as _random
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from types import MappingProxyType

from dockyard.core import NotFoundError, UsageError

from ._export import ExportTarget
from ._values import SessionInfo
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
    secret or a credential until the engine asks for it.
    """

    __slots__ = (
        "credentials",
        "directories",
        "exports",
        "id",
        "name",
        "secrets",
        "shared_key",
        "ssh",
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
