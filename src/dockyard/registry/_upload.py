"""Uploading one blob: ``POST`` a session, then one ``PUT`` or ``PATCH`` chunks and a
closing ``PUT``; the registry checks the digest.

:func:`stream_upload` sends a blob whose digest is not known yet (it is being made while
it is sent): one streamed ``PATCH`` (chunked transfer encoding, no ``Content-Range``),
then the closing ``PUT`` with ``?digest=`` once the digest is known. The distribution
spec allows the digest only on that closing request, so nothing else needs it early."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from dockyard.core import ContentError, Digest, RegistryError
from dockyard.oci import Descriptor

from ._config import Endpoint
from ._http import Body, HttpSession, error_detail, status_error
from ._reference import Reference
from .types import BlobReader

if TYPE_CHECKING:
    import httpx

__all__ = ["BlobUpload", "stream_upload"]


class BlobUpload:
    """One attempt at uploading ``descriptor`` to the repository of ``ref``.

    Every request is sent once (``attempts=1``): after a failure the state of the
    registry's upload session is unknown, so the caller starts a new upload instead.
    """

    def __init__(
        self,
        session: HttpSession,
        endpoint: Endpoint,
        ref: Reference,
        descriptor: Descriptor,
        scopes: tuple[str, ...],
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.ref = ref
        self.descriptor = descriptor
        self.scopes = scopes
        self.on_progress = on_progress
        self.what = f"uploading blob {descriptor.digest} to {ref.name}"

    async def start(self) -> httpx.URL:
        """A new upload session's location."""
        response = await self.session.request(
            self.endpoint, "POST", f"/v2/{self.ref.path}/blobs/uploads/", scopes=self.scopes
        )
        if response.status_code != 202 or "location" not in response.headers:
            raise await status_error(
                response, self.endpoint.host, f"starting an upload to {self.ref.name}"
            )
        await response.aclose()
        return response.url.join(response.headers["location"])

    def _counting(self, reader: BlobReader) -> Body:
        counters = self.session.counters
        size = self.descriptor.size
        what = self.what
        on_progress = self.on_progress

        def body() -> AsyncIterator[bytes]:
            async def gen() -> AsyncIterator[bytes]:
                sent = 0
                async for chunk in reader.read(0):
                    sent += len(chunk)
                    if sent > size:
                        raise ContentError(f"{what}: the content is larger than {size} bytes")
                    counters.bytes_sent += len(chunk)
                    if on_progress is not None:
                        on_progress(sent)
                    yield chunk
                if sent != size:
                    raise ContentError(f"{what}: the content is {sent} bytes, not {size}")

            return gen()

        return body

    async def whole(self, reader: BlobReader, location: httpx.URL) -> None:
        """The whole blob in one ``PUT``, streamed from ``reader``."""
        response = await self.session.request(
            self.endpoint,
            "PUT",
            location.copy_merge_params({"digest": str(self.descriptor.digest)}),
            scopes=self.scopes,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(self.descriptor.size),
            },
            body=self._counting(reader),
            attempts=1,
        )
        await self._finish(response)

    async def chunks(self, reader: BlobReader, location: httpx.URL, chunk_size: int) -> None:
        """``PATCH`` requests of ``chunk_size`` bytes, then a closing ``PUT``."""
        counters = self.session.counters
        size = self.descriptor.size
        offset = 0
        buffer = bytearray()

        async def send(chunk: bytes) -> None:
            nonlocal offset, location
            response = await self.session.request(
                self.endpoint,
                "PATCH",
                location,
                scopes=self.scopes,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Length": str(len(chunk)),
                },
                body=lambda: chunk,
                attempts=1,
            )
            if response.status_code != 202:
                raise await status_error(response, self.endpoint.host, self.what)
            await response.aclose()
            if "location" in response.headers:
                location = response.url.join(response.headers["location"])
            offset += len(chunk)
            counters.bytes_sent += len(chunk)
            if self.on_progress is not None:
                self.on_progress(offset)

        async for piece in reader.read(0):
            buffer += piece
            if offset + len(buffer) > size:
                raise ContentError(f"{self.what}: the content is larger than {size} bytes")
            while len(buffer) >= chunk_size:
                chunk = bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
                await send(chunk)
        if buffer:
            await send(bytes(buffer))
        if offset != size:
            raise ContentError(f"{self.what}: the content is {offset} bytes, not {size}")
        await self.close(location)

    async def close(self, location: httpx.URL) -> None:
        """The closing ``PUT`` with the digest, after everything was sent."""
        response = await self.session.request(
            self.endpoint,
            "PUT",
            location.copy_merge_params({"digest": str(self.descriptor.digest)}),
            scopes=self.scopes,
            headers={"Content-Length": "0"},
            attempts=1,
        )
        await self._finish(response)

    async def _finish(self, response: httpx.Response) -> None:
        host = self.endpoint.host
        if response.status_code == 400:
            detail = await error_detail(response)
            if "DIGEST_INVALID" in detail or "SIZE_INVALID" in detail:
                raise ContentError(f"{self.what}: registry {host} rejected it: {detail}")
            raise RegistryError(f"{self.what}: registry {host} answered {detail}")
        if response.status_code not in (201, 204):
            raise await status_error(response, host, self.what)
        await response.aclose()
        stored = response.headers.get("docker-content-digest", "")
        if stored and stored != self.descriptor.digest:
            raise ContentError(f"{self.what}: registry {host} stored it as {stored}")


