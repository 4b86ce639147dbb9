"""Progress of a transfer as ``VertexProgress`` events."""

from __future__ import annotations

from dockyard.core import NullReporter, Reporter, VertexProgress, now

__all__ = ["TransferProgress"]

_INTERVAL = 0.1  # seconds between events while content flows


class TransferProgress:
    """``VertexProgress`` events of one transfer: bytes and files, throttled."""

    def __init__(self, reporter: Reporter | None, digest: str, name: str) -> None:
        self._reporter = reporter or NullReporter()
        self._digest = digest
        self._id = f"transfer:{name}"
        self._name = f"transferring {name}"
        self._started = now()
        self._total_bytes = 0
        self._total_files = 0
        self._last = 0.0

    def emit(self, files: int, nbytes: int, *, done: bool = False, force: bool = False) -> None:
        if not self._digest:
            return
        stamp = now()
        if not (done or force) and stamp - self._last < _INTERVAL:
            return
        self._last = stamp
        completed = stamp if done else None
        self._reporter.emit(
            VertexProgress(
                digest=self._digest,
                id=self._id,
                name=self._name,
                current=nbytes,
                total=self._total_bytes,
                timestamp=stamp,
                started=self._started,
                completed=completed,
            )
        )
        self._reporter.emit(
            VertexProgress(
                digest=self._digest,
                id=self._id + ":files",
                name=self._name + " (files)",
                current=files,
                total=self._total_files,
                timestamp=stamp,
                started=self._started,
                completed=completed,
            )
        )

    def totals(self, files: int, nbytes: int) -> None:
        self._total_files = files
        self._total_bytes = nbytes
