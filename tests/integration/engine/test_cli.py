"""``dockyard du`` and ``dockyard prune`` on a state directory (in-process ``main``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cli.main import main

from .conftest import open_engine


def _build(state: Path, *commands: str) -> None:
    async def run() -> None:
        from dockyard.engine import BuildRequest

        async with open_engine(state) as engine:
            for command in commands:
                await engine.solve(
                    BuildRequest(definition=llb.image("busybox").run(command).root.marshal())
                )

    asyncio.run(run())


def test_du_lists_records_and_prune_removes_them(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(state, "echo one > /one", "head -c 100000 /dev/zero > /big")
    assert main(["du", "--state-dir", str(state)]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "RECLAIMABLE", "SIZE", "LAST", "ACCESSED"]
    ids = [
        line.split()[0]
        for line in lines[1:]
        if line and not line.startswith(("Reclaimable", "Total", "Shared", "Private"))
    ]
    assert len(ids) >= 3  # the image's layer and the two steps
    assert "Total:" in table

    assert main(["du", "--state-dir", str(state), "--verbose", "--filter", "type=regular"]) == 0
    verbose = capsys.readouterr().out
    assert "Description:\t/bin/sh -c head -c 100000 /dev/zero > /big" in verbose
    assert "Type:\t\tregular" in verbose
    assert "source.image" not in verbose

    assert main(["prune", "--state-dir", str(state), "--filter", "description=echo one"]) == 0
    out = capsys.readouterr().out
    assert "Total:" in out
    assert main(["du", "--state-dir", str(state), "-v"]) == 0
    left = capsys.readouterr().out
    assert "echo one" not in left
    assert "/big" in left

    assert main(["prune", "--state-dir", str(state), "--all"]) == 0
    capsys.readouterr()
    assert main(["du", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["", "Reclaimable:\t0B", "Total:\t\t0B"]


def test_prune_keep_storage_and_duration(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _build(state, "head -c 300000 /dev/zero > /a", "head -c 300000 /dev/zero > /b")
    # everything was used just now: a day's keep-duration removes nothing
    assert main(["prune", "--state-dir", str(state), "--keep-duration", "24h"]) == 0
    assert capsys.readouterr().out.strip() == "Total:\t0B"

    async def usage() -> dict[str, int]:
        async with open_engine(state) as engine:
            return {r.description: r.size for r in await engine.du()}

    before = asyncio.run(usage())
    keep = sum(before.values()) - 100_000  # one 300 kB step must go: the older one
    assert main(["prune", "--state-dir", str(state), "--keep-storage", str(keep)]) == 0
    capsys.readouterr()
    after = asyncio.run(usage())
    assert set(before) - set(after) == {"/bin/sh -c head -c 300000 /dev/zero > /a"}


def test_bad_options_are_usage_errors(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--state-dir", str(state), "--keep-storage", "lots"]) == 2
    assert "--keep-storage: invalid size 'lots'" in capsys.readouterr().err
    assert main(["du", "--state-dir", str(state), "--filter", "color=red"]) == 2
    assert "unknown filter 'color'" in capsys.readouterr().err


def test_a_second_engine_process_is_refused_with_the_holder(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def hold() -> int:
        async with open_engine(state):
            return await asyncio.to_thread(main, ["du", "--state-dir", str(state)])

    assert asyncio.run(hold()) == 1
    err = capsys.readouterr().err
    assert f"ERROR: state directory {state} is in use by another Dockyard engine (pid" in err
