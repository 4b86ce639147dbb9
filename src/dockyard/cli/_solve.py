"""``dockyard solve``: build an LLB Definition (a file or stdin) or a Python build file
on the embedded engine, and export the result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import (
    engine_config,
    engine_options,
    handles_errors,
    key_values,
    report_error,
)

if TYPE_CHECKING:
    from dockyard.core import Reporter
    from dockyard.engine import BuildRequest, EngineConfig, SolveResponse
    from dockyard.exporter import ExportOptions
    from dockyard.session import Secrets, Session

__all__ = ["solve"]


@click.command("solve")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="type=local,dest=DIR|type=tar,dest=FILE",
    help="Export the result (repeatable).",
)
@click.option(
    "--local",
    "locals_",
    multiple=True,
    metavar="NAME=DIR",
    help="Serve DIR as the local source NAME (llb.local(NAME); repeatable).",
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Build argument for a Python build file (repeatable).",
)
@click.option(
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="Target platform of a Python build file (default: this host's).",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="id=ID,src=PATH|env=VAR",
    help="Secret the build may mount (repeatable).",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    type=click.Choice(["network.host", "security.insecure"]),
    help="Grant an entitlement the build asks for (repeatable).",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "tty", "plain", "rawjson", "quiet"]),
    default="auto",
    show_default=True,
    help="How to show progress on stderr (auto: tty on a terminal, else plain).",
)
@engine_options
@handles_errors
def solve(
    file: str | None,
    outputs: tuple[str, ...],
    locals_: tuple[str, ...],
    build_args: tuple[str, ...],
    platform: str | None,
    secrets: tuple[str, ...],
    allow: tuple[str, ...],
    progress: str,
    state_dir: str | None,
    runtime: str,
    snapshotter: str,
) -> int:
    """Build FILE: a binary LLB Definition (or stdin with - or no FILE), or a Python
    build file (*.py) whose build() returns a State."""
    import asyncio

    from dockyard.cli.progress import make_renderer
    from dockyard.core import DockyardError, UsageError

    build_file = file is not None and file != "-" and file.endswith(".py")
    if not build_file and (build_args or platform):
        raise UsageError("--build-arg and --platform apply to a Python build file (*.py) only")
    config = engine_config(state_dir, runtime, snapshotter, allow=allow)
    directories = key_values("--local", locals_)
    for name, path in directories.items():
        if not Path(path).is_dir():
            raise UsageError(f"--local {name}={path}: not a directory")
    request = _request(file, build_file, build_args, platform, allow)
    exports = _exports(outputs)
    session = _session(directories, secrets)
    renderer = make_renderer(progress, sys.stderr)
    try:
        asyncio.run(_run(config, request, exports, session, renderer))
    except DockyardError as exc:
        renderer.close()  # the progress and the failed step's log come first
        return report_error(exc, step_log=progress in ("quiet", "rawjson"))
    finally:
        renderer.close()
    return 0


def _request(
    file: str | None,
    build_file: bool,
    build_args: tuple[str, ...],
    platform: str | None,
    allow: tuple[str, ...],
) -> BuildRequest:
    from dockyard.core import Platform, UsageError
    from dockyard.engine import BuildRequest, EngineConfig

    entitlements = EngineConfig.parse_entitlements(allow)
    if build_file:
        from dockyard.frontend import PYTHON_FRONTEND, PythonOptions

        assert file is not None
        try:
            target = Platform.parse(platform) if platform else None
        except ValueError as exc:
            raise UsageError(f"--platform: {exc}") from exc
        options = PythonOptions(
            path=Path(file), build_args=key_values("--build-arg", build_args), platform=target
        )
        return BuildRequest(
            frontend=PYTHON_FRONTEND,
            frontend_options=options,
            entitlements=entitlements,
            name=Path(file).name,
        )
    from dockyard.llb import Definition

    return BuildRequest(
        definition=Definition.load(_read(file)),
        entitlements=entitlements,
        name=file if file and file != "-" else "stdin",
    )


def _read(file: str | None) -> bytes:
    from dockyard.core import NotFoundError, UsageError

    if file is None or file == "-":
        if sys.stdin.isatty():
            raise UsageError("no Definition on stdin: give a FILE or pipe one in")
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{file}: no such file") from exc
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror or exc}") from exc


def _exports(outputs: tuple[str, ...]) -> tuple[ExportOptions, ...]:
    """The exporter requests: the embedded engine writes to paths (and stdout) itself."""
    from dockyard.exporter import parse_output

    return tuple(parse_output(spec) for spec in outputs)


def _session(directories: dict[str, str], secrets: tuple[str, ...]) -> Session:
    from dockyard.session import Session

    return Session(name="dockyard solve", directories=directories, secrets=_secrets(secrets))


def _secrets(items: tuple[str, ...]) -> Secrets | None:
    from dockyard.session import Secrets, SecretSource

    if not items:
        return None
    return Secrets(SecretSource.parse(item) for item in items)


async def _run(
    config: EngineConfig,
    request: BuildRequest,
    exports: tuple[ExportOptions, ...],
    session: Session,
    reporter: Reporter | None,
) -> SolveResponse:
    import dataclasses

    from dockyard.engine import Engine

    async with await Engine.open(config) as engine, engine.sessions.attach(session):
        return await engine.solve(
            dataclasses.replace(request, exports=exports, session_id=session.id, reporter=reporter)
        )
