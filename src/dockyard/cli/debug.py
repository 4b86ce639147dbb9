"""``dockyard debug``: inspection commands. Subcommands live in their own modules and are
imported only when invoked."""

from __future__ import annotations

import importlib

import click

__all__ = ["debug"]

_SUBCOMMANDS: dict[str, str] = {
    "dump-llb": "dockyard.cli._dump_llb:dump_llb",
    "dump-ast": "dockyard.cli._dump_ast:dump_ast",
}


class _LazyDebugGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyDebugGroup)
def debug() -> None:
    """Inspect build graphs and Dockerfiles."""
