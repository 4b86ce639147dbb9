"""Progress events and the Reporter protocol.

Every layer reports what it does through a :class:`Reporter` it is given (never by
printing). Events follow the shape of BuildKit's status stream so that renderers (plain,
tty, rawjson) and the daemon's status API can pass them on unchanged:

- :class:`VertexStatus` — a vertex was seen, started, completed, cached or failed; each
  event carries the whole current state of that vertex, so the latest one wins;
- :class:`VertexLog` — bytes a vertex wrote to stdout (1) or stderr (2);
- :class:`VertexProgress` — a counted sub-task of a vertex (bytes transferred, files synced);
- :class:`BuildWarning` — a warning to summarize at the end (lint checks, deprecations).

``emit`` must be cheap and must not raise: reporters are called from hot paths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from ._errors import SourceLocation

__all__ = [
    "BuildWarning",
    "CollectingReporter",
    "Event",
    "NullReporter",
    "Reporter",
    "TeeReporter",
    "VertexLog",
    "VertexProgress",
    "VertexStatus",
    "now",
]


def now() -> float:
    """Wall-clock time used for event timestamps (seconds since the epoch)."""
    return time.time()


@dataclass(frozen=True, slots=True, kw_only=True)
class VertexStatus:
    """The current state of one vertex. ``started``/``completed`` are epoch seconds."""

    digest: str
    name: str
    inputs: tuple[str, ...] = ()
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str | None = None
    progress_group: str | None = None

    @property
    def done(self) -> bool:
        return self.completed is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class VertexLog:
    """Output of a vertex's process: ``stream`` 1 is stdout, 2 is stderr."""

    digest: str
    stream: int
    data: bytes
    timestamp: float


@dataclass(frozen=True, slots=True, kw_only=True)
class VertexProgress:
    """A counted sub-task of a vertex, identified by ``id`` within it."""

    digest: str
    id: str
    name: str
    current: int
    total: int = 0
    timestamp: float
    started: float | None = None
    completed: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildWarning:
    """A warning shown in the summary at the end of a build."""

    short: str
    detail: tuple[str, ...] = ()
    url: str = ""
    rule: str = ""
    digest: str | None = None
    locations: tuple[SourceLocation, ...] = ()


Event: TypeAlias = VertexStatus | VertexLog | VertexProgress | BuildWarning


@runtime_checkable
class Reporter(Protocol):
    """Receives progress events. Implementations must not raise and must be fast."""

    def emit(self, event: Event) -> None: ...


class NullReporter:
    """Discards every event (the default)."""

    __slots__ = ()

    def emit(self, event: Event) -> None:
        return None


class CollectingReporter:
    """Keeps every event in order; for tests and for replaying a build's log."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def statuses(self) -> list[VertexStatus]:
        return [e for e in self.events if isinstance(e, VertexStatus)]

    def logs(self, digest: str | None = None) -> bytes:
        return b"".join(
            e.data for e in self.events if isinstance(e, VertexLog) and digest in (None, e.digest)
        )


class TeeReporter:
    """Sends each event to several reporters."""

    __slots__ = ("_targets",)

    def __init__(self, *targets: Reporter) -> None:
        self._targets = targets

    def emit(self, event: Event) -> None:
        for target in self._targets:
            target.emit(event)
