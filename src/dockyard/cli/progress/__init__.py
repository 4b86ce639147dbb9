"""Progress renderers: show a build's :mod:`dockyard.core` progress events
(``VertexStatus``, ``VertexLog``, ``VertexProgress``, ``BuildWarning``) as docker buildx
does, one renderer per ``--progress`` mode:

- ``plain`` (:class:`PlainRenderer`): ``#N [stage i/n] INSTRUCTION``, ``#N 0.123 log``,
  ``#N transferring context: 2.34kB 0.1s done``, ``#N CACHED``, ``#N DONE 0.3s``,
  ``#N ERROR: message``;
- ``tty`` (:class:`TtyRenderer`, rich): a live list of steps with timers and the last
  log lines of running steps; ``auto`` picks it on a terminal, ``plain`` otherwise;
- ``rawjson`` (:class:`RawJsonRenderer`): one BuildKit ``SolveStatus`` JSON object per
  event per line;
- ``quiet`` (:class:`QuietRenderer`): nothing.

A :class:`Renderer` is a :class:`~dockyard.core.Reporter` (``emit`` is cheap, never
raises, may be called from any thread; output is written from a timer) with ``close()``,
which writes the summary: the full log of each failed step, then the warnings
(`` 2 warnings found (...):`` and one `` - Rule: message (line N)`` line each).
Use :func:`make_renderer` to pick one from a ``--progress`` value.

``dockyard.cli.progress`` imports only the standard library and :mod:`dockyard.core`;
each renderer (the tty one with rich) is imported when it is made.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._base import BufferedRenderer, QuietRenderer, Renderer
from ._factory import MODES, ProgressMode, make_renderer
from ._format import (
    error_log_block,
    format_bytes,
    format_log_offset,
    source_snippet,
    warning_line,
    warnings_summary,
)

if TYPE_CHECKING:
    from ._plain import PlainRenderer, completion_text, progress_text
    from ._rawjson import RawJsonRenderer, event_json, format_time
    from ._tty import TtyRenderer

# The renderers load on first use (make_renderer imports the one it makes).
_LAZY = {
    "PlainRenderer": "._plain",
    "completion_text": "._plain",
    "progress_text": "._plain",
    "RawJsonRenderer": "._rawjson",
    "event_json": "._rawjson",
    "format_time": "._rawjson",
    "TtyRenderer": "._tty",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "MODES",
    "BufferedRenderer",
    "PlainRenderer",
    "ProgressMode",
    "QuietRenderer",
    "RawJsonRenderer",
    "Renderer",
    "TtyRenderer",
    "completion_text",
    "error_log_block",
    "event_json",
    "format_bytes",
    "format_log_offset",
    "format_time",
    "make_renderer",
    "progress_text",
    "source_snippet",
    "warning_line",
    "warnings_summary",
]
