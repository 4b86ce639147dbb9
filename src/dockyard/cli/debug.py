"""``dockyard debug``: inspection commands. Subcommands live in their own modules and are
imported only when invoked."""

from __future__ import annotations

import click

from dockyard.cli.main import LazyGroup

__all__ = ["debug"]

_SUBCOMMANDS: dict[str, str] = {
    "binfmt": "dockyard.cli._binfmt:binfmt",
    "dump-llb": "dockyard.cli._dump_llb:dump_llb",
    "dump-ast": "dockyard.cli._dump_ast:dump_ast",
    "workers": "dockyard.cli._workers:workers",
}


@click.group(cls=LazyGroup, lazy_commands=_SUBCOMMANDS)
def debug() -> None:
    """Inspect build graphs, Dockerfiles, the platforms this host runs and the engine's
    workers (their CDI devices)."""
