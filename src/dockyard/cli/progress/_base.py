"""The renderer seam and the machinery the text renderers share: a lock, an output
buffer written out by a timer thread, and the close step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TextIO, runtime_checkable

from dockyard.core import Event

__all__ = ["BufferedRenderer", "QuietRenderer", "Renderer"]

#: Seconds between writes of buffered output (and checks of held-back output).
FLUSH_INTERVAL = 0.1
_FLUSH_BYTES = 64 << 10
MAX_KEPT_ERRORS = 10
#: The hint after the warnings count of the summary (``N warnings found (HINT):``).
DEFAULT_WARNINGS_HINT = "use --debug to expand"


@runtime_checkable
class Renderer(Protocol):
    """Shows a build's progress events; a :class:`dockyard.core.Reporter` with an end.

    ``emit`` is called from the build's hot paths, possibly from several threads: it
    must be cheap and must never raise (output problems such as a closed pipe are
    swallowed). Output is buffered and written from a timer, never in ``emit``'s
    caller's time. ``close`` (idempotent) writes what is left, then the summary: the
    full log of each failed step and the warnings. Events after ``close`` are ignored.
    """

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class QuietRenderer:
    """``--progress=quiet``: shows nothing (the CLI still reports errors)."""

    __slots__ = ()

    def emit(self, event: Event) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> QuietRenderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Ticker:
    """Calls ``callback`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, interval: float, callback: Callable[[], None]) -> None:
        self._interval = interval
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dockyard-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._callback()


class BufferedRenderer:
    """Base of the text renderers. Subclasses implement :meth:`_handle` (one event) and
    :meth:`_finish` (the summary), both called under the lock, and write with
    :meth:`_write`. Buffered text goes to the stream every ``flush_interval`` seconds
    from a timer thread (``None``: only when the buffer is large and on close — for
    tests), and :meth:`_tick` runs on the same timer."""

    def __init__(
        self,
        stream: TextIO,
        *,
        flush_interval: float | None = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._buffered = 0
        self._closed = False
        self._broken = False
        self._flush_interval = flush_interval
        self._ticker: _Ticker | None = None
        self.errors: list[Exception] = []
        """Exceptions swallowed while rendering (the first few): for tests and debugging."""

    # -- the Renderer protocol -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        try:
            with self._lock:
                if self._closed:
                    return
                self._handle(event)
                if self._buffered >= _FLUSH_BYTES:
                    self._flush_locked()
            if self._ticker is None and self._flush_interval is not None:
                self._start_ticker()
        except Exception as exc:  # a renderer must never break the build it shows
            self._swallow(exc)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._finish()
            except Exception as exc:
                self._swallow(exc)
            self._flush_locked()
            ticker = self._ticker
        if ticker is not None:
            ticker.stop()

    def flush(self) -> None:
        """Write buffered output now."""
        with self._lock:
            self._flush_locked()

    def __enter__(self) -> BufferedRenderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- for subclasses ------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        return None

    def _tick(self) -> None:
        return None

    def _write(self, text: str) -> None:
        self._buffer.append(text)
        self._buffered += len(text)

    # -- internals -----------------------------------------------------------------------

    def _start_ticker(self) -> None:
        with self._lock:
            if self._ticker is not None or self._closed or self._flush_interval is None:
                return
            self._ticker = _Ticker(self._flush_interval, self._on_tick)
        self._ticker.start()

    def _on_tick(self) -> None:
        try:
            with self._lock:
                if self._closed:
                    return
                self._tick()
                self._flush_locked()
        except Exception as exc:
            self._swallow(exc)

    def _swallow(self, exc: Exception) -> None:
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(exc)

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        data = "".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        if self._broken:
            return
        try:
            try:
                self._stream.write(data)
            except UnicodeEncodeError:  # names from file names may hold any bytes
                encoding = getattr(self._stream, "encoding", None) or "utf-8"
                self._stream.write(data.encode(encoding, "replace").decode(encoding))
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._broken = True  # a closed pipe or file: drop the rest quietly
            if isinstance(exc, BrokenPipeError):
                _interrupt_if_stdio(self._stream)


def _interrupt_if_stdio(stream: TextIO) -> None:
    """The stream's pipe broke: if it is stderr (or stdout) and its reader is gone, the
    command is interrupted, as a Go CLI dies of SIGPIPE (:mod:`dockyard.cli._stdio`)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    from dockyard.cli import _stdio

    _stdio.interrupt(fd)
