"""``dockyard solve``: build an LLB Definition (a file or stdin) or a Python build file
and export the result — on the engine embedded in this process, or on a ``dockyardd``
daemon (``--addr``, ``dockyard --addr``, ``$DOCKYARD_HOST``, or a daemon listening on
the default socket without ``--state-dir``: the rules ``dockyard build`` follows), the
way ``buildctl build`` sends a Definition to buildkitd.

Through a daemon, ``--local`` directories and secrets are served over the build's
session and ``-o type=local|tar`` outputs are written on this host. A Python build file
never runs in the daemon: it runs here and its Definition is sent
(:meth:`dockyard.client.Client.solve`). Exit codes: 0 built, 1 the build failed, 2 a
usage error — the same on both.
"""

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
    from dockyard import llb
    from dockyard.client import Client
    from dockyard.core import Reporter
    from dockyard.engine import BuildRequest, EngineConfig, SolveResponse
    from dockyard.exporter import ExportOptions
    from dockyard.frontend import PythonOptions
    from dockyard.session import Secrets, Session

__all__ = ["solve"]

# dockyard.client.HOST_ENV and DEFAULT_SOCKET (written here too so that the embedded path
# need not load the client to learn that no daemon is named; a test keeps them equal)
_HOST_ENV = "DOCKYARD_HOST"
_DEFAULT_SOCKET = "/run/dockyard/dockyardd.sock"


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
    help="Target platform of a Python build file (default: the engine's; a daemon's own).",
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
    metavar="network.host|security.insecure|device[=NAME[,alias=ALIAS]]",
    help="Grant an entitlement the build asks for (repeatable); device: the CDI devices"
    " RUN --device asks for (all of them, or those NAME selects).",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "tty", "plain", "rawjson", "quiet"]),
    default="auto",
    show_default=True,
    help="How to show progress on stderr (auto: tty on a terminal, else plain).",
)
@click.option(
    "--addr",
    metavar="unix://PATH|tcp://HOST:PORT",
    help="The dockyardd daemon to build on (as dockyard --addr).",
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
    addr: str | None,
    state_dir: str | None,
    runtime: str,
    snapshotter: str,
) -> int:
    """Build FILE: a binary LLB Definition (or stdin with - or no FILE), or a Python
    build file (*.py) whose build() returns a State.

    On a dockyardd daemon (--addr, $DOCKYARD_HOST, or one on the default socket
    without --state-dir) a build file runs in this process and only its Definition
    is sent; --local directories and secrets are served from here and outputs are
    written here."""
    import asyncio

    from dockyard.cli.progress import make_renderer
    from dockyard.core import DockyardError, UsageError

    build_file = file is not None and file != "-" and file.endswith(".py")
    if not build_file and (build_args or platform):
        raise UsageError("--build-arg and --platform apply to a Python build file (*.py) only")
    address = _daemon_address(addr, state_dir)
    if address is not None:
        return _solve_on_daemon(
            address,
            file=file,
            build_file=build_file,
            outputs=outputs,
            locals_=locals_,
            build_args=build_args,
            platform=platform,
            secrets=secrets,
            allow=allow,
            progress=progress,
        )
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


def _daemon_address(addr: str | None, state_dir: str | None) -> str | None:
    """The daemon to solve on (``dockyard build``'s rules: ``--addr``, else ``dockyard
    --addr``, else ``$DOCKYARD_HOST``, else without ``--state-dir`` a daemon listening
    on the default socket), or ``None`` for the embedded engine."""
    import os

    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    address = addr or meta.get("dockyard.addr")
    if (
        not address
        and not os.environ.get(_HOST_ENV, "").strip()
        and (state_dir is not None or not os.path.exists(_DEFAULT_SOCKET))
    ):
        return None  # nothing can name a daemon: the embedded path loads no client
    from dockyard.client import select_address

    return select_address(address, state_dir_given=state_dir is not None)


def _solve_on_daemon(
    address: str,
    *,
    file: str | None,
    build_file: bool,
    outputs: tuple[str, ...],
    locals_: tuple[str, ...],
    build_args: tuple[str, ...],
    platform: str | None,
    secrets: tuple[str, ...],
    allow: tuple[str, ...],
    progress: str,
) -> int:
    """``dockyard solve`` through the daemon at ``address`` (a build file evaluated in
    this process); its exit code, errors reported as the embedded path reports them."""
    import asyncio

    from dockyard.cli.progress import make_renderer
    from dockyard.client import Client, ClientTls
    from dockyard.core import DockyardError, UsageError

    directories = key_values("--local", locals_)
    for name, path in directories.items():
        if not Path(path).is_dir():
            raise UsageError(f"--local {name}={path}: not a directory")
    target: llb.Definition | PythonOptions
    if build_file:
        assert file is not None
        target = _build_file(file, build_args, platform)
    else:
        from dockyard.llb import Definition

        target = Definition.load(_read(file))
    exports = _exports(outputs)
    store = _secrets(secrets)
    ctx = click.get_current_context(silent=True)
    tls = ctx.meta.get("dockyard.tls", (None, None, None)) if ctx is not None else (None,) * 3
    client = Client.connect(address, tls=ClientTls.from_files(*tls))
    renderer = make_renderer(progress, sys.stderr)
    try:
        asyncio.run(
            _run_on_daemon(
                client,
                target,
                directories=directories,
                secrets=store,
                exports=exports,
                entitlements=frozenset(allow),
                reporter=renderer,
                name=_name(file, build_file),
            )
        )
    except DockyardError as exc:
        renderer.close()  # the progress and the failed step's log come first
        return report_error(exc, step_log=progress in ("quiet", "rawjson"))
    finally:
        renderer.close()
    return 0


async def _run_on_daemon(
    client: Client,
    target: llb.Definition | PythonOptions,
    *,
    directories: dict[str, str],
    secrets: Secrets | None,
    exports: tuple[ExportOptions, ...],
    entitlements: frozenset[str],
    reporter: Reporter,
    name: str,
) -> None:
    from dockyard.registry import DockerConfigCredentials

    async with client:
        await client.solve(
            target,
            directories=directories,
            secrets=secrets,
            credentials=DockerConfigCredentials(),
            exports=exports,
            entitlements=entitlements,
            reporter=reporter,
            name=name,
        )


def _name(file: str | None, build_file: bool) -> str:
    if build_file:
        assert file is not None
        return Path(file).name
    return file if file and file != "-" else "stdin"


def _build_file(file: str, build_args: tuple[str, ...], platform: str | None) -> PythonOptions:
    from dockyard.core import Platform, UsageError
    from dockyard.frontend import PythonOptions

    try:
        target = Platform.parse(platform) if platform else None
    except ValueError as exc:
        raise UsageError(f"--platform: {exc}") from exc
    return PythonOptions(
        path=Path(file), build_args=key_values("--build-arg", build_args), platform=target
    )


def _request(
    file: str | None,
    build_file: bool,
    build_args: tuple[str, ...],
    platform: str | None,
    allow: tuple[str, ...],
) -> BuildRequest:
    from dockyard.engine import BuildRequest, EngineConfig

    entitlements = EngineConfig.parse_entitlements(allow)
    if build_file:
        from dockyard.frontend import PYTHON_FRONTEND

        assert file is not None
        options = _build_file(file, build_args, platform)
        return BuildRequest(
            frontend=PYTHON_FRONTEND,
            frontend_options=options,
            entitlements=entitlements,
            name=_name(file, build_file),
        )
    from dockyard.llb import Definition

    return BuildRequest(
        definition=Definition.load(_read(file)),
        entitlements=entitlements,
        name=_name(file, build_file),
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
