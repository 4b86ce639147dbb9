"""``dockyard debug``: inspection commands (dump-llb, dump-ast)."""

from __future__ import annotations

import click

__all__ = ["debug"]


@click.group()
def debug() -> None:
    """Inspect build graphs and Dockerfiles."""
