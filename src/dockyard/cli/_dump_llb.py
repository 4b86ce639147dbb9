"""``dockyard debug dump-llb``: print an LLB Definition one op per line, as JSON.

The Definition comes from a file (or stdin), from a Python build file (``--python``), or
from converting a Dockerfile (``--dockerfile``). Without an engine, base images are not
looked up: ``FROM`` images are used by tag, with unknown configs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._build import run_flag_options

if TYPE_CHECKING:
    from dockyard.core import Platform
    from dockyard.llb import Definition

    from ._build import RunFlags

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
    "--dockerfile",
    "dockerfile",
    metavar="DOCKERFILE",
    type=click.Path(dir_okay=False),
    help="Convert DOCKERFILE and dump the target stage's graph.",
)
@click.option(
    "--target",
    "target",
    metavar="STAGE",
    help="Stage to convert, by name or index (with --dockerfile; default: the last).",
)
@click.option(
    "--context",
    "context_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Build context whose .dockerignore applies (with --dockerfile; default: the "
    "Dockerfile's directory).",
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Build argument for --python or --dockerfile (repeatable).",
)
@click.option(
    "--platform",
    "platform",
    metavar="OS/ARCH[/VARIANT]",
    help="Target platform (with --python or --dockerfile; default: this host's).",
)
@run_flag_options
def dump_llb(
    file: str | None,
    build_file: str | None,
    dockerfile: str | None,
    target: str | None,
    context_dir: str | None,
    build_args: tuple[str, ...],
    platform: str | None,
    add_hosts: tuple[str, ...],
    ulimits: tuple[str, ...],
    shm_size: str | None,
    cgroup_parent: str | None,
) -> None:
    """Print each op of an LLB Definition (read from FILE, or stdin with - or no FILE) as
    one JSON object per line: Digest, Op (protobuf JSON) and OpMetadata, in Definition
    order, like `buildctl debug dump-llb`. Build checks of a Dockerfile go to stderr.
    --add-host, --ulimit, --shm-size and --cgroup-parent go on the Dockerfile's RUN
    steps, as with `dockyard build`."""
    from dockyard.core import UsageError

    sources = [name for name, given in (("FILE", file), ("--python", build_file)) if given]
    if dockerfile is not None:
        sources.append("--dockerfile")
    if len(sources) > 1:
        raise UsageError(
            "give one of FILE, --python BUILD_FILE or --dockerfile DOCKERFILE, not both "
            + " and ".join(sources)
        )
    if dockerfile is None and (target or context_dir):
        raise UsageError("--target and --context apply to --dockerfile only")
    run_given = [
        flag
        for flag, given in (
            ("--add-host", add_hosts),
            ("--ulimit", ulimits),
            ("--shm-size", shm_size is not None),
            ("--cgroup-parent", cgroup_parent is not None),
        )
        if given
    ]
    if dockerfile is None and run_given:
        raise UsageError(f"{', '.join(run_given)}: RUN flags apply to --dockerfile only")
    from ._build import run_flags

    run = run_flags(
        add_hosts=add_hosts, ulimits=ulimits, shm_size=shm_size, cgroup_parent=cgroup_parent
    )
    if build_file is not None or dockerfile is not None:
        args = _build_args(build_args)
        target_platform = _platform(platform)
        if build_file is not None:
            from dockyard.frontend import load_build_file

            state = load_build_file(build_file, build_args=args, platform=target_platform)
            definition = state.marshal(platform=target_platform)
        else:
            assert dockerfile is not None
            definition = _convert(dockerfile, target, context_dir, args, target_platform, run)
    else:
        if build_args or platform:
            raise UsageError(
                "--build-arg and --platform apply to --python only (or --dockerfile), "
                "not to a Definition FILE"
            )
        from dockyard.llb import Definition

        definition = Definition.load(_read(file))
    click.echo(definition.dump_json(), nl=False)


def _build_args(items: tuple[str, ...]) -> dict[str, str]:
    from dockyard.core import UsageError

    args: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise UsageError(f"--build-arg expects KEY=VALUE, got {item!r}")
        args[key] = value
    return args


def _platform(text: str | None) -> Platform | None:
    from dockyard.core import Platform, UsageError

    try:
        return Platform.parse(text) if text else None
    except ValueError as exc:
        raise UsageError(f"--platform: {exc}") from exc


def _convert(
    dockerfile: str,
    target: str | None,
    context_dir: str | None,
    build_args: dict[str, str],
    platform: Platform | None,
    run: RunFlags,
) -> Definition:
    import asyncio

    from dockyard.core import NotFoundError, UsageError
    from dockyard.dockerfile import (
        ConvertOptions,
        UnresolvedImages,
        convert,
        load_dockerignore,
        parse_dockerfile,
    )

    path = Path(dockerfile)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{dockerfile}: no such file") from exc
    except OSError as exc:
        raise UsageError(f"{dockerfile}: {exc.strerror or exc}") from exc
    context = Path(context_dir) if context_dir is not None else path.parent
    ignore = load_dockerignore(context, path)
    parsed = parse_dockerfile(data, filename=path.name)
    options = ConvertOptions(
        target=target,
        build_args=build_args,
        target_platform=platform,
        dockerignore=ignore.patterns,
        extra_hosts=run.extra_hosts,
        ulimits=run.ulimits,
        shm_size=run.shm_size,
        cgroup_parent=run.cgroup_parent,
    )
    result = asyncio.run(convert(parsed, options, UnresolvedImages()))
    for warning in result.warnings:
        click.echo(f"WARNING: {warning.short}", err=True)
    return result.definition()


def _read(file: str | None) -> bytes:
    from dockyard.core import NotFoundError, UsageError

    if file is None or file == "-":
        if sys.stdin.isatty():
            raise UsageError(
                "no Definition on stdin: give a FILE, pipe one in, or use --python or --dockerfile"
            )
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{file}: no such file") from exc
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror or exc}") from exc
