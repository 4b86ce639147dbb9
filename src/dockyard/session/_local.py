"""The in-process transport: the engine calls the client's :class:`Session` directly.

File content is never read into Python here: the receiver copies each changed file from
the client's directory with ``copy_file_range`` (in the kernel, a reflink where the file
system can).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.core import Digest, NotFoundError, Reporter

from ._export import DirectoryTarget, FileSink, FileTarget
from ._receive import receive
from ._session import Session
from ._values import FileStat, SessionCredentials, SessionInfo, SyncRequest, SyncResult
from ._walk import under_prefix, walk
from .types import (
    ByteChannel,
    Content,
    CredentialsLike,
    ExportStream,
    LocalFile,
    ShellChannel,
    SyncSource,
)

if TYPE_CHECKING:
    from ._content import BlobWriter
    from ._manager import ByteReader

__all__ = ["LocalPeer", "LocalSyncSource", "to_session_credentials"]

_LOCAL_BATCH = 256


class LocalSyncSource:
    """A :class:`~dockyard.session.types.SyncSource` over a directory on this host (the
    ``session``'s directory of ``request``, walked by :meth:`Session.walk`, when given)."""

    def __init__(
        self,
        root: Path,
        request: SyncRequest | None = None,
        session: Session | None = None,
        *,
        prefix: str = "",
    ) -> None:
        self._root = root
        self._request = request
        self._session = session
        self._prefix = prefix
        self._paths: list[str] = []  # what each entry is read from, relative to root

    async def stats(self) -> AsyncIterator[Sequence[FileStat]]:
        if self._session is not None and self._request is not None:
            entries = await self._session.walk(self._request)
        else:
            entries = await asyncio.to_thread(walk, self._root, self._request)
        self._paths = [e.path for e in entries]
        if self._prefix:
            entries = await asyncio.to_thread(under_prefix, self._root, entries, self._prefix)
            self._paths.insert(0, "")
        yield entries

    async def fetch(self, ids: Sequence[int]) -> AsyncIterator[Sequence[Content]]:
        paths = self._paths
        for start in range(0, len(ids), _LOCAL_BATCH):
            yield [
                LocalFile(i, self._root, paths[i] if 0 <= i < len(paths) else "")
                for i in ids[start : start + _LOCAL_BATCH]
            ]


def to_session_credentials(creds: CredentialsLike | None) -> SessionCredentials | None:
    if creds is None:
        return None
    return SessionCredentials(
        username=creds.username,
        password=creds.password,
        identity_token=creds.identity_token,
        registry_token=creds.registry_token,
    )


class LocalPeer:
    """The engine's view of a :class:`Session` living in the same process."""

    transport = "in-process"

    def __init__(self, session: Session) -> None:
        self.session = session
        self.info: SessionInfo = session.info()

    async def get_secret(self, id: str) -> bytes:
        return await self.session.get_secret(id)

    async def get_credentials(self, host: str) -> SessionCredentials | None:
        return to_session_credentials(await self.session.get_credentials(host))

    @contextlib.asynccontextmanager
    async def open_sync(self, request: SyncRequest) -> AsyncIterator[SyncSource]:
        try:
            yield LocalSyncSource(self.session.directory(request.name), request, self.session)
        finally:
            self.session.sync_ended()

    async def connect_ssh(self, id: str) -> ByteChannel:
        return await self.session.connect_ssh(id)

    async def export_directory(
        self,
        target: str,
        source: Path,
        reporter: Reporter | None,
        progress_digest: str,
        prefix: str = "",
    ) -> SyncResult:
        dest = self.session.export_target(target)
        if not isinstance(dest, DirectoryTarget):
            raise NotFoundError(f"export target {target!r} of the client is not a directory")
        return await receive(
            LocalSyncSource(source, prefix=prefix),
            dest.path,
            name=target,
            reporter=reporter,
            progress_digest=progress_digest,
            merge=True,
        )

    @contextlib.asynccontextmanager
    async def export_stream(self, target: str) -> AsyncIterator[ExportStream]:
        dest = self.session.export_target(target)
        if not isinstance(dest, FileTarget):
            raise NotFoundError(f"export target {target!r} of the client is not a file")
        sink = FileSink(dest)
        try:
            yield sink
            await sink.commit()
        except BaseException:
            sink.abort()
            raise

    async def content_info(self, store: str, digest: Digest) -> int | None:
        layout = self.session.content_store(store)
        return await asyncio.to_thread(layout.blob_size, digest)

    @contextlib.asynccontextmanager
    async def content_read(
        self, store: str, digest: Digest, size: int
    ) -> AsyncIterator[ByteReader]:
        layout = self.session.content_store(store)
        f = await asyncio.to_thread(layout.open_blob, digest)
        try:
            yield _FileReader(f)
        finally:
            f.close()

    @contextlib.asynccontextmanager
    async def content_write(
        self, store: str, digest: Digest, size: int
    ) -> AsyncIterator[ExportStream]:
        writer = self.session.content_store(store, write=True).blob_writer(digest, size)
        try:
            yield _BlobSink(writer)
            await asyncio.to_thread(writer.commit)
        except BaseException:
            writer.abort()
            raise

    async def content_commit(self, store: str, media_type: str, digest: Digest, size: int) -> None:
        layout = self.session.content_store(store, write=True)
        await asyncio.to_thread(layout.commit, media_type, digest, size)

    def open_shell(self, line: str) -> contextlib.AbstractAsyncContextManager[ShellChannel]:
        # an engine in the client's process gives a debug shell the client's streams
        # themselves (dockyard.llbsolver.DebugShell with a Stdio): nothing to relay
        raise NotFoundError(
            "an in-process session relays no terminal (the engine runs a debug shell on "
            "this process's own streams)"
        )

    async def aclose(self) -> None:
        return None


_READ_CHUNK = 1 << 20


class _FileReader:
    """A blob file of the client read in a thread, a chunk at a time."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    async def read(self) -> bytes:
        return await asyncio.to_thread(self._f.read, _READ_CHUNK)


class _BlobSink:
    """Bytes into a :class:`~dockyard.session._content.BlobWriter`, in a thread."""

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = writer

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._writer.write, data)