async def stream_upload(
    session: HttpSession,
    endpoint: Endpoint,
    ref: Reference,
    scopes: tuple[str, ...],
    chunks: AsyncIterator[bytes],
    descriptor: Awaitable[Descriptor],
    on_progress: Callable[[int], None] | None = None,
) -> Descriptor:
    """Upload a blob while it is made: ``chunks`` are its bytes as they come, in one
    streamed ``PATCH``; ``descriptor`` is awaited once they ended, and closes the upload
    (the registry checks digest and size). One attempt, nothing retried (the bytes cannot
    be sent again); on any failure the upload session is deleted (best effort) and the
    error raised, so the registry is never left with a blob from a partial stream."""
    upload = BlobUpload(
        session,
        endpoint,
        ref,
        Descriptor(media_type="application/octet-stream", digest=_PENDING, size=0),
        scopes,
        on_progress,
    )
    what = f"streaming a blob to {ref.name}"
    location = await upload.start()
    counters = session.counters
    sent = 0
    used = False

    def body() -> AsyncIterator[bytes]:
        nonlocal used
        if used:  # an auth retry would send the stream twice: give up instead
            return _refuse(what)
        used = True

        async def gen() -> AsyncIterator[bytes]:
            nonlocal sent
            async for chunk in chunks:
                sent += len(chunk)
                counters.bytes_sent += len(chunk)
                if on_progress is not None:
                    on_progress(sent)
                yield chunk

        return gen()

    done = False
    try:
        response = await session.request(
            endpoint,
            "PATCH",
            location,
            scopes=scopes,
            headers={"Content-Type": "application/octet-stream"},
            body=body,
            attempts=1,
        )
        if response.status_code != 202:
            raise await status_error(response, endpoint.host, what)
        await response.aclose()
        if "location" in response.headers:
            location = response.url.join(response.headers["location"])
        final = await descriptor
        if sent != final.size:
            raise ContentError(f"{what}: {sent} bytes sent, the blob has {final.size}")
        upload.descriptor = final
        upload.what = f"uploading blob {final.digest} to {ref.name}"
        await upload.close(location)
        done = True
        return final
    except asyncio.CancelledError:
        done = True  # cancelled: no time for a goodbye; the registry expires the session
        raise
    finally:
        if not done:
            with contextlib.suppress(Exception):
                response = await session.request(
                    endpoint, "DELETE", location, scopes=scopes, attempts=1
                )
                await response.aclose()


_PENDING = Digest("sha256:" + "0" * 64)


async def _refuse(what: str) -> AsyncIterator[bytes]:
    if what:
        raise ContentError(f"{what}: the registry asked for the stream twice")
    yield b""  # pragma: no cover - makes this an async generator
