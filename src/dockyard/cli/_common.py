"""Shared pieces of the engine commands (``solve``, ``du``, ``prune``; later ``build``):
engine options, sizes and durations, and errors as a user reads them (progress itself is
:mod:`dockyard.cli.progress`).

Everything heavy is imported inside functions: importing this module costs click only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dockyard.client import Client
    from dockyard.core import DockyardError
    from dockyard.engine import EngineConfig

__all__ = [
    "engine_client",
    "engine_config",
    "engine_options",
    "format_error",
    "key_values",
    "parse_duration",
    "parse_size",
    "report_error",
    "write_texts",
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


def engine_client(
    state_dir: str | None,
    runtime: str = "crun",
    snapshotter: str = "auto",
    *,
    addr: str | None = None,
    allow: tuple[str, ...] = (),
) -> Client:
    """The client of an engine command: a daemon when ``addr`` (else ``dockyard
    --addr``, else ``$DOCKYARD_HOST``) names one or, without ``--state-dir``, one
    listens on the default socket; else the engine embedded on ``state_dir`` (granting
    ``allow``: its user runs it). See :mod:`dockyard.client`."""
    from dockyard.client import Client, select_address

    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    address = select_address(
        addr or meta.get("dockyard.addr"), state_dir_given=state_dir is not None
    )
    if address is not None:
        from dockyard.client import ClientTls

        tls = meta.get("dockyard.tls", (None, None, None))
        return Client.connect(address, tls=ClientTls.from_files(*tls))
    return Client.embedded(engine_config(state_dir, runtime, snapshotter, allow=allow))


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
    from dockyard.core import UsageError
    from dockyard.core.durations import parse_go_duration

    try:
        seconds = parse_go_duration(text.strip()) / 1e9
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise UsageError(f"{option}: invalid duration {text!r} (like 24h, 1h30m or 90s)")
    return seconds


def format_error(exc: DockyardError, *, step_log: bool = True, prefix: str = "") -> str:
    """An error as a user reads it (buildx's form): the failing step and the last lines
    of its output (unless ``step_log`` is false, when the progress renderer already
    showed that log), the lines of the build description it comes from, then
    ``ERROR: message`` (``ERROR: {prefix}message``: ``failed to solve: `` for a build)."""
    from dockyard.cli.progress import error_log_block, source_snippet
    from dockyard.core import ExecError

    lines: list[str] = []
    if step_log and isinstance(exc, ExecError) and exc.vertex is not None:
        lines += error_log_block(exc.vertex.name, exc.log_tail)
    if exc.locations and exc.locations[0].data is not None:
        lines += source_snippet(exc.locations[0])
    message = exc.message
    if exc.locations:
        message = f"{exc.locations[0]}: {message}"
    elif exc.vertex is not None and not isinstance(exc, ExecError):
        message = f"{exc.vertex.name}: {message}"
    lines.append(f"ERROR: {prefix}{message}")
    return "\n".join(lines)


def write_texts(items: Iterable[tuple[str | None, str | None]]) -> None:
    """Write each ``(path, text)`` (``--iidfile``, ``--metadata-file``), skipping those
    with no path or no text; a :class:`~dockyard.core.DockyardError` naming the file
    that cannot be written."""
    from pathlib import Path

    from dockyard.core import DockyardError

    for path, text in items:
        if path is None or text is None:
            continue
        try:
            Path(path).write_text(text)
        except OSError as exc:
            raise DockyardError(f"cannot write {path}: {exc.strerror or exc}") from exc


def report_error(exc: DockyardError, *, step_log: bool = True, prefix: str = "") -> int:
    """Print ``exc`` with :func:`format_error` to stderr; its exit code."""
    click.echo(format_error(exc, step_log=step_log, prefix=prefix), err=True)
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
