"""The benchmark harness's run order (no builder runs here: a scenario that records)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bench.harness import __main__ as harness
from bench.harness._builders import Builder
from bench.harness._proc import Log
from bench.harness._scenarios import Scenario


@dataclass(slots=True, kw_only=True)
class _Recorded(Scenario):
    cold: bool
    events: list[str] = field(default_factory=list)

    @property
    def resets(self) -> bool:
        return self.cold

    def prepare(self, builder: Builder, index: int) -> None:
        self.events.append(f"reset {builder.name} {index}")

    def timed(self, builder: Builder, index: int) -> float:
        self.events.append(f"build {builder.name} {index}")
        return 1.0


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, cold: bool, rest: float) -> list[str]:
    log = Log(tmp_path / "log")
    scenario = _Recorded(name="cold", title="t", builders=("a", "b"), cold=cold)
    monkeypatch.setattr(harness, "_settle", lambda: scenario.events.append("sync"))
    monkeypatch.setattr(time, "sleep", lambda s: scenario.events.append(f"rest {s:g}"))
    result = harness.run_scenario(
        scenario,
        [Builder(name="a", log=log), Builder(name="b", log=log)],
        runs=1,
        warmup=1,
        log=log,
        profile_stem=None,
        reset_settle=rest,
    )
    assert [len(s.samples) for s in result.series.values()] == [1, 1]
    return scenario.events


def test_a_cold_scenario_resets_every_builder_then_rests_before_the_timed_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _run(tmp_path, monkeypatch, cold=True, rest=65)
    assert events == [
        *("reset a 0", "reset b 0", "sync", "rest 65", "sync", "build a 0", "sync", "build b 0"),
        # the next round starts with the other builder
        *("reset b 1", "reset a 1", "sync", "rest 65", "sync", "build b 1", "sync", "build a 1"),
    ]


def test_without_rest_each_builder_resets_right_before_its_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _run(tmp_path, monkeypatch, cold=True, rest=0)
    assert events[:6] == ["reset a 0", "sync", "build a 0", "reset b 0", "sync", "build b 0"]
    assert not any(e.startswith("rest") for e in events)


def test_a_warm_scenario_never_rests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _run(tmp_path, monkeypatch, cold=False, rest=65)
    assert not any(e.startswith("rest") for e in events)
