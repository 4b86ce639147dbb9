"""The ``dockyard`` command: a thin layer over the public client.

Subcommands are loaded lazily (``_COMMANDS`` maps a name to ``module:attribute``) so that
``dockyard --version`` and ``dockyard --help`` import nothing heavy.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import click

from dockyard import __version__

__all__ = [
    "LazyGroup",
    "cancel_on_sigterm",
    "cli",
    "end_process",
    "exit_code",
    "main",
    "run",
    "run_command",
]

# name -> "module:attribute" of a click.Command; imported only when invoked.
_COMMANDS: dict[str, str] = {
    "build": "dockyard.cli._build:build",
    "debug": "dockyard.cli.debug:debug",
    "du": "dockyard.cli._du:du",
    "image": "dockyard.cli._images:image",
    "history": "dockyard.cli._images:image_history",
    "images": "dockyard.cli._images:images",
    "prune": "dockyard.cli._du:prune",
    "pull": "dockyard.cli._image_registry:image_pull",
    "push": "dockyard.cli._image_registry:image_push",
    "rmi": "dockyard.cli._images:rmi",
    "solve": "dockyard.cli._solve:solve",
    "tag": "dockyard.cli._images:image_tag",
}


class LazyGroup(click.Group):
    """A click group whose subcommands load when invoked: ``lazy_commands`` maps a name to
    the ``module:attribute`` of a :class:`click.Command` (``@click.group(cls=LazyGroup,
    lazy_commands={...})``)."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests only among the commands it has loaded: a typo of a lazy one
        # ("buld") got no "Did you mean 'build'?"
        name = args[0] if args else ""
        if (
            name
            and not name.startswith("-")
            and not ctx.resilient_parsing
            and name not in self.lazy_commands
            and super().get_command(ctx, name) is None
        ):
            from difflib import get_close_matches

            close = [repr(c) for c in get_close_matches(name, self.list_commands(ctx))]
            hint = (
                f" Did you mean {close[0]}?"
                if len(close) == 1
                else f" (Did you mean one of: {', '.join(close)}?)"
                if close
                else ""
            )
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


class _StdioClosed(Exception):
    """Whoever read the command's stdout or stderr went away (see :mod:`._stdio`)."""


def _broken_stdio(exc: BaseException) -> bool:
    """Whether ``exc`` (or, for a group from a task group, each of its leaves) is a
    broken pipe of stdout or stderr."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_broken_stdio(inner) for inner in exc.exceptions)
    if not isinstance(exc, BrokenPipeError):
        return False
    from dockyard.cli import _stdio

    return _stdio.reader_gone()


class _RootGroup(LazyGroup):
    # click turns a broken pipe into exit 1 (and swallows later flushes); a Go CLI dies
    # of SIGPIPE instead (see ._stdio). Parsing prints --help and --version.

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError as exc:
            if _broken_stdio(exc):
                raise _StdioClosed from exc
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (BrokenPipeError, BaseExceptionGroup) as exc:
            if _broken_stdio(exc):
                raise _StdioClosed from exc
            raise


@click.group(
    cls=_RootGroup,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", prog_name="dockyard", message="%(prog)s %(version)s"
)
@click.option(
    "--addr",
    metavar="unix://PATH|tcp://HOST:PORT",
    help="The dockyardd daemon to build on [env DOCKYARD_HOST; default: the daemon on "
    "/run/dockyard/dockyardd.sock if one listens there, else an engine in this process].",
)
@click.option(
    "--tlscacert",
    metavar="FILE",
    envvar="DOCKYARD_TLSCACERT",
    help="CA of a tcp daemon's certificate.",
)
@click.option(
    "--tlscert", metavar="FILE", envvar="DOCKYARD_TLSCERT", help="Client certificate (tcp)."
)
@click.option("--tlskey", metavar="FILE", envvar="DOCKYARD_TLSKEY", help="Client key (tcp).")
@click.pass_context
def cli(
    ctx: click.Context,
    addr: str | None,
    tlscacert: str | None,
    tlscert: str | None,
    tlskey: str | None,
) -> None:
    """Dockyard: build container images, fast.

    Commands start warm: the first one leaves a server that has imported the engine, and
    later ones run in a process it forks for them (with their own environment, files and
    signals). DOCKYARD_WARM=0 runs a command entirely in its own process;
    DOCKYARD_WARM_IDLE=SECONDS is how long an unused server stays (900).
    """
    ctx.meta["dockyard.addr"] = addr
    ctx.meta["dockyard.tls"] = (tlscacert, tlscert, tlskey)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (without the program name) and return the exit code.

    Exit codes: 0 success, 1 the build (or operation) failed, 2 usage error, 130
    interrupted; ``-SIGPIPE`` (as :class:`subprocess.Popen`'s ``returncode``) when the
    reader of stdout or stderr went away (:mod:`._stdio`): :func:`end_process` ends the
    process by that signal, as a Go CLI ends.
    """
    import signal

    from dockyard.cli import _stdio

    try:
        code = _main(argv)
    except BrokenPipeError:  # writing the error itself failed
        if not _stdio.reader_gone():
            raise
        return -signal.SIGPIPE
    # a progress renderer found stderr's reader gone and cancelled the command
    return -signal.SIGPIPE if _stdio.interrupted() else code


def _main(argv: Sequence[str] | None) -> int:
    import signal

    from dockyard.cli import _stdio
    from dockyard.core import DockyardError

    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="dockyard",
            standalone_mode=False,
        )
    except _StdioClosed:
        return -signal.SIGPIPE
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        if not _stdio.interrupted():
            click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else int(exc.exit_code or 1)
    except DockyardError as exc:
        click.echo(f"ERROR: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        if not _stdio.interrupted():
            click.echo("Interrupted.", err=True)
        return 130
    return result if isinstance(result, int) else 0


_terminated: list[int] = []


def cancel_on_sigterm() -> None:
    """Make SIGTERM cancel the command like Ctrl-C does (the build stops its steps and
    cleans up) and the process exit with 143, not die on the spot leaving containers
    running. Only for a process that is the command (the console script, a warm child)."""
    import signal

    def terminate(signum: int, frame: Any) -> None:
        _terminated.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)  # asyncio's: cancels the running build
        else:
            raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)


def exit_code(code: int) -> int:
    """``code``, or 143 when SIGTERM ended the command (:func:`cancel_on_sigterm`)."""
    return 128 + _terminated[0] if _terminated else code


def run_command(argv: Sequence[str] | None = None) -> int:
    """Run ``argv`` as the whole process's command (the console script, a warm child):
    the collector tuned for start-up, SIGTERM cancelling like Ctrl-C; the exit code."""
    from dockyard.cli import _gc

    _gc.startup()
    cancel_on_sigterm()
    code = exit_code(main(argv))
    try:  # what is still buffered; else the interpreter's exit reports the broken pipe
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BrokenPipeError:
        from dockyard.cli import _stdio

        if not _stdio.reader_gone():
            raise
        import signal

        return -signal.SIGPIPE
    return code


def end_process(code: int) -> NoReturn:
    """Exit with ``code``; a negative one is a signal (:func:`main`) the process ends by,
    quietly: nothing more is written or flushed."""
    if code >= 0:
        sys.exit(code)
    import os
    import signal

    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {-code})
    os._exit(128 - code)  # not reached: the signal ends the process


def run() -> None:
    """Console-script entry point."""
    end_process(run_command())
