"""``dockyard du`` and ``dockyard prune``: the build cache's disk usage, and reclaiming it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from ._common import engine_client, engine_options, handles_errors, parse_duration, parse_size

if TYPE_CHECKING:
    from dockyard.cache import UsageFilter, UsageRecord

__all__ = ["du", "prune"]


def _human(size: int) -> str:
    """Sizes as docker prints them (``1.23MB``, decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _ago(when: float | None) -> str:
    if when is None:
        return "-"
    seconds = max(time.time() - when, 0.0)
    for unit, length in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= length:
            return f"{int(seconds // length)} {unit} ago"
    return f"{int(seconds)} seconds ago"


def _filters(items: tuple[str, ...]) -> UsageFilter | None:
    if not items:
        return None
    from dockyard.cache import UsageFilter

    return UsageFilter.parse(items)


def _table(records: list[UsageRecord]) -> list[str]:
    rows = [("ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED")]
    for r in records:
        reclaimable = "false" if r.in_use or r.shared else "true"
        rows.append(
            (r.id + ("*" if r.mutable else ""), reclaimable, _human(r.size), _ago(r.last_used))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _verbose(records: list[UsageRecord]) -> list[str]:
    lines: list[str] = []
    for r in records:
        lines += [
            f"ID:\t\t{r.id}",
        ]
        if r.parents:
            lines.append(f"Parents:\t{', '.join(r.parents)}")
        lines += [
            f"Created at:\t{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.created))}",
            f"Mutable:\t{str(r.mutable).lower()}",
            f"Reclaimable:\t{str(not (r.in_use or r.shared)).lower()}",
            f"Shared:\t\t{str(r.shared).lower()}",
            f"Size:\t\t{_human(r.size)}",
        ]
        if r.description:
            lines.append(f"Description:\t{r.description}")
        lines += [
            f"Usage count:\t{r.usage_count}",
            f"Last used:\t{_ago(r.last_used)}",
            f"Type:\t\t{r.record_type.value}",
            "",
        ]
    return lines


def _totals(records: list[UsageRecord]) -> list[str]:
    shared = sum(r.size for r in records if r.shared)
    reclaimable = sum(r.size for r in records if not (r.in_use or r.shared))
    total = sum(r.size for r in records)
    lines = []
    if shared:
        lines.append(f"Shared:\t\t{_human(shared)}")
        lines.append(f"Private:\t{_human(total - shared)}")
    lines.append(f"Reclaimable:\t{_human(reclaimable)}")
    lines.append(f"Total:\t\t{_human(total)}")
    return lines


@click.command("du")
@engine_options
@click.option("-v", "--verbose", is_flag=True, help="Every record in detail.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only records matching (type=, id=, description=, mutable=, inuse=; repeatable).",
)
@handles_errors
def du(
    state_dir: str | None, runtime: str, snapshotter: str, verbose: bool, filters: tuple[str, ...]
) -> int:
    """Show the disk usage of the build cache."""
    import asyncio

    client = engine_client(state_dir, runtime, snapshotter)  # embedded, or a daemon
    selected = _filters(filters)

    async def run() -> list[UsageRecord]:
        async with client:
            return await client.du(selected)

    records = asyncio.run(run())
    lines = _verbose(records) if verbose else _table(records)
    if not verbose:
        lines.append("")
    lines += _totals(records)
    click.echo("\n".join(lines))
    return 0


@click.command("prune")
@engine_options
@click.option(
    "-a", "--all", "all_", is_flag=True, help="Also remove internal and frontend records."
)
@click.option(
    "--keep-duration",
    metavar="DURATION",
    help="Keep records used more recently than this (like 24h, 90m).",
)
@click.option(
    "--keep-storage",
    metavar="SIZE",
    help="Keep this much of the cache, least recently used removed first (like 10GB).",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only records matching (type=, id=, description=, mutable=, inuse=; repeatable).",
)
@click.option("-v", "--verbose", is_flag=True, help="List every record removed.")
@handles_errors
def prune(
    state_dir: str | None,
    runtime: str,
    snapshotter: str,
    all_: bool,
    keep_duration: str | None,
    keep_storage: str | None,
    filters: tuple[str, ...],
    verbose: bool,
) -> int:
    """Remove build cache records no build is using."""
    import asyncio

    from dockyard.engine import PruneResult

    client = engine_client(state_dir, runtime, snapshotter)  # embedded, or a daemon
    duration = parse_duration("--keep-duration", keep_duration) if keep_duration else None
    storage = parse_size("--keep-storage", keep_storage) if keep_storage else None
    selected = _filters(filters)

    async def run() -> PruneResult:
        async with client:
            return await client.prune(
                all=all_, keep_duration=duration, keep_storage=storage, filters=selected
            )

    result = asyncio.run(run())
    records = list(result.records)
    if verbose and records:
        click.echo("\n".join(_verbose(records)))
    elif records:
        click.echo("\n".join(_table(records)))
        click.echo()
    click.echo(f"Total:\t{_human(result.reclaimed)}")
    return 0
