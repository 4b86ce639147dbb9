"""What the renderers remember of a build: each vertex's latest state, its number, its
counted sub-tasks, its log (kept while it runs, for the failure report) and the warnings.

Not thread-safe on its own: the renderers call it under their lock.
"""

from __future__ import annotations

import codecs
from collections import deque
from dataclasses import dataclass

from dockyard.core import BuildWarning, VertexLog, VertexProgress, VertexStatus

from ._format import format_log_offset, is_cancelled, strip_control

__all__ = ["LogPiece", "Trace", "VertexState"]

#: Lines of a running step's log kept for the failure report; older lines are counted.
KEEP_LINES = 50_000


@dataclass(frozen=True, slots=True)
class LogPiece:
    """A piece of a step's output between newlines. ``offset`` is the time since the step
    started (``0.123``); ``continues`` says it continues the previous unfinished line;
    ``ends`` says a newline ended it."""

    offset: str
    text: str
    continues: bool
    ends: bool


class VertexState:
    """One vertex as the renderers see it. ``index`` numbers vertices in the order they
    were first seen (``#N``); ``order`` is the position in the list of started ones."""

    __slots__ = (
        "_decoder",
        "digest",
        "dropped",
        "index",
        "kept",
        "order",
        "partial",
        "progress",
        "status",
        "tail",
        "tail_partial",
        "warnings",
    )

    def __init__(self, status: VertexStatus, index: int, tail_lines: int) -> None:
        self.digest = status.digest
        self.index = index
        self.status = status
        self.order: int | None = None
        self.progress: dict[str, VertexProgress] = {}
        self.warnings: list[BuildWarning] = []
        self.kept: deque[str] = deque()
        self.dropped = 0
        self.partial = False
        self.tail: deque[str] = deque(maxlen=max(tail_lines, 1))
        self.tail_partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def name(self) -> str:
        return self.status.name or self.digest

    @property
    def started(self) -> bool:
        return self.status.started is not None

    @property
    def completed(self) -> bool:
        return self.status.completed is not None

    def log_lines(self) -> list[str]:
        """The kept log, each line as ``<offset> <text>`` (the failure report)."""
        lines = list(self.kept)
        if self.dropped:
            lines.insert(0, f"[{self.dropped} earlier lines not shown]")
        return lines

    def tail_lines(self) -> list[str]:
        """The last lines of the log for a live view (control characters removed)."""
        lines = list(self.tail)
        if self.tail_partial:
            lines.append(strip_control(self.tail_partial))
        return [line for line in lines if line.strip()]

    def forget_log(self) -> None:
        self.kept.clear()
        self.dropped = 0
        self.tail.clear()
        self.tail_partial = ""

    def _keep(self, piece: LogPiece) -> None:
        if piece.continues and self.kept:
            self.kept[-1] += piece.text
        else:
            self.kept.append(f"{piece.offset} {piece.text}")
            if len(self.kept) > KEEP_LINES:
                self.kept.popleft()
                self.dropped += 1

    def _tail(self, piece: LogPiece, keep_tail: bool) -> None:
        if not keep_tail:
            return
        text = (self.tail_partial + piece.text) if piece.continues else piece.text
        if piece.ends:
            self.tail.append(strip_control(text))
            self.tail_partial = ""
        else:
            self.tail_partial = text[-4096:]


class Trace:
    """The build so far. ``tail_lines`` > 0 keeps that many last log lines per vertex
    for a live view."""

    def __init__(self, *, tail_lines: int = 0) -> None:
        self.vertices: dict[str, VertexState] = {}
        self.started: list[VertexState] = []
        self.warnings: list[BuildWarning] = []
        self._seen_warnings: set[BuildWarning] = set()
        self.first_started: float | None = None
        self._tail_lines = tail_lines

    def status(self, event: VertexStatus) -> tuple[VertexState, VertexStatus | None]:
        """Record a vertex's new state; returns it and the state it replaces."""
        state = self.vertices.get(event.digest)
        previous: VertexStatus | None = None
        if state is None:
            state = VertexState(event, len(self.vertices) + 1, self._tail_lines)
            self.vertices[event.digest] = state
        else:
            previous = state.status
            state.status = event
        if event.started is not None:
            if state.order is None:
                state.order = len(self.started)
                self.started.append(state)
            if self.first_started is None or event.started < self.first_started:
                self.first_started = event.started
            if previous is not None and previous.started != event.started:
                state.forget_log()  # a rerun: a new log
        if event.completed is not None and not event.error:
            state.forget_log()  # the failure report needs only the logs of failed steps
        return state, previous

    def progress(self, event: VertexProgress) -> VertexState | None:
        state = self.vertices.get(event.digest)
        if state is not None:
            state.progress[event.id] = event
        return state

    def log(self, event: VertexLog) -> tuple[VertexState, list[LogPiece]] | None:
        """Split a chunk of output into pieces between newlines (a chunk may end in the
        middle of a line, or of a UTF-8 sequence)."""
        state = self.vertices.get(event.digest)
        if state is None or not event.data:
            return None
        started = state.status.started
        offset = format_log_offset(event.timestamp - started if started is not None else 0.0)
        text = state._decoder.decode(event.data)
        if not text:
            return state, []
        parts = text.split("\n")
        pieces: list[LogPiece] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not part:
                break
            piece = LogPiece(
                offset=offset, text=part, continues=(i == 0 and state.partial), ends=not last
            )
            pieces.append(piece)
            state._keep(piece)
            state._tail(piece, self._tail_lines > 0)
        state.partial = not text.endswith("\n")
        return state, pieces

    def warning(self, event: BuildWarning) -> bool:
        """Record a warning; ``False`` for an exact repeat of one already recorded."""
        if event in self._seen_warnings:
            return False
        self._seen_warnings.add(event)
        self.warnings.append(event)
        if event.digest is not None:
            state = self.vertices.get(event.digest)
            if state is not None:
                state.warnings.append(event)
        return True

    def failed(self) -> list[VertexState]:
        """Steps that failed (not cancelled), in the order they started."""
        return [v for v in self.started if v.status.error and not is_cancelled(v.status.error)]
