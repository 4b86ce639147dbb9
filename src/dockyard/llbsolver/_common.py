"""What every op implementation shares: naming, errors with source locations, cache-map
digests, blocking work in threads, and local directories of mount specs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from dockyard.core import DockyardError, Platform, SourceLocation, VertexRef
from dockyard.snapshot import mount as snapmount
from dockyard.snapshot.types import Mount

__all__ = ["OpInfo", "cache_digest", "local_dir", "run_blocking"]

T = TypeVar("T")

_KEY_VERSION = "dockyard.llbsolver/1"


class OpInfo:
    """The parts of an LLB op every implementation needs: its identity for errors and
    the source locations errors should point at."""

    __slots__ = ("digest", "locations", "name", "platform")

    def __init__(
        self,
        *,
        digest: str,
        name: str,
        locations: tuple[SourceLocation, ...] = (),
        platform: Platform | None = None,
    ) -> None:
        self.digest = digest
        self.name = name
        self.locations = locations
        self.platform = platform

    def ref(self) -> VertexRef:
        return VertexRef(digest=self.digest, name=self.name)

    def located(self, exc: DockyardError) -> DockyardError:
        """``exc`` with this op's source locations (``Dockerfile:7: ...``)."""
        if self.locations:
            exc.with_locations(self.locations)
        return exc

    @contextlib.asynccontextmanager
    async def errors(self) -> AsyncIterator[None]:
        """Attach source locations to the DockyardErrors raised inside."""
        try:
            yield
        except DockyardError as exc:
            self.located(exc)
            raise


def cache_digest(kind: str, payload: object, platform: Platform | None = None) -> str:
    """A cache-map digest: ``sha256`` of a versioned, canonical JSON of ``payload``.

    Never include input digests in ``payload``: the solver combines the inputs' keys
    itself, and a digest that named them would defeat content-based keys.
    """
    record = [_KEY_VERSION, kind, payload]
    if platform is not None:
        record.append([platform.os, platform.architecture, platform.variant])
    data = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


async def run_blocking(fn: Callable[[threading.Event], T]) -> T:
    """Run ``fn(stop)`` in a worker thread; on cancellation set ``stop`` and wait for the
    thread to finish before re-raising, so that nothing it holds (a mount, a file) is
    still in use when the caller cleans up."""
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(fn, stop))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise


@contextlib.contextmanager
def local_dir(mounts: Sequence[Mount], *, parent: Path | None = None) -> Iterator[Path]:
    """A host directory showing ``mounts``: a single bind mount's source as it is (a
    plain snapshot directory needs no mount), anything else mounted on a temporary
    directory (under ``parent``) and unmounted on exit. Blocks: call from a worker
    thread."""
    if len(mounts) == 1 and mounts[0].type in ("bind", "rbind"):
        yield Path(mounts[0].source)
        return
    with snapmount.mounted(mounts, parent=parent) as path:
        yield path
