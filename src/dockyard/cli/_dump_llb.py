"""``dockyard debug dump-llb``: print an LLB Definition one op per line, as JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["dump_llb"]


@click.command("dump-llb")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--python",
    "build_file",
    metavar="BUILD_FILE",
    type=click.Path(dir_okay=False),
    help="Dump the graph that BUILD_FILE's build() returns instead of reading a Definition.",
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Build argument for --python (repeatable).",
)
@click.option(
    "--platform",
    "platform",
    metavar="OS/ARCH[/VARIANT]",
    help="Default platform of the graph (with --python; default: this host's).",
)
def dump_llb(
    file: str | None, build_file: str | None, build_args: tuple[str, ...], platform: str | None
) -> None:
    """Print each op of an LLB Definition (read from FILE, or stdin with - or no FILE) as
    one JSON object per line: Digest, Op (protobuf JSON) and OpMetadata, in Definition
    order, like `buildctl debug dump-llb`."""
    from dockyard.core import Platform, UsageError

    if build_file is not None:
        if file is not None:
            raise UsageError("give either FILE or --python BUILD_FILE, not both")
        args: dict[str, str] = {}
        for item in build_args:
            key, sep, value = item.partition("=")
            if not key or not sep:
                raise UsageError(f"--build-arg expects KEY=VALUE, got {item!r}")
            args[key] = value
        try:
            target = Platform.parse(platform) if platform else None
        except ValueError as exc:
            raise UsageError(f"--platform: {exc}") from exc
        from dockyard.frontend import load_build_file

        state = load_build_file(build_file, build_args=args, platform=target)
        definition = state.marshal(platform=target)
    else:
        if build_args or platform:
            raise UsageError("--build-arg and --platform apply to --python only")
        from dockyard.llb import Definition

        definition = Definition.load(_read(file))
    click.echo(definition.dump_json(), nl=False)


def _read(file: str | None) -> bytes:
    from dockyard.core import NotFoundError, UsageError

    if file is None or file == "-":
        if sys.stdin.isatty():
            raise UsageError("no Definition on stdin: give a FILE, pipe one in, or use --python")
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{file}: no such file") from exc
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror or exc}") from exc
