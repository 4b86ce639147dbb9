"""``--progress=tty``: a live view of the build drawn with rich, in buildx's form::

    [+] Building 3.2s (7/9)
     => [internal] load build definition from Dockerfile                  0.0s
     => => transferring dockerfile: 123B                                  0.0s
     => CACHED [base 1/3] FROM docker.io/library/alpine:3.19              0.0s
     => [build 2/3] RUN make                                              2.1s
     => => # cc -o app main.c
     => => # ld app.o

A step's last log lines show while it runs and collapse when it is done; the list is cut
to the terminal's height (finished steps go first). The view is redrawn by rich's refresh
thread a few times a second — ``emit`` only records the event. When closed, the final
list is drawn in full, then the failed steps' logs and the warnings as in plain mode.

Importing this module imports rich (~65 ms); :func:`~dockyard.cli.progress.make_renderer`
does so only when the view is a terminal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from dockyard.core import BuildWarning, Event, VertexLog, VertexProgress, VertexStatus

from ._base import MAX_KEPT_ERRORS
from ._format import (
    error_log_block,
    format_progress_amount,
    is_cancelled,
    progress_label,
    warnings_summary,
)
from ._plain import DEFAULT_WARNINGS_HINT
from ._trace import Trace

__all__ = ["REFRESH_INTERVAL", "TtyRenderer"]

#: Seconds between redraws (buildx: 150 ms).
REFRESH_INTERVAL = 0.15
#: Log lines shown under a running step (buildx: 6, at least 3 on small terminals).
TAIL_LINES = 6
_MIN_TAIL_LINES = 3

_STYLE_DONE = "blue"
_STYLE_ERROR = "red"
_STYLE_CANCEL = "yellow"
_STYLE_LOG = "dim"


@dataclass(slots=True)
class _Job:
    name: str
    seconds: float
    done: bool
    style: str = ""
    status: str = ""
    tail: list[str] = field(default_factory=list)


class TtyRenderer:
    """The live terminal view (``--progress=tty``); see the module docstring.

    ``console``: where to draw (default: a terminal console on ``stream``); tests pass a
    recording console. ``refresh_interval``: seconds between redraws by rich's thread
    (``None``: only on :meth:`refresh` and at close). ``clock``: epoch seconds, for the
    timers of running steps.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        console: Console | None = None,
        clock: Callable[[], float] = time.time,
        refresh_interval: float | None = REFRESH_INTERVAL,
        tail_lines: int = TAIL_LINES,
        warnings_hint: str = DEFAULT_WARNINGS_HINT,
        expand_warnings: bool = False,
    ) -> None:
        self._console = console or Console(file=stream, force_terminal=True, highlight=False)
        self._clock = clock
        self._tail_lines = tail_lines
        self._warnings_hint = warnings_hint
        self._expand_warnings = expand_warnings
        self._lock = threading.Lock()
        self._trace = Trace(tail_lines=tail_lines)
        self._offset: float | None = None  # local clock minus the events' clock
        self._opened = clock()
        self._closed = False
        self._final_at: float | None = None
        self._last_frame = Text()
        self.errors: list[Exception] = []
        """Exceptions swallowed while rendering (the first few): for tests and debugging."""
        self._live = Live(
            console=self._console,
            auto_refresh=refresh_interval is not None,
            refresh_per_second=1 / (refresh_interval or REFRESH_INTERVAL),
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
            get_renderable=self._renderable,
        )
        self._live.start(refresh=True)

    # -- the Renderer protocol -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        if self._closed:
            return
        try:
            with self._lock:
                if isinstance(event, VertexStatus):
                    self._trace.status(event)
                    if self._offset is None and self._trace.first_started is not None:
                        self._offset = self._clock() - self._trace.first_started
                elif isinstance(event, VertexLog):
                    self._trace.log(event)
                elif isinstance(event, VertexProgress):
                    self._trace.progress(event)
                elif isinstance(event, BuildWarning):
                    self._trace.warning(event)
        except Exception as exc:  # a renderer must never break the build it shows
            self._swallow(exc)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._final_at = self._clock()
        try:
            self._live.stop()  # draws the final list (see _renderable)
            lines: list[str] = []
            with self._lock:
                for state in self._trace.failed():
                    lines.extend(error_log_block(state.name, state.log_lines()))
                lines.extend(
                    warnings_summary(
                        self._trace.warnings,
                        hint=self._warnings_hint,
                        expand=self._expand_warnings,
                    )
                )
            for line in lines:
                self._console.print(Text(line), soft_wrap=True)
        except Exception as exc:
            self._swallow(exc)

    def _swallow(self, exc: Exception) -> None:
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(exc)

    def refresh(self) -> None:
        """Redraw now."""
        self._live.refresh()

    @property
    def warnings(self) -> tuple[BuildWarning, ...]:
        with self._lock:
            return tuple(self._trace.warnings)

    def __enter__(self) -> TtyRenderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- drawing -------------------------------------------------------------------------

    def _renderable(self) -> Text:
        """What rich's refresh thread draws; never raises (it would kill the thread)."""
        final = self._final_at
        try:
            now = final if final is not None else self._clock()
            self._last_frame = self.frame(now, final=final is not None)
        except Exception as exc:
            self._swallow(exc)
        return self._last_frame

    def frame(self, now: float, *, final: bool = False) -> Text:
        """The view at local time ``now`` (what rich draws). ``final``: every step, no
        logs, no height limit, ``FINISHED`` when all steps are done."""
        width = max(self._console.width, 20)
        height = self._console.height
        with self._lock:
            build_now = now - (self._offset or 0.0)
            jobs = self._jobs(build_now, final=final)
            total = len(self._trace.vertices)
            done = sum(1 for v in self._trace.vertices.values() if v.completed)
            first = self._trace.first_started
        elapsed = (build_now - first) if first is not None else (now - self._opened)
        header = f"[+] Building {max(elapsed, 0.0):.1f}s ({done}/{total})"
        if final and total and done == total:
            header += " FINISHED"
        if not final:
            jobs = _fit(jobs, height)
        text = Text(no_wrap=True, overflow="crop")
        text.append(header)
        for job in jobs:
            text.append("\n")
            _draw(text, job, width)
        return text

    def _jobs(self, now: float, *, final: bool) -> list[_Job]:
        jobs: list[_Job] = []
        for state in self._trace.started:
            status = state.status
            name = " ".join(status.name.replace("\t", " ").splitlines()) or state.digest
            style = ""
            if status.error:
                if is_cancelled(status.error):
                    name, style = "CANCELED " + name, _STYLE_CANCEL
                else:
                    name, style = "ERROR " + name, _STYLE_ERROR
            if status.cached:
                name = "CACHED " + name
            done = status.completed is not None
            if done and not style:
                style = _STYLE_DONE
            started = status.started if status.started is not None else now
            end = status.completed if status.completed is not None else now
            job = _Job(name=name, seconds=end - started, done=done, style=style)
            if not done and not final and self._tail_lines > 0:
                job.tail = state.tail_lines()[-self._tail_lines :]
            jobs.append(job)
            for progress in state.progress.values():
                p_start = progress.started if progress.started is not None else progress.timestamp
                if progress.completed is not None:
                    p_end = progress.completed
                else:
                    p_end = progress.timestamp if done else now
                label = progress_label(progress)
                amount = format_progress_amount(progress)
                if amount and not label.endswith(":"):
                    label += ":"
                jobs.append(
                    _Job(
                        name="=> " + label,
                        seconds=p_end - p_start,
                        done=progress.completed is not None or done,
                        style=_STYLE_DONE if progress.completed is not None else "",
                        status=amount,
                    )
                )
            for warning in state.warnings:
                jobs.append(
                    _Job(
                        name="WARN: " + " ".join(warning.short.splitlines()),
                        seconds=end - started,
                        done=True,
                        style=_STYLE_CANCEL,
                    )
                )
        return jobs


