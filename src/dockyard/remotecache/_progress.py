"""Progress of a cache export or import as a vertex of its own with counted steps (the
shape of BuildKit's ``exporting cache to …`` / ``importing cache manifest from …``)."""

from __future__ import annotations

import uuid

from dockyard.core import NullReporter, Reporter, VertexProgress, VertexStatus, now

__all__ = ["Progress", "Step"]


class Step:
    """One counted sub-task; :meth:`done` completes it."""

    __slots__ = ("_id", "_name", "_progress", "_started")

    def __init__(self, progress: Progress, step_id: str, name: str) -> None:
        self._progress = progress
        self._id = step_id
        self._name = name
        self._started = now()
        self._emit(None)

    def _emit(self, completed: float | None) -> None:
        self._progress.reporter.emit(
            VertexProgress(
                digest=self._progress.digest,
                id=self._id,
                name=self._name,
                current=0,
                total=0,
                timestamp=now(),
                started=self._started,
                completed=completed,
            )
        )

    def done(self) -> None:
        self._emit(now())


class Progress:
    """The vertex of one cache transfer: :meth:`start`, :meth:`step` s, :meth:`finish`."""

    def __init__(self, reporter: Reporter | None, name: str) -> None:
        self.reporter: Reporter = reporter if reporter is not None else NullReporter()
        self.digest = "cache:" + uuid.uuid4().hex
        self.name = name
        self._started: float | None = None

    def start(self) -> None:
        self._started = now()
        self.reporter.emit(VertexStatus(digest=self.digest, name=self.name, started=self._started))

    def step(self, step_id: str, name: str) -> Step:
        return Step(self, step_id, name)

    def finish(self, error: BaseException | None = None) -> None:
        self.reporter.emit(
            VertexStatus(
                digest=self.digest,
                name=self.name,
                started=self._started,
                completed=now(),
                error=str(error) if error is not None else None,
            )
        )
