"""``dockyard debug workers``: the engine's workers as ``buildctl debug workers`` shows
them (``-v``: labels, CDI devices and, for the embedded engine, the CDI spec files it
skipped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ._common import engine_client, engine_options, handles_errors

if TYPE_CHECKING:
    from dockyard.client import WorkerRecord

__all__ = ["workers"]


def _table(records: list[WorkerRecord]) -> list[str]:
    rows = [("ID", "PLATFORMS")] + [(r.id, ",".join(str(p) for p in r.platforms)) for r in records]
    width = max(len(row[0]) for row in rows)
    return [f"{row[0].ljust(width)}  {row[1]}".rstrip() for row in rows]


def _verbose(records: list[WorkerRecord]) -> list[str]:
    lines: list[str] = []
    for r in records:
        lines += [f"ID:\t\t{r.id}", f"Platforms:\t{','.join(str(p) for p in r.platforms)}"]
        lines.append("Labels:")
        lines += [f"\t{k}:\t{v}" for k, v in sorted(r.labels.items())]
        if r.devices:
            lines.append("Devices:")
            for d in r.devices:
                lines += [f"\tName:\t\t{d.name}", f"\tAutoAllow:\t{str(d.auto_allow).lower()}"]
                if d.annotations:
                    lines.append("\tAnnotations:")
                    lines += [f"\t\t{k}:\t{v}" for k, v in sorted(d.annotations.items())]
        if r.cdi_problems:
            lines.append("Skipped CDI specs:")
            lines += [f"\t{problem}" for problem in r.cdi_problems]
        lines.append("")
    return lines


@click.command("workers")
@engine_options
@click.option("-v", "--verbose", is_flag=True, help="Labels and CDI devices too.")
@handles_errors
def workers(state_dir: str | None, runtime: str, snapshotter: str, verbose: bool) -> int:
    """List the engine's workers (with -v, the CDI devices RUN --device may ask for)."""
    import asyncio

    client = engine_client(state_dir, runtime, snapshotter)  # embedded, or a daemon

    async def run() -> list[WorkerRecord]:
        async with client:
            return await client.workers()

    records = asyncio.run(run())
    click.echo("\n".join(_verbose(records) if verbose else _table(records)).rstrip("\n"))
    return 0