def _draw(text: Text, job: _Job, width: int) -> None:
    seconds = job.seconds if job.seconds >= 0.05 else 0.0
    timer = f" {seconds:3.1f}s"
    prefix = " => "
    left = width - len(prefix) - len(timer) - 1
    name = job.name
    status = ""
    if job.status and left - len(job.status) - 1 >= 12:
        status = " " + job.status
        left -= len(status)
    if len(name) > left:
        name = name[: max(left, 0)]
    line = f"{prefix}{name}{status}"
    line = line.ljust(width - len(timer)) + timer
    text.append(line, style=job.style or None)
    for log in job.tail:
        entry = f" => => # {log}"
        text.append("\n")
        text.append(entry[:width], style=_STYLE_LOG)


def _fit(jobs: list[_Job], height: int) -> list[_Job]:
    """Cut the list to the terminal's height: running steps' log tails only where there
    is room (latest steps first); when even the steps do not fit, finished steps go
    from the top and every running one stays visible (buildx's rules)."""
    limit = max(height - 2, 1)
    tail_height = max(_MIN_TAIL_LINES, min(TAIL_LINES, height - _MIN_TAIL_LINES - 1))
    free = limit - len(jobs)
    for job in reversed(jobs):
        if not job.tail:
            continue
        shown = min(len(job.tail), tail_height, free)
        if shown >= min(_MIN_TAIL_LINES, len(job.tail)):
            job.tail = job.tail[-shown:]
            free -= shown
        else:
            job.tail = []
    if len(jobs) <= limit:
        return jobs
    kept = jobs[-limit:]
    hidden = [j for j in jobs[:-limit] if not j.done]
    if not hidden:
        return kept
    rest: list[_Job] = []
    drop = len(hidden)
    for job in kept:
        if job.done and drop > 0:
            drop -= 1
            continue
        rest.append(job)
    room = limit - len(rest)
    return (hidden[len(hidden) - room :] if room > 0 else []) + rest
