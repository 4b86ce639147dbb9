"""``dockyard debug dump-ast FILE``: print a Dockerfile's parse tree.

The output is BuildKit's parser dump (one ``(instruction args...)`` line per
instruction), so it can be compared with ``frontend/dockerfile/parser`` test results.
Parser warnings go to stderr.
"""

from __future__ import annotations

import sys

import click

__all__ = ["dump_ast"]


@click.command("dump-ast")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--lines", is_flag=True, help="Prefix each instruction with its line range.")
def dump_ast(file: str, lines: bool) -> None:
    """Parse FILE (a Dockerfile, or - for stdin) and print its syntax tree."""
    from dockyard.core import NotFoundError
    from dockyard.dockerfile import parse_ast

    if file == "-":
        data = sys.stdin.buffer.read()
        name = "Dockerfile"
    else:
        try:
            with open(file, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"{file}: no such file") from exc
        except OSError as exc:
            raise NotFoundError(f"{file}: cannot read: {exc.strerror}") from exc
        name = file
    ast = parse_ast(data, filename=name)
    for warning in ast.warnings:
        click.echo(f"{name}:{warning.line}: warning: {warning.message}", err=True)
    if lines:
        for node in ast.nodes:
            click.echo(f"{node.start_line}-{node.end_line}\t({node.dump()})")
    else:
        click.echo(ast.dump(), nl=False)
