"""``make_renderer``: the ``--progress`` value and the output stream → a renderer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, TextIO, get_args

from dockyard.core import UsageError

from ._base import DEFAULT_WARNINGS_HINT, QuietRenderer, Renderer

__all__ = ["MODES", "ProgressMode", "make_renderer"]

ProgressMode = Literal["auto", "tty", "plain", "rawjson", "quiet"]
MODES: tuple[str, ...] = get_args(ProgressMode)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def make_renderer(
    mode: str,
    stream: TextIO,
    *,
    is_tty: bool | None = None,
    warnings_hint: str = DEFAULT_WARNINGS_HINT,
    expand_warnings: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Renderer:
    """The renderer for a ``--progress`` value (buildx's modes), writing to ``stream``.

    ``auto`` is ``tty`` on a terminal and ``plain`` otherwise; ``tty`` also falls back
    to ``plain`` when ``stream`` is not a terminal (or ``TERM=dumb``). ``is_tty``
    overrides the terminal check. ``warnings_hint`` and ``expand_warnings`` shape the
    warnings summary (see :class:`PlainRenderer`). An unknown mode is a
    :class:`~dockyard.core.UsageError`. Each renderer is imported only when chosen
    (the tty one with rich).
    """
    value = mode.strip().lower()
    if value not in MODES:
        raise UsageError(
            f"invalid progress mode {mode!r} (expected {', '.join(MODES[:-1])} or {MODES[-1]})"
        )
    if value == "quiet":
        return QuietRenderer()
    if value == "rawjson":
        from ._rawjson import RawJsonRenderer

        return RawJsonRenderer(stream)
    if value in ("auto", "tty"):
        env = os.environ if environ is None else environ
        terminal = _is_terminal(stream) if is_tty is None else is_tty
        if terminal and env.get("TERM", "") != "dumb":
            from ._tty import TtyRenderer

            return TtyRenderer(stream, warnings_hint=warnings_hint, expand_warnings=expand_warnings)
    from ._plain import PlainRenderer

    return PlainRenderer(stream, warnings_hint=warnings_hint, expand_warnings=expand_warnings)
