"""Progress of an export as a vertex of its own (``exporting to image``) with counted
steps (``exporting layers``, ``pushing``...), the shape BuildKit's status stream has.
The remote cache's exports and imports (``exporting cache to …``) use it too."""

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

    def _emit(self, completed: float | None, current: int = 0, total: int = 0) -> None:
        self._progress.reporter.emit(
            VertexProgress(
                digest=self._progress.digest,
                id=self._id,
                name=self._name,
                current=current,
                total=total,
                timestamp=now(),
                started=self._started,
                completed=completed,
            )
        )

    def update(self, current: int, total: int = 0) -> None:
        self._emit(None, current, total)

    def done(self) -> None:
        self._emit(now())


class Progress:
    """The vertex of one export: :meth:`start` it, take :meth:`step` s, :meth:`finish`.

    Its digest is ``<kind>:<random hex>`` (``export:`` for an exporter's, ``cache:`` for a
    remote cache transfer's): unique, never a definition digest."""

    def __init__(self, reporter: Reporter | None, name: str, *, kind: str = "export") -> None:
        self.reporter: Reporter = reporter if reporter is not None else NullReporter()
        self.digest = f"{kind}:{uuid.uuid4().hex}"
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
