"""The console scripts' garbage collector settings (dockyard.cli._gc)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dockyard.cli import _gc


@pytest.fixture
def restored() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
        _gc._saved = None


def test_startup_raises_the_thresholds_and_started_restores_them(
    restored: tuple[int, int, int],
) -> None:
    _gc.startup()
    assert gc.get_threshold() == _gc.STARTUP_THRESHOLDS
    assert gc.get_threshold()[0] > restored[0]
    _gc.startup()  # twice: the first thresholds are still the ones restored
    _gc.started()
    assert gc.get_threshold() == restored
    assert gc.get_freeze_count() > 0


def test_started_without_startup_changes_nothing(restored: tuple[int, int, int]) -> None:
    _gc.started()
    assert gc.get_threshold() == restored
    assert gc.get_freeze_count() == 0


def test_main_leaves_the_collector_alone(restored: tuple[int, int, int]) -> None:
    from dockyard.cli.main import main

    assert main(["--version"]) == 0
    assert gc.get_threshold() == restored


def test_the_console_script_runs_with_raised_thresholds() -> None:
    code = (
        "import gc, sys\n"
        "from dockyard.cli import main\n"
        "main.main = lambda argv=None: print(gc.get_threshold()) or 0\n"
        "main.run()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == str(_gc.STARTUP_THRESHOLDS)
