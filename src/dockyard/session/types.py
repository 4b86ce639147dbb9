"""The seams of the session: what the client serves and what the engine calls.

Client side (implemented by the client, served in-process or over gRPC):

- :class:`SecretStore` — ``get(id) -> bytes``;
- :class:`SshAgentProvider` — byte connections to the client's SSH agents by id;
- :class:`CredentialsSource` — registry credentials by host (docker's config file);
- named directories and export targets are plain values on
  :class:`~dockyard.session.Session`.

Engine side (what a :class:`~dockyard.session.SessionHandle` hands out, whatever the
transport): :class:`FileSyncCaller`, :class:`SecretStore`, :class:`SshForwarder`,
:class:`CredentialsCaller`, :class:`ExportCaller`, :class:`ContentCaller`,
:class:`ShellCaller` (a debug shell on the client's terminal: gRPC only).

Between the two halves of a file sync: :class:`SyncSource`, the sending half as the
receiver drives it (stat entries first, then the content of the entries it asks for).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import NamedTuple, Protocol, TypeAlias, runtime_checkable

from dockyard.core import Digest, Reporter

from ._values import FileStat, SessionCredentials, SyncBase, SyncRequest, SyncResult, WindowSize

__all__ = [
    "ByteChannel",
    "Chunk",
    "Content",
    "ContentCaller",
    "CredentialsCaller",
    "CredentialsLike",
    "CredentialsSource",
    "ExportCaller",
    "ExportStream",
    "FileSyncCaller",
    "LocalFile",
    "SecretStore",
    "ShellCaller",
    "ShellChannel",
    "SshAgentProvider",
    "SshForwarder",
    "SyncSource",
]


@runtime_checkable
class SecretStore(Protocol):
    """Secrets by id.

    ``get`` returns the secret's bytes, read when it is called (a secret is fetched only
    when a step needs it) and kept in memory only. Raises
    :class:`~dockyard.core.NotFoundError` naming the id when there is no such secret, and
    :class:`~dockyard.core.SessionError` when the client cannot be asked. Neither the
    value nor anything derived from it may appear in an error message, a ``repr`` or a
    log.
    """

    async def get(self, id: str) -> bytes: ...


class CredentialsLike(Protocol):
    """Registry credentials: ``dockyard.registry.Credentials`` and
    :class:`~dockyard.session.SessionCredentials` both have this shape."""

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def identity_token(self) -> str: ...

    @property
    def registry_token(self) -> str: ...


@runtime_checkable
class CredentialsSource(Protocol):
    """Client side: credentials for a registry host (``docker.io``, ``127.0.0.1:5000``),
    or ``None`` for anonymous access. ``dockyard.registry.DockerConfigCredentials`` is one.
    May raise a :class:`~dockyard.core.DockyardError` (a broken credential helper); the
    error reaches the engine with its class and message."""

    async def get(self, host: str) -> CredentialsLike | None: ...


@runtime_checkable
class ByteChannel(Protocol):
    """A duplex byte stream (an SSH agent connection).

    ``read`` returns the next bytes available (at most a chunk), ``b""`` once the other
    side has closed its sending half. ``write_eof`` half-closes; ``aclose`` releases
    everything and may be called more than once."""

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SshAgentProvider(Protocol):
    """Client side: the SSH agents it forwards, by id (``default`` when unnamed).

    ``connect`` opens one new connection to the agent ``id``; raises
    :class:`~dockyard.core.NotFoundError` for an unknown id and
    :class:`~dockyard.core.SessionError` when the agent cannot be reached."""

    def ids(self) -> frozenset[str]: ...

    async def connect(self, id: str) -> ByteChannel: ...


class Chunk(NamedTuple):
    """Consecutive bytes of the wanted entry ``id``; ``eof`` ends that entry."""

    id: int
    data: bytes
    eof: bool


class LocalFile(NamedTuple):
    """The content of entry ``id`` is the file ``path`` inside ``root`` on this host:
    an in-process sender hands it over for the receiver to copy in the kernel."""

    id: int
    root: Path
    path: str


Content: TypeAlias = Chunk | LocalFile


@runtime_checkable
class SyncSource(Protocol):
    """The sending half of one directory sync, as the receiver drives it.

    :meth:`stats` yields the tree's entries in batches, in walk order: a directory before
    its children, siblings sorted by name (component-wise order of the paths); an entry's
    id is its index in the whole sequence. After the last batch the receiver calls
    :meth:`fetch` once with the ids of the regular files whose content it wants (in
    increasing order) and consumes what it yields: for each id in turn, its
    :class:`Chunk` values up to one with ``eof``, or one :class:`LocalFile`. Everything
    the source says is untrusted input to the receiver.
    """

    def stats(self) -> AsyncIterator[Sequence[FileStat]]: ...

    def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]: ...


class FileSyncCaller(Protocol):
    """Engine side: bring ``dest`` up to date with a directory the client serves.

    ``dest`` is a directory the receiver keeps between builds (it is created if missing);
    only what changed travels. Paths from the client are contained in ``dest``: hostile
    ones raise :class:`~dockyard.core.PathEscapeError`, a malformed stream
    :class:`~dockyard.core.SessionError`; after an error ``dest`` is in some state between
    the old and the new tree and the next sync repairs it. Progress (bytes and files
    transferred) is reported as ``VertexProgress`` of ``progress_digest``. With
    ``compare=False`` every file's content travels again (``local.differ=none``); only
    unchanged metadata is kept. ``has`` tells whether the client offers a directory.
    ``dest`` may also be a :class:`~dockyard.session.SyncBase`: a new snapshot layer over
    a tree known by its entries, opened only when something changed.
    """

    def has(self, name: str) -> bool: ...

    async def sync(
        self,
        request: SyncRequest,
        dest: Path | SyncBase,
        *,
        reporter: Reporter | None = None,
        progress_digest: str = "",
        compare: bool = True,
    ) -> SyncResult: ...


class SshForwarder(Protocol):
    """Engine side: a local unix socket that forwards to one of the client's agents.

    ``forward`` yields the socket's path (in a private directory, the socket owned by
    ``uid``:``gid`` with ``mode``); each connection to it is relayed to the client's
    agent ``id``. Leaving the context closes the socket and every relayed connection.
    Raises :class:`~dockyard.core.NotFoundError` when the client offers no agent ``id``.
    """

    def has(self, id: str) -> bool: ...

    def forward(
        self, id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600
    ) -> AbstractAsyncContextManager[Path]: ...


class CredentialsCaller(Protocol):
    """Engine side: ask the client for a registry's credentials (``None``: anonymous)."""

    async def get(self, host: str) -> SessionCredentials | None: ...


