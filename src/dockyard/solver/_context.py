"""The per-vertex context handed to ops: progress bound to the vertex, job values,
cancellation for threads."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from dockyard.core import (
    BuildWarning,
    Event,
    NullReporter,
    Reporter,
    SourceLocation,
    VertexLog,
    VertexProgress,
    now,
)

from .types import JobValue, Vertex

__all__ = ["VertexContext"]

T = TypeVar("T")


class _Audience(Protocol):
    """Who a vertex talks to: the reporters and values of every job that holds it."""

    def emit(self, event: Event) -> None: ...

    def job_values(self, key: JobValue[Any]) -> tuple[Any, ...]: ...


class _Detached:
    __slots__ = ("_reporter", "_values")

    def __init__(self, reporter: Reporter, values: Mapping[JobValue[Any], Any]) -> None:
        self._reporter = reporter
        self._values = values

    def emit(self, event: Event) -> None:
        self._reporter.emit(event)

    def job_values(self, key: JobValue[Any]) -> tuple[Any, ...]:
        return (self._values[key],) if key in self._values else ()


class VertexContext:
    """What an op sees of the build while it works on one vertex.

    A vertex may be shared by several jobs (two builds that need the same step), so the
    context speaks to all of them: events go to the reporter of every job currently
    holding the vertex, and :meth:`values` returns the values of all those jobs (try each
    session in turn, like BuildKit's session groups).

    Cancellation arrives as ``asyncio.CancelledError`` in the op's coroutine. Work an op
    runs in a thread cannot be interrupted that way; it should poll :attr:`cancelled`
    (a :class:`threading.Event`, safe to read from any thread).

    A fresh context is created for each ``cache_map``/``exec`` call. Use :meth:`detached`
    to call an op outside a solver (in its unit tests).
    """

    __slots__ = ("_audience", "_event", "_is_cancelled", "vertex")

    def __init__(self, vertex: Vertex, audience: _Audience) -> None:
        self.vertex = vertex
        self._audience = audience
        self._event: threading.Event | None = None  # made on first use: most ops never ask
        self._is_cancelled = False

    @property
    def cancelled(self) -> threading.Event:
        """Set when the work this context belongs to is cancelled; for threads to poll."""
        event = self._event
        if event is None:
            event = threading.Event()
            self._event = event
            # paired with _mark_cancelled: each writes its field, then reads the other's
            if self._is_cancelled:
                event.set()
        return event

    def _mark_cancelled(self) -> None:
        self._is_cancelled = True
        event = self._event
        if event is not None:
            event.set()

    @classmethod
    def detached(
        cls,
        vertex: Vertex,
        *,
        reporter: Reporter | None = None,
        values: Mapping[JobValue[Any], Any] | None = None,
    ) -> VertexContext:
        """A context that is not part of a solve: events go to ``reporter``."""
        return cls(vertex, _Detached(reporter or NullReporter(), dict(values or {})))

    @property
    def digest(self) -> str:
        return self.vertex.digest

    def values(self, key: JobValue[T]) -> tuple[T, ...]:
        """The value under ``key`` of every job holding this vertex (oldest job first);
        empty when no job set one."""
        return self._audience.job_values(key)

    def emit(self, event: Event) -> None:
        """Send an arbitrary event (already naming this vertex) to the jobs' reporters."""
        self._audience.emit(event)

    def log(self, data: bytes, *, stream: int = 1) -> None:
        """Output of the vertex's process: ``stream`` 1 is stdout, 2 is stderr."""
        self._audience.emit(
            VertexLog(digest=self.vertex.digest, stream=stream, data=data, timestamp=now())
        )

    def progress(
        self,
        id: str,
        name: str,
        current: int,
        *,
        total: int = 0,
        started: float | None = None,
        completed: float | None = None,
    ) -> None:
        """A counted sub-task of this vertex (bytes pulled, files sent), by ``id``."""
        self._audience.emit(
            VertexProgress(
                digest=self.vertex.digest,
                id=id,
                name=name,
                current=current,
                total=total,
                timestamp=now(),
                started=started,
                completed=completed,
            )
        )

    def warn(
        self,
        short: str,
        *,
        detail: tuple[str, ...] = (),
        url: str = "",
        rule: str = "",
        locations: tuple[SourceLocation, ...] = (),
    ) -> None:
        """A warning for the end-of-build summary, attributed to this vertex."""
        self._audience.emit(
            BuildWarning(
                short=short,
                detail=detail,
                url=url,
                rule=rule,
                digest=self.vertex.digest,
                locations=locations,
            )
        )
