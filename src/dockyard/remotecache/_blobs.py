"""The blobs of an imported remote cache (a registry's, an S3 bucket's): downloaded into
the content store when a result is used, verified, once per blob whoever asks."""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import Callable

from dockyard.content import ContentStore
from dockyard.oci import Descriptor
from dockyard.solver import VertexContext
from dockyard.source import BlobStream, StoreSink

__all__ = ["DownloadedBlobs"]


class DownloadedBlobs(abc.ABC):
    """``fetch``/``store`` of a remote cache's blobs into ``content``; a subclass says how
    one blob is downloaded (:meth:`_download_into`) and what :meth:`aclose` closes."""

    def __init__(self, content: ContentStore) -> None:
        self._content = content
        self._downloads: dict[str, asyncio.Future[None]] = {}

    async def fetch(self, desc: Descriptor, lease: str, ctx: VertexContext) -> BlobStream:
        await self._store(desc, lease, ctx)
        return BlobStream(open=functools.partial(self._content.open, desc.digest), verified=True)

    async def store(self, desc: Descriptor, lease: str) -> None:
        await self._store(desc, lease, None)

    async def aclose(self) -> None:
        return None

    @abc.abstractmethod
    async def _download_into(
        self, desc: Descriptor, sink: StoreSink, on_bytes: Callable[[int], None]
    ) -> None:
        """Download the blob ``desc`` into ``sink``, reporting bytes to ``on_bytes``."""

    async def _store(self, desc: Descriptor, lease: str, ctx: VertexContext | None) -> None:
        content = self._content
        content.add_to_lease(lease, desc.digest)
        if content.has(desc.digest):
            return
        key = str(desc.digest)
        pending = self._downloads.get(key)
        if pending is None:  # one download per blob, whoever wants it
            task = asyncio.ensure_future(self._download(desc, lease, ctx))
            self._downloads[key] = task
            task.add_done_callback(lambda _t: self._downloads.pop(key, None))
            pending = task
        await asyncio.shield(pending)
        content.add_to_lease(lease, desc.digest)

    async def _download(self, desc: Descriptor, lease: str, ctx: VertexContext | None) -> None:
        def on_bytes(n: int) -> None:
            if ctx is not None:
                ctx.progress(str(desc.digest), f"pulling {desc.digest}", n, total=desc.size)

        sink = StoreSink(self._content, digest=desc.digest, size=desc.size, lease=lease)
        await self._download_into(desc, sink, on_bytes)