class ExportStream(Protocol):
    """Bytes going to an export target of the client (a tarball). Written in order;
    the target is complete only when the context that handed it out exits cleanly."""

    async def write(self, data: bytes) -> None: ...


class ExportCaller(Protocol):
    """Engine side: outputs written to the client's chosen destinations.

    ``send_directory`` syncs the tree ``source`` (on the engine's host) into the
    client's directory target ``target`` (incrementally, contained in the client's
    destination); with ``prefix`` (one plain name, such as ``linux_amd64``) the tree
    goes into that sub-directory of the target (BuildKit's platform split: the entries
    travel under it, so any client takes them). ``open_stream`` hands out a stream into the client's file target
    ``target``: leaving the context normally commits it (the client renames its temp
    file into place), leaving with an exception discards it. Both raise
    :class:`~dockyard.core.NotFoundError` for a target the client did not offer.
    """

    def has(self, target: str) -> bool: ...

    async def send_directory(
        self,
        target: str,
        source: Path,
        *,
        reporter: Reporter | None = None,
        progress_digest: str = "",
        prefix: str = "",
    ) -> SyncResult: ...

    def open_stream(self, target: str) -> AbstractAsyncContextManager[ExportStream]: ...


class ContentCaller(Protocol):
    """Engine side: the content stores the client offers — OCI layout directories of
    the client's host, known to the engine by store id only (``--cache-from/--cache-to
    type=local``, ``oci-layout://`` contexts through a daemon).

    Blobs are named by ``sha256:`` digest. Whatever comes from the client is checked
    here: :meth:`fetch` and :meth:`read` hand on bytes as they arrive but raise
    :class:`~dockyard.core.ContentError` unless exactly ``size`` bytes of digest
    ``digest`` arrived (more is refused at once), so a caller trusts nothing before
    they return. :meth:`push` sends a blob of the engine's host; the client checks it
    and publishes it only when complete. :meth:`commit` asks the client to name a
    manifest in the store's ``index.json`` (with the tag the client chose); the client
    refuses unless every blob below it is there. A store the client does not offer (or
    offers read-only, for :meth:`push` and :meth:`commit`) raises
    :class:`~dockyard.core.NotFoundError` naming it.
    """

    def has(self, store: str) -> bool: ...

    def writable(self, store: str) -> bool: ...

    async def info(self, store: str, digest: Digest) -> int | None: ...

    async def fetch(
        self,
        store: str,
        digest: Digest,
        size: int,
        sink: Callable[[bytes], Awaitable[None]],
    ) -> None: ...

    async def read(self, store: str, digest: Digest, size: int, *, limit: int) -> bytes: ...

    async def push(self, store: str, digest: Digest, size: int, source: Path) -> bool: ...

    async def commit(self, store: str, media_type: str, digest: Digest, size: int) -> None: ...


