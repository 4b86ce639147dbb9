"""Text shared by the renderers: sizes, durations, log offsets, the warnings summary, the
failed steps' logs and source snippets — in docker buildx's forms."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from dockyard.core import BuildWarning, SourceLocation, VertexProgress

__all__ = [
    "error_log_block",
    "format_bytes",
    "format_log_offset",
    "format_progress_amount",
    "is_cancelled",
    "source_snippet",
    "strip_control",
    "warning_line",
    "warnings_summary",
]

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
_RULE = "-" * 20
_SNIPPET_PAD = 2


def format_bytes(n: int) -> str:
    """Decimal units as BuildKit prints them: ``999B``, ``2.34kB``, ``1.00MB``."""
    if -1000 < n < 1000:
        return f"{n}B"
    value = float(n)
    unit = 0
    while abs(value) >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{value:.2f}{_UNITS[unit]}"


def format_log_offset(seconds: float) -> str:
    """The time of a log line since its step started: 3 decimals under 10s, 2 under
    100s, 1 above (``0.123``, ``12.34``, ``246.4``)."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.3f}"
    if seconds < 100:
        return f"{seconds:.2f}"
    return f"{seconds:.1f}"


def counts_files(progress: VertexProgress) -> bool:
    """Progress whose numbers count files rather than bytes (ids ending in ``:files``,
    as the session's transfers report them)."""
    return progress.id.endswith(":files")


def format_progress_amount(progress: VertexProgress) -> str:
    """``2.34kB``, ``1.20MB / 3.40MB``, or for file counts ``12`` / ``12 / 40``; empty
    when there is nothing counted yet."""
    fmt = str if counts_files(progress) else format_bytes
    if progress.total:
        return f"{fmt(progress.current)} / {fmt(progress.total)}"
    if progress.current:
        return fmt(progress.current)
    return ""


def progress_label(progress: VertexProgress) -> str:
    return progress.name or progress.id


def is_cancelled(error: str) -> bool:
    """The solver marks a cancelled step with ``error="cancelled"`` (BuildKit: ``context
    canceled``)."""
    text = error.rstrip().lower()
    return text.endswith(("cancelled", "canceled"))


_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def strip_control(line: str) -> str:
    """A log line as a terminal would leave it, for one-line display: escape sequences
    removed, text after the last carriage return, other control characters dropped."""
    line = _CSI.sub("", line)
    if "\r" in line:
        parts = [p for p in line.split("\r") if p]
        line = parts[-1] if parts else ""
    return _CONTROL.sub("", line.replace("\t", "    "))


def warning_line(warning: BuildWarning) -> str:
    """One line of the summary: ``UndefinedVar: Usage of undefined variable '$X' (line 3)``
    — the rule, the message and where (``Dockerfile:3`` when the message does not say)."""
    text = " ".join(warning.short.splitlines())
    if warning.rule and not text.startswith(warning.rule):
        text = f"{warning.rule}: {text}"
    if warning.locations:
        loc = warning.locations[0]
        line = loc.ranges[0].start if loc.ranges else 0
        if not (line and text.endswith(f"(line {line})")):
            text = f"{text} ({loc})"
    return text


def warnings_summary(
    warnings: Sequence[BuildWarning], *, hint: str = "", expand: bool = False
) -> list[str]:
    """The block printed after a build with warnings (buildx's form)::

        <blank>
         2 warnings found (use --debug to expand):
         - UndefinedVar: Usage of undefined variable '$X' (line 3)
         - ...

    ``expand`` adds each warning's details, link and source lines after the list.
    """
    if not warnings:
        return []
    count = len(warnings)
    head = f" {count} warning{'s' if count != 1 else ''} found"
    if hint and not expand:
        head += f" ({hint})"
    lines = ["", head + ":"]
    lines.extend(f" - {warning_line(w)}" for w in warnings)
    if expand:
        for warning in warnings:
            lines.append(warning_line(warning))
            lines.extend(warning.detail)
            if warning.url:
                lines.append(f"More info: {warning.url}")
            for loc in warning.locations:
                lines.extend(source_snippet(loc))
            lines.append("")
    return lines


def error_log_block(name: str, lines: Iterable[str]) -> list[str]:
    """The log of a failed step, as buildx prints it after the progress::

    ------
     > [build 2/3] RUN make:
    0.231 cc -o app main.c
    0.402 main.c:1: error: ...
    ------
    """
    return ["------", f" > {name}:", *lines, "------"]


def source_snippet(location: SourceLocation) -> list[str]:
    """The lines a location points at, with two lines of context (buildx's form)::

        Dockerfile:7
        --------------------
           5 |     FROM base
           6 |     WORKDIR /src
           7 | >>> COPY app.py .
           8 |
        --------------------

    Just the ``Dockerfile:7`` line when the file's content is not attached.
    """
    if not location.ranges:
        return [location.filename]
    first = location.ranges[0]
    heading = f"{location.filename}:{first.start}"
    if location.data is None:
        return [heading]
    text = location.data.decode("utf-8", "replace").splitlines()
    marked: set[int] = set()
    for rng in location.ranges:
        marked.update(range(max(rng.start, 1), max(rng.end, rng.start) + 1))
    if not marked:
        return [heading]
    low = max(min(marked) - _SNIPPET_PAD, 1)
    high = min(max(marked) + _SNIPPET_PAD, len(text))
    while low < min(marked) and not text[low - 1].strip():
        low += 1
    while high > max(marked) and not text[high - 1].strip():
        high -= 1
    body = []
    for number in range(low, high + 1):
        content = text[number - 1] if number <= len(text) else ""
        mark = ">>> " if number in marked else "    "
        body.append(f" {number:>3} | {mark}{content}".rstrip())
    return [heading, _RULE, *body, _RULE]
