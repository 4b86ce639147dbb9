"""Shared pieces of the engine commands (``solve``, ``du``, ``prune``; later ``build``):
engine options, the embedded engine, plain progress, and errors as a user reads them.

Everything heavy is imported inside functions: importing this module costs click only.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dockyard.core import DockyardError, Event
    from dockyard.engine import EngineConfig

__all__ = [
    "PlainProgress",
    "engine_config",
    "engine_options",
    "format_error",
    "key_values",
    "parse_duration",
    "parse_size",
    "report_error",
]

F = TypeVar("F", bound=Callable[..., Any])

STATE_DIR_HELP = (
    "Where the engine keeps its cache and images "
    "[env DOCKYARD_STATE_DIR; default /var/lib/dockyard as root, "
    "$XDG_DATA_HOME/dockyard otherwise]."
)


def engine_options(command: F) -> F:
    """``--state-dir``, ``--runtime``, ``--snapshotter`` for commands that open an engine."""
    options = [
        click.option(
            "--state-dir",
            "state_dir",
            metavar="DIR",
            envvar="DOCKYARD_STATE_DIR",
            type=click.Path(file_okay=False),
            help=STATE_DIR_HELP,
        ),
        click.option(
            "--runtime",
            type=click.Choice(["crun", "runc"]),
            default="crun",
            show_default=True,
            help="OCI runtime of build steps.",
        ),
        click.option(
            "--snapshotter",
            type=click.Choice(["auto", "overlayfs", "native"]),
            default="auto",
            show_default=True,
            help="How snapshots are stored (auto: overlayfs where possible).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def engine_config(
    state_dir: str | None,
    runtime: str = "crun",
    snapshotter: str = "auto",
    *,
    allow: tuple[str, ...] = (),
) -> EngineConfig:
    """The embedded engine's configuration from the common options."""
    from pathlib import Path

    from dockyard.engine import EngineConfig, default_state_dir

    return EngineConfig(
        state_dir=Path(state_dir) if state_dir else default_state_dir(),
        runtime=runtime,  # type: ignore[arg-type]  # click.Choice checked it
        snapshotter=snapshotter,  # type: ignore[arg-type]
        entitlements=EngineConfig.parse_entitlements(allow),
    )


