"""``--progress=plain``: docker buildx's plain text form.

::

    #1 [internal] load build definition from Dockerfile
    #1 transferring dockerfile: 123B done
    #1 DONE 0.0s

    #5 [build 2/3] RUN make
    #5 0.231 cc -o app main.c
    #5 ...

    #6 [base 2/2] COPY app.py .
    #6 CACHED

    #5 [build 2/3] RUN make
    #5 1.402 main.c:1: error: expected ';'
    #5 ERROR: process "/bin/sh -c make" did not complete successfully: exit code: 2
    ------
     > [build 2/3] RUN make:
    0.231 cc -o app main.c
    1.402 main.c:1: error: expected ';'
    ------

     1 warning found (use --debug to expand):
     - UndefinedVar: Usage of undefined variable '$X' (line 3)

Vertices are numbered in the order they are first seen. One vertex's output is shown
at a time, as BuildKit's printer does: while the shown vertex runs, output of other
running vertices is held back (``#N ...`` marks where a vertex's output stops) until the
shown one completes, or until it has waited ``max_delay`` seconds. Completions are
printed at once. Counted progress is printed when it moved by 5% or 5 seconds passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from dockyard.core import BuildWarning, Event, VertexLog, VertexProgress, VertexStatus

from ._base import DEFAULT_WARNINGS_HINT, FLUSH_INTERVAL, BufferedRenderer
from ._format import (
    error_log_block,
    format_progress_amount,
    is_cancelled,
    progress_label,
    warnings_summary,
)
from ._trace import LogPiece, Trace, VertexState

__all__ = ["DEFAULT_WARNINGS_HINT", "PlainRenderer", "completion_text", "progress_text"]

#: Seconds a running vertex's output may be held back before it is shown anyway.
MAX_DELAY = 10.0
_MIN_PROGRESS_DELTA = 0.05
_MIN_PROGRESS_SECONDS = 5.0

_Op = LogPiece | VertexProgress | VertexStatus | None
"""What a vertex has to print: a piece of log, a progress update, its completion, or
``None`` — just its heading (it started)."""


def progress_text(progress: VertexProgress) -> str:
    """``transferring context: 2.34kB 0.1s done``."""
    label = progress_label(progress)
    amount = format_progress_amount(progress)
    text = label
    if amount:
        text = f"{label if label.endswith(':') else label + ':'} {amount}"
    if progress.started is not None:
        end = progress.completed if progress.completed is not None else progress.timestamp
        elapsed = end - progress.started
        if elapsed > 0.01:
            text += f" {elapsed:.1f}s"
    if progress.completed is not None:
        text += " done"
    return text


def completion_text(status: VertexStatus) -> str:
    """``DONE 0.3s``, ``CACHED``, ``ERROR: message`` or ``CANCELED``."""
    if status.error:
        return "CANCELED" if is_cancelled(status.error) else f"ERROR: {status.error}"
    if status.cached:
        return "CACHED"
    if status.started is not None and status.completed is not None:
        return f"DONE {status.completed - status.started:.1f}s"
    return "DONE"


class _Held:
    __slots__ = ("ops", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.ops: list[_Op] = []

    def add(self, ops: list[_Op]) -> None:
        for op in ops:
            if isinstance(op, VertexProgress):
                for i, held in enumerate(self.ops):
                    if isinstance(held, VertexProgress) and held.id == op.id:
                        self.ops[i] = op  # only the latest count of a sub-task matters
                        break
                else:
                    self.ops.append(op)
            else:
                self.ops.append(op)


class PlainRenderer(BufferedRenderer):
    """Progress as plain text lines (``--progress=plain``); see the module docstring.

    ``warnings_hint`` goes in parentheses after ``N warnings found``; ``expand_warnings``
    prints each warning's details and source lines. ``clock`` (monotonic seconds) only
    times held-back output; every time printed comes from the events.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        flush_interval: float | None = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        max_delay: float = MAX_DELAY,
        warnings_hint: str = DEFAULT_WARNINGS_HINT,
        expand_warnings: bool = False,
    ) -> None:
        super().__init__(stream, flush_interval=flush_interval, clock=clock)
        self._trace = Trace()
        self._max_delay = max_delay
        self._warnings_hint = warnings_hint
        self._expand_warnings = expand_warnings
        self._current: VertexState | None = None
        self._open_line: str | None = None  # the vertex whose unfinished line ends the output
        self._wrote = False
        self._held: dict[str, _Held] = {}
        self._last_progress: dict[tuple[str, str], VertexProgress] = {}

    @property
    def warnings(self) -> tuple[BuildWarning, ...]:
        """The warnings seen so far (exact repeats dropped)."""
        with self._lock:
            return tuple(self._trace.warnings)

    # -- events --------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        if isinstance(event, VertexLog):
            logged = self._trace.log(event)
            if logged is not None and logged[1]:
                self._output(logged[0], list(logged[1]))
        elif isinstance(event, VertexStatus):
            self._on_status(event)
        elif isinstance(event, VertexProgress):
            state = self._trace.progress(event)
            if state is not None:
                self._output(state, [event])
        elif isinstance(event, BuildWarning):
            self._trace.warning(event)
        self._release_overdue()

    def _on_status(self, event: VertexStatus) -> None:
        state, previous = self._trace.status(event)
        if event.started is None:
            return  # seen, not started: nothing to show yet
        if previous is not None and previous.started is not None and _same(previous, event):
            return
        ops: list[_Op] = [None]
        if event.completed is not None:
            ops.append(event)
        self._output(state, ops)

    def _tick(self) -> None:
        self._release_overdue()

    def _finish(self) -> None:
        self._release_all()
        self._end_open_line()
        for state in self._trace.failed():
            for line in error_log_block(state.name, state.log_lines()):
                self._write(line + "\n")
        for line in warnings_summary(
            self._trace.warnings, hint=self._warnings_hint, expand=self._expand_warnings
        ):
            self._write(line + "\n")

    # -- which vertex is shown -----------------------------------------------------------

    def _output(self, state: VertexState, ops: list[_Op]) -> None:
        current = self._current
        completes = any(isinstance(op, VertexStatus) for op in ops)
        if current is None or current is state or completes:
            held = self._held.pop(state.digest, None)
            if held is not None:
                ops = held.ops + ops
            self._print(state, ops)
            if self._current is None:
                self._release_all()
        else:
            held = self._held.get(state.digest)
            if held is None:
                held = self._held[state.digest] = _Held(self._clock())
            held.add(ops)

    def _release_all(self) -> None:
        """Show everything held back (the shown vertex completed, or the end)."""
        while self._held:
            digest = next(iter(self._held))
            held = self._held.pop(digest)
            self._print(self._trace.vertices[digest], held.ops)

    def _release_overdue(self) -> None:
        if not self._held:
            return
        now = self._clock()
        for digest in [d for d, h in self._held.items() if now - h.since >= self._max_delay]:
            held = self._held.pop(digest)
            self._print(self._trace.vertices[digest], held.ops)

    # -- text ----------------------------------------------------------------------------

    def _print(self, state: VertexState, ops: list[_Op]) -> None:
        index = state.index
        if self._current is not state:
            self._leave_current()
            if self._wrote:
                self._write("\n")
            self._write(f"#{index} {state.name}\n")
            self._wrote = True
            self._current = state
        for op in ops:
            if isinstance(op, LogPiece):
                if op.continues and self._open_line == state.digest:
                    self._write(op.text)
                else:
                    self._end_open_line()
                    self._write(f"#{index} {op.offset} {op.text}")
                if op.ends:
                    self._write("\n")
                    self._open_line = None
                else:
                    self._open_line = state.digest
            elif isinstance(op, VertexProgress):
                if self._progress_due(op):
                    self._end_open_line()
                    self._write(f"#{index} {progress_text(op)}\n")
            elif isinstance(op, VertexStatus):
                self._end_open_line()
                self._write(f"#{index} {completion_text(op)}\n")
                self._current = None

    def _leave_current(self) -> None:
        current = self._current
        if current is None:
            return
        self._end_open_line()
        if not current.completed:
            self._write(f"#{current.index} ...\n")
        self._current = None

    def _end_open_line(self) -> None:
        if self._open_line is not None:
            self._write("\n")
            self._open_line = None

    def _progress_due(self, progress: VertexProgress) -> bool:
        key = (progress.digest, progress.id)
        last = self._last_progress.get(key)
        if last is not None:
            if last == progress or (
                last.completed is not None and last.completed == progress.completed
            ):
                return False
            if progress.completed is None:
                delta = (
                    (progress.current - last.current) / progress.total
                    if progress.total > 0
                    else 0.0
                )
                waited = progress.timestamp - last.timestamp
                if delta < _MIN_PROGRESS_DELTA and waited < _MIN_PROGRESS_SECONDS:
                    return False
        self._last_progress[key] = progress
        return True


def _same(a: VertexStatus, b: VertexStatus) -> bool:
    return (
        a.name == b.name
        and a.started == b.started
        and a.completed == b.completed
        and a.cached == b.cached
        and a.error == b.error
    )
