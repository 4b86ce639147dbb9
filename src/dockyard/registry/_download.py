"""Downloading blobs: streamed, hashed on the way, resumed with ranges, verified."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

from dockyard.core import ContentError, Digest, NotFoundError
from dockyard.core.headers import header_int
from dockyard.oci import Descriptor

from ._challenge import repository_scope
from ._config import Endpoint
from ._direct import DIRECT_MIN_SIZE, DirectResponse, DirectTransportError
from ._http import HttpSession, iter_raw, status_error
from ._reference import Reference
from ._retry import RetryPolicy, TransientRegistryError
from .types import BlobSink

if TYPE_CHECKING:
    import httpx

__all__ = ["Intake", "blob_get", "blob_stream", "download", "range_start", "verify_blob"]

_BATCH = 1 << 20  # hash and write in 1 MiB steps (measured best of 64 KiB to 4 MiB)

#: Stream blob bodies over :mod:`._direct` where it applies (off: httpx for all; the
#: in-process A/B of bench/README.md "Pull (fifth pass)" flips it).
DIRECT = True


async def blob_get(
    session: HttpSession,
    endpoint: Endpoint,
    ref: Reference,
    descriptor: Descriptor,
    headers: Mapping[str, str],
) -> httpx.Response:
    """``GET`` a blob (``headers`` may ask for a range); 404 → NotFoundError."""
    response = await session.request(
        endpoint,
        "GET",
        f"/v2/{ref.path}/blobs/{descriptor.digest}",
        scopes=(repository_scope(ref.path, ["pull"]),),
        headers={"Accept-Encoding": "identity", **headers},
        stream=True,
    )
    await _refused(response, endpoint, ref, descriptor)
    return response


async def _refused(
    response: httpx.Response | DirectResponse,
    endpoint: Endpoint,
    ref: Reference,
    descriptor: Descriptor,
) -> None:
    """Raise for a blob ``GET`` answered neither 200 nor 206 (404: NotFoundError)."""
    if response.status_code == 404:
        await response.aclose()
        raise NotFoundError(
            f"blob {descriptor.digest} of image {ref.familiar()} not found on registry "
            f"{endpoint.host}"
        )
    if response.status_code not in (200, 206):
        assert not isinstance(response, DirectResponse)  # it streams 200 and 206 only
        raise await status_error(
            response, endpoint.host, f"blob {descriptor.digest} of {ref.familiar()}"
        )


async def blob_stream(
    session: HttpSession,
    endpoint: Endpoint,
    ref: Reference,
    descriptor: Descriptor,
    headers: Mapping[str, str],
) -> httpx.Response | DirectResponse:
    """:func:`blob_get` for a blob to stream: over the direct path (:mod:`._direct`, a
    thread of its own reading large pieces) when it applies, else through httpx."""
    response: httpx.Response | DirectResponse | None = None
    if DIRECT and descriptor.size >= DIRECT_MIN_SIZE:
        response = await session.get_direct(
            endpoint,
            f"/v2/{ref.path}/blobs/{descriptor.digest}",
            scopes=(repository_scope(ref.path, ["pull"]),),
            headers={"Accept-Encoding": "identity", **headers},
        )
    if response is None:
        return await blob_get(session, endpoint, ref, descriptor, headers)
    await _refused(response, endpoint, ref, descriptor)
    return response


def _body(response: httpx.Response | DirectResponse) -> AsyncIterator[bytes]:
    if isinstance(response, DirectResponse):
        return response.chunks()
    return iter_raw(response)


async def download(
    session: HttpSession,
    retry: RetryPolicy,
    endpoint: Endpoint,
    ref: Reference,
    descriptor: Descriptor,
    sink: BlobSink,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Stream the blob into ``sink`` (not committed here), resuming broken transfers
    with ``Range`` requests; raises ContentError when the digest does not match."""
    import httpx

    counters = session.counters
    # a sink whose commit checks digest and size itself (the content store's) needs no
    # second hash of every byte here
    intake = Intake(
        descriptor.digest, sink, on_progress, hashed=not getattr(sink, "verifies_digest", False)
    )
    failures = 0
    what = f"blob {descriptor.digest} of {ref.familiar()}"
    while True:
        written = intake.received
        headers = {"Range": f"bytes={written}-"} if written else {}
        response = await blob_stream(session, endpoint, ref, descriptor, headers)
        problem = ""
        try:
            if written:
                start = range_start(response)
                if start == written:
                    counters.resumed_downloads += 1
                else:
                    # The registry ignored the range (or answered another one).
                    counters.restarted_downloads += 1
                    await intake.reset()
                    if start is not None:
                        problem = "the registry answered a different range"
                        raise Restart
            async for chunk in _body(response):
                if intake.received + len(chunk) > descriptor.size:
                    raise ContentError(
                        f"{what} is larger than the {descriptor.size} bytes the manifest says"
                    )
                counters.bytes_received += len(chunk)
                await intake.add(chunk)
            if intake.received < descriptor.size:
                problem = f"the body ended after {intake.received} of {descriptor.size} bytes"
        except (httpx.TransportError, DirectTransportError) as exc:
            problem = (
                f"the connection broke after {intake.received} bytes ({exc or type(exc).__name__})"
            )
        except Restart:
            pass
        finally:
            await response.aclose()
        if not problem:
            break
        failures += 1
        if failures >= retry.attempts:
            await intake.close()
            raise TransientRegistryError(
                f"{what}: download from registry {endpoint.host} failed: {problem}"
            )
        counters.retries += 1
        await asyncio.sleep(retry.delay(failures - 1))
    actual = await intake.digest()
    if actual is not None and actual != descriptor.digest:
        raise ContentError(
            f"{what} does not match its digest (the content from {endpoint.host} is {actual})"
        )