def key_values(option: str, items: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` items of a repeatable option."""
    from dockyard.core import UsageError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}


def parse_size(option: str, text: str) -> int:
    """``512MB``, ``10GB``, ``1.5g``, ``4096`` → bytes (binary multiples, as docker)."""
    import re

    from dockyard.core import UsageError

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(f"{option}: invalid size {text!r} (like 512MB or 10GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(option: str, text: str) -> float:
    """Go-style durations (``24h``, ``1h30m``, ``90s``, ``500ms``) → seconds."""
    import re

    from dockyard.core import UsageError

    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise UsageError(f"{option}: invalid duration {text!r} (like 24h, 1h30m or 90s)")
    return sum(float(n) * units[u] for n, u in parts)


class PlainProgress:
    """A :class:`~dockyard.core.Reporter` printing BuildKit's ``--progress=plain`` shape:
    each step numbered when it starts (``#3 [2/3] RUN make``), its output lines
    prefixed with the step number and the seconds since it started, ``#3 DONE 1.2s``,
    ``#3 CACHED`` or ``#3 ERROR: ...``; warnings are summarized by :meth:`summary`."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out
        self._numbers: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._finished: set[str] = set()
        self._partial: dict[tuple[str, int], bytes] = {}
        self._last: str | None = None
        self.warnings: list[Any] = []

    @property
    def out(self) -> IO[str]:
        return self._out if self._out is not None else sys.stderr

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not fail the build

    def _number(self, digest: str, name: str) -> tuple[int, bool]:
        number = self._numbers.get(digest)
        if number is not None:
            return number, False
        number = len(self._numbers) + 1
        self._numbers[digest] = number
        self._names[digest] = name
        return number, True

    def _header(self, digest: str, name: str) -> int:
        number, new = self._number(digest, name)
        if new or self._last != digest:
            if self._last is not None:
                self._write("\n")
            if new:
                self._write(f"#{number} {name}\n")
            self._last = digest
        return number

    def emit(self, event: Event) -> None:
        from dockyard.core import BuildWarning, VertexLog, VertexStatus

        if isinstance(event, VertexStatus):
            self._status(event)
        elif isinstance(event, VertexLog):
            self._log(event)
        elif isinstance(event, BuildWarning):
            self.warnings.append(event)

    def _status(self, event: Any) -> None:
        digest = event.digest
        if digest in self._finished and not event.started:
            return
        if event.cached and event.started is None:
            number = self._header(digest, event.name)
            self._write(f"#{number} CACHED\n")
            self._finished.add(digest)
            return
        if event.started is None:
            return  # seen, not started: shown once it starts
        if digest not in self._started or event.started != self._started[digest]:
            self._started[digest] = event.started
            self._finished.discard(digest)
            self._header(digest, event.name)
        if event.completed is not None and digest not in self._finished:
            self._flush_partial(digest)
            number = self._header(digest, event.name)
            took = max(event.completed - event.started, 0.0)
            if event.error:
                message = "CANCELED" if event.error == "cancelled" else f"ERROR: {event.error}"
                self._write(f"#{number} {message}\n")
            elif event.cached:
                self._write(f"#{number} CACHED\n")
            else:
                self._write(f"#{number} DONE {took:.1f}s\n")
            self._finished.add(digest)

    def _log(self, event: Any) -> None:
        key = (event.digest, event.stream)
        data = self._partial.pop(key, b"") + event.data
        lines = data.split(b"\n")
        rest = lines.pop()
        if rest:
            self._partial[key] = rest
        for line in lines:
            self._line(event.digest, line, event.timestamp)

    def _line(self, digest: str, line: bytes, timestamp: float) -> None:
        number = self._header(digest, self._names.get(digest, digest))
        since = max(timestamp - self._started.get(digest, timestamp), 0.0)
        text = line.decode("utf-8", "replace").rstrip("\r")
        self._write(f"#{number} {since:.3f} {text}\n")

    def _flush_partial(self, digest: str) -> None:
        for stream in (1, 2):
            rest = self._partial.pop((digest, stream), b"")
            if rest:
                self._line(digest, rest, time.time())

    def summary(self) -> None:
        """Print the warnings collected (if any), as BuildKit does at the end."""
        if not self.warnings:
            return
        count = len(self.warnings)
        self._write(f"\n{count} warning{'s' if count != 1 else ''} found:\n")
        for warning in self.warnings:
            where = ""
            if warning.locations:
                loc = warning.locations[0]
                if loc.ranges:
                    where = f" ({loc.filename}:{loc.ranges[0].start})"
            rule = f"{warning.rule}: " if warning.rule else ""
            self._write(f" - {rule}{warning.short}{where}\n")


def format_error(exc: DockyardError) -> str:
    """An error as a user reads it: the failing step and the last lines of its output,
    the lines of the build description it comes from, then ``ERROR: message``."""
    from dockyard.core import ExecError

    lines: list[str] = []
    tail = exc.log_tail if isinstance(exc, ExecError) else ()
    if exc.vertex is not None and (tail or isinstance(exc, ExecError)):
        lines.append("------")
        lines.append(f" > {exc.vertex.name}:")
        lines.extend(f"   {line}" for line in tail)
        lines.append("------")
    for location in exc.locations[:1]:
        source = location.lines()
        if source and location.ranges:
            first = location.ranges[0]
            lines.append(f"{location}")
            lines.append("--------------------")
            for offset, text in enumerate(source):
                number = first.start + offset
                lines.append(f"{number:>4} | >>> {text}")
            lines.append("--------------------")
    message = exc.message
    if exc.locations:
        message = f"{exc.locations[0]}: {message}"
    elif exc.vertex is not None and not isinstance(exc, ExecError):
        message = f"{exc.vertex.name}: {message}"
    lines.append(f"ERROR: {message}")
    return "\n".join(lines)


def report_error(exc: DockyardError) -> int:
    """Print ``exc`` with :func:`format_error` to stderr; its exit code."""
    click.echo(format_error(exc), err=True)
    return exc.exit_code


def handles_errors(command: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command body: a :class:`~dockyard.core.DockyardError` is printed with
    :func:`format_error` and becomes the exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        from dockyard.core import DockyardError

        try:
            return command(*args, **kwargs)
        except DockyardError as exc:
            return report_error(exc)

    return wrapper
