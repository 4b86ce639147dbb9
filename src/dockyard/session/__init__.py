"""Layer 3: the session — the long-running channel of one client, in which the client
serves and the engine asks: directories (incremental file sync), secrets, SSH agents,
registry credentials, and files exported back to the client.

Client side: a :class:`Session` holds what the client serves (named directories,
:class:`Secrets`, :class:`SshAgents`, a credentials source, export targets, and OCI
layout directories as content stores: :class:`LayoutStore`).
Engine side: a :class:`SessionManager` keeps the attached sessions; each
:class:`SessionHandle` hands out callers — ``filesync``, ``secrets``, ``ssh``,
``credentials``, ``exports``, ``content`` — that work the same whatever the transport:

- in-process (embedded engine): ``manager.register(session)`` — direct calls, file
  content copied in the kernel;
- over gRPC (a daemon): the client dials and runs :func:`attach`; the daemon serves
  :class:`SessionService`. Loading these imports grpc; nothing else here does.

The seams are in :mod:`dockyard.session.types`.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._values import (
    FileStat,
    SessionCredentials,
    SessionInfo,
    StatKey,
    SyncBase,
    SyncRequest,
    SyncResult,
    UserTerminal,
    WindowSize,
    stat_key,
)
from .types import (
    ByteChannel,
    Chunk,
    ContentCaller,
    CredentialsCaller,
    CredentialsLike,
    CredentialsSource,
    ExportCaller,
    ExportStream,
    FileSyncCaller,
    LocalFile,
    SecretStore,
    ShellCaller,
    ShellChannel,
    SshAgentProvider,
    SshForwarder,
    SyncSource,
)

if TYPE_CHECKING:
    from ._content import BlobWriter, LayoutEntry, LayoutStore, blob_digest
    from ._export import DirectoryTarget, ExportTarget, FileSink, FileTarget
    from ._grpc_client import Attachment, attach
    from ._grpc_common import CHANNEL_OPTIONS, SERVER_OPTIONS
    from ._grpc_server import SessionService
    from ._local import LocalSyncSource
    from ._manager import Peer, SessionHandle, SessionManager
    from ._receive import Receiver, receive
    from ._secrets import Secrets, SecretSource
    from ._session import Session, new_session_id
    from ._ssh import SshAgents, SshSpec, StreamChannel, forwarding_socket
    from ._walk import walk

# Each part loads on first use: a client loads the sender's side (walk, sync source),
# an engine the receiver's; secrets, SSH agents and grpc only when used.
_LAZY = {
    "BlobWriter": "._content",
    "LayoutEntry": "._content",
    "LayoutStore": "._content",
    "blob_digest": "._content",
    "DirectoryTarget": "._export",
    "ExportTarget": "._export",
    "FileSink": "._export",
    "FileTarget": "._export",
    "Attachment": "._grpc_client",
    "attach": "._grpc_client",
    "CHANNEL_OPTIONS": "._grpc_common",
    "SERVER_OPTIONS": "._grpc_common",
    "SessionService": "._grpc_server",
    "LocalSyncSource": "._local",
    "Peer": "._manager",
    "SessionHandle": "._manager",
    "SessionManager": "._manager",
    "Receiver": "._receive",
    "receive": "._receive",
    "Secrets": "._secrets",
    "SecretSource": "._secrets",
    "Session": "._session",
    "new_session_id": "._session",
    "SshAgents": "._ssh",
    "SshSpec": "._ssh",
    "StreamChannel": "._ssh",
    "forwarding_socket": "._ssh",
    "walk": "._walk",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CHANNEL_OPTIONS",
    "SERVER_OPTIONS",
    "Attachment",
    "BlobWriter",
    "ByteChannel",
    "Chunk",
    "ContentCaller",
    "CredentialsCaller",
    "CredentialsLike",
    "CredentialsSource",
    "DirectoryTarget",
    "ExportCaller",
    "ExportStream",
    "ExportTarget",
    "FileSink",
    "FileStat",
    "FileSyncCaller",
    "FileTarget",
    "LayoutEntry",
    "LayoutStore",
    "LocalFile",
    "LocalSyncSource",
    "Peer",
    "Receiver",
    "SecretSource",
    "SecretStore",
    "Secrets",
    "Session",
    "SessionCredentials",
    "SessionHandle",
    "SessionInfo",
    "SessionManager",
    "SessionService",
    "ShellCaller",
    "ShellChannel",
    "SshAgentProvider",
    "SshAgents",
    "SshForwarder",
    "SshSpec",
    "StatKey",
    "StreamChannel",
    "SyncBase",
    "SyncRequest",
    "SyncResult",
    "SyncSource",
    "UserTerminal",
    "WindowSize",
    "attach",
    "blob_digest",
    "forwarding_socket",
    "new_session_id",
    "receive",
    "stat_key",
    "walk",
]