class Intake:
    """Takes a download's chunks: batches them, hashes each batch in a worker thread while
    the next one arrives (hashlib releases the GIL), and hands batches to the sink in
    order. Hashing in the event loop would halve the throughput on loopback."""

    __slots__ = (
        "_batch",
        "_batched",
        "_digest",
        "_hashed",
        "_hasher",
        "_hashing",
        "_progress",
        "_sink",
        "received",
    )

    def __init__(
        self,
        digest: Digest,
        sink: BlobSink,
        on_progress: Callable[[int], None] | None,
        *,
        hashed: bool = True,
    ) -> None:
        self._digest = digest
        self._hashed = hashed
        self._hasher = digest.hasher()
        self._sink = sink
        self._progress = on_progress
        self._batch: list[bytes] = []
        self._batched = 0
        self._hashing: asyncio.Future[None] | None = None
        self.received = 0

    async def add(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._batched += len(chunk)
        self.received += len(chunk)
        if self._batched >= _BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if not self._batch:
            return
        data = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
        self._batch = []
        self._batched = 0
        await self._wait_hashing()
        if self._hashed:
            loop = asyncio.get_running_loop()
            self._hashing = loop.run_in_executor(None, self._hasher.update, data)
        await self._sink.write(data)
        if self._progress is not None:
            self._progress(self.received)

    async def _wait_hashing(self) -> None:
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            await hashing

    async def reset(self) -> None:
        await self.close()
        self._hasher = self._digest.hasher()
        self._batch = []
        self._batched = 0
        self.received = 0
        await self._sink.reset()

    async def close(self) -> None:
        """Let a running hash finish (its thread cannot be stopped anyway)."""
        await self._wait_hashing()

    async def digest(self) -> Digest | None:
        """The digest of everything received (``None`` when made with ``hashed=False``)."""
        await self._flush()
        await self._wait_hashing()
        if not self._hashed:
            return None
        return Digest.from_hex(self._hasher.hexdigest(), self._digest.algorithm)


class Restart(Exception):
    """Internal: start a download over from byte 0."""


def range_start(response: httpx.Response | DirectResponse) -> int | None:
    """The first byte of a 206 answer, or ``None`` for a full (200) answer."""
    if response.status_code != 206:
        return None
    value = response.headers.get("content-range", "")
    unit, _, rest = value.partition(" ")
    first = rest.split("-", 1)[0]
    start = header_int(first)
    if unit != "bytes" or start is None:
        return -1
    return start


def verify_blob(data: bytes, descriptor: Descriptor, ref: Reference) -> None:
    if len(data) != descriptor.size:
        raise ContentError(
            f"blob {descriptor.digest} of {ref.familiar()} is {len(data)} bytes, "
            f"the manifest says {descriptor.size}"
        )
    hasher = descriptor.digest.hasher()
    hasher.update(data)
    actual = Digest.from_hex(hasher.hexdigest(), descriptor.digest.algorithm)
    if actual != descriptor.digest:
        raise ContentError(
            f"blob {descriptor.digest} of {ref.familiar()} does not match its digest "
            f"(the content is {actual})"
        )