class ShellChannel(Protocol):
    """Engine side: one debug shell's connection to the client's terminal (see
    :class:`ShellCaller`).

    ``tty``: the user's input is a terminal (give the process a pseudo-terminal);
    ``size``: its window size, when known. :meth:`receive` returns what the user sends
    next: input bytes; ``b""`` once the input ended (window sizes may follow); a
    :class:`~dockyard.session.WindowSize` after the window changed; ``None`` once the
    client closed the shell's stream (the process must end). :meth:`output` sends what
    the process wrote on ``fd`` (1: stdout, 2: stderr; a pty's output is all 1).
    :meth:`started` says the process runs: the client reads its input only from then on
    (keys typed before reach the process, in order; none is read for a process that
    never ran). :meth:`end` is the last thing sent: the process's exit status (``None``:
    it did not run) and a line the client shows once its terminal is restored. Calls on
    a broken stream raise :class:`~dockyard.core.SessionError`.
    """

    @property
    def tty(self) -> bool: ...

    @property
    def size(self) -> WindowSize | None: ...

    async def receive(self) -> bytes | WindowSize | None: ...

    async def started(self) -> None: ...

    async def output(self, fd: int, data: bytes) -> None: ...

    async def end(self, status: int | None, notice: str = "") -> None: ...


class ShellCaller(Protocol):
    """Engine side: the client's terminal for a debug shell (``--invoke`` through a
    daemon; the process runs on the engine's host, its streams are the client's).

    ``has``: the client offers one. ``open`` has the client show ``line`` (what is
    about to run) and yields the :class:`ShellChannel` once the client attached its
    terminal; leaving the context ends the shell's stream (the client restores its
    terminal). Only the session that asked for the build is asked: no other client can
    attach to its shell. Raises :class:`~dockyard.core.NotFoundError` when the client
    offers no terminal (and over the in-process transport, where the engine gives a
    shell its own streams instead), :class:`~dockyard.core.SessionError` when the
    client does not answer or is gone.
    """

    def has(self) -> bool: ...

    def open(self, line: str) -> AbstractAsyncContextManager[ShellChannel]: ...
