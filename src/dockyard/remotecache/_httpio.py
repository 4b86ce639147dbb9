"""Pieces the object-store clients (:mod:`._s3`, :mod:`._azblob`) share over httpx:
retries with jittered backoff, bodies read with a bound, downloads verified into a sink
and tried again when cut short, server text made safe for messages, files read in
chunks off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import DockyardError

if TYPE_CHECKING:
    import httpx

    from dockyard.registry import BlobSink

__all__ = [
    "CHUNK",
    "MAX_BACKOFF",
    "SMALL_BODY",
    "Retry",
    "backoff",
    "download_verified",
    "file_sha256",
    "last_modified",
    "pread",
    "printable",
    "read_file",
    "read_limited",
    "read_small",
    "reason",
    "send_retrying",
    "xml_text",
]

CHUNK = 1 << 20
"""What a file read or a download takes at once."""
SMALL_BODY = 1 << 20
"""The most of an error or XML answer's body that is read."""


def last_modified(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return 0.0


def printable(text: str, limit: int) -> str:
    """A server's text for a message: control and format characters (terminal escapes,
    bidi overrides) escaped, at most ``limit`` characters."""
    import unicodedata

    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(
        c if c.isprintable() and unicodedata.category(c) != "Cf" else repr(c)[1:-1] for c in text
    )


async def read_small(response: httpx.Response) -> bytes:
    """An error or an XML answer's body, at most :data:`SMALL_BODY` bytes (a broken or
    hostile endpoint's endless body is cut, not held in memory; what S3 sends is ~1 KiB)."""
    import httpx

    try:
        return response.content[:SMALL_BODY]  # already read (a transport's own body)
    except httpx.ResponseNotRead:
        pass
    out = bytearray()
    async for chunk in response.aiter_raw():
        out += chunk
        if len(out) >= SMALL_BODY:
            del out[SMALL_BODY:]
            break
    return bytes(out)


def xml_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = bytearray()
        while len(out) < length:
            chunk = os.pread(fd, min(CHUNK, length - len(out)), offset + len(out))
            if not chunk:
                raise DockyardError(f"{path}: shorter than {offset + length} bytes")
            out += chunk
        return bytes(out)
    finally:
        os.close(fd)


async def read_file(
    path: Path, offset: int, length: int, on_progress: Callable[[int], None] | None
) -> AsyncIterator[bytes]:
    done = 0
    while done < length:
        chunk = await asyncio.to_thread(pread, path, offset + done, min(CHUNK, length - done))
        done += len(chunk)
        yield chunk
        if on_progress is not None:
            on_progress(done)


class Retry(Exception):
    """A failure worth another try; ``error`` is what is raised after the last one."""

    def __init__(self, error: DockyardError) -> None:
        super().__init__(str(error))
        self.error = error


MAX_BACKOFF = 20.0
"""The longest wait between two tries."""


async def backoff(attempt: int, base: float) -> None:
    """Wait before try ``attempt + 1``: a random time up to ``base`` × 2^(attempt-1)
    seconds, at most :data:`MAX_BACKOFF` (the AWS and Azure SDKs' jittered backoff)."""
    import random

    await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF, base * 2 ** (attempt - 1))))


async def read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
    """A whole body of at most ``limit`` bytes (more: a :class:`DockyardError` naming
    ``what``)."""
    out = bytearray()
    async for chunk in response.aiter_raw():
        out += chunk
        if len(out) > limit:
            raise DockyardError(f"{what}: larger than {limit} bytes")
    return bytes(out)


async def download_verified(
    fetch: Callable[[], contextlib.AbstractAsyncContextManager[httpx.Response]],
    sink: BlobSink,
    *,
    digest: str,
    size: int,
    what: str,
    missing: Callable[[httpx.Response], Awaitable[None]],
    max_attempts: int,
    backoff_base: float,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """The body of ``fetch()``'s response into ``sink``, committed with ``digest``/``size``
    (which its commit verifies; aborted on any failure). A 404 is ``missing`` (which
    raises); a transfer cut short is tried again from the start, ``max_attempts`` times
    in all. ``what`` (``s3 GET s3://B/K``) names the request in errors."""
    import httpx

    from dockyard.core import Digest

    try:
        attempt = 0
        while True:
            attempt += 1
            received = 0
            try:
                async with fetch() as response:
                    if response.status_code == 404:
                        await missing(response)
                    async for chunk in response.aiter_raw(CHUNK):
                        received += len(chunk)
                        if received > size:
                            raise DockyardError(f"{what}: more than {size} bytes")
                        await sink.write(chunk)
                        if on_progress is not None:
                            on_progress(received)
                break
            except httpx.TransportError as exc:
                if attempt >= max_attempts:
                    raise DockyardError(f"{what}: transfer failed: {reason(exc)}") from None
                await sink.reset()
                await backoff(attempt, backoff_base)
        await sink.commit(Digest.parse(digest), size)
    except BaseException:
        await sink.abort()
        raise


@contextlib.asynccontextmanager
async def send_retrying(
    http: httpx.AsyncClient,
    make: Callable[[], Awaitable[httpx.Request]],
    *,
    unreachable: Callable[[str], DockyardError],
    failure: Callable[[httpx.Response, bytes], DockyardError | Retry],
    ok_missing: bool,
    max_attempts: int,
    backoff_base: float,
) -> AsyncIterator[httpx.Response]:
    """One request (``make()`` builds it afresh, signed, for each try), its response
    streaming in the block: a 2xx, or a 404 with ``ok_missing``. A connection error is
    tried again (then ``unreachable(reason)`` is raised), an error status becomes
    ``failure(response, its body)``: raised, or tried again when it is a :class:`Retry`;
    ``max_attempts`` tries in all, with :func:`backoff` between them."""
    import httpx

    attempt = 0
    while True:
        attempt += 1
        request = await make()
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            if attempt >= max_attempts:
                raise unreachable(reason(exc)) from None
            await backoff(attempt, backoff_base)
            continue
        try:
            status = response.status_code
            if status >= 300 and not (status == 404 and ok_missing):
                failed = failure(response, await read_small(response))
                if isinstance(failed, Retry):
                    if attempt >= max_attempts:
                        raise failed.error
                    await response.aclose()
                    await backoff(attempt, backoff_base)
                    continue
                raise failed
            yield response
            return
        finally:
            await response.aclose()
