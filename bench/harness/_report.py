"""Results: medians with min–max, ratios Dockyard/peer, targets; text and JSON."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ._builders import BUILDAH, BUILDKIT, DOCKYARD_BUILDERS
from ._floors import Floor

BUILDAH_TARGET = 0.5  # buildah at least 2x slower than Dockyard


@dataclass(slots=True, kw_only=True)
class Series:
    """The samples (seconds) of one builder in one scenario."""

    warmup: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    error: str | None = None
    sizes: list[int] = field(default_factory=list)  # bytes the scenario noted per run

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "warmup": self.warmup,
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "error": self.error,
            "sizes": self.sizes,
        }


@dataclass(slots=True, kw_only=True)
class ScenarioResult:
    name: str
    title: str
    target: float | None
    floor: str | None
    notes: list[str]
    series: dict[str, Series] = field(default_factory=dict)
    daemon_rss_mib: float | None = None  # the daemon's RSS, idle after this scenario

    def ratio(self, ours: str, peer: str) -> float | None:
        a, b = self.series.get(ours), self.series.get(peer)
        if a is None or b is None or a.median is None or b.median is None:
            return None
        return a.median / b.median

    def to_json(self, floors: dict[str, Floor]) -> dict[str, object]:
        ratios: dict[str, float | None] = {}
        for ours in DOCKYARD_BUILDERS:
            for peer in (BUILDKIT, BUILDAH):
                if ours in self.series and peer in self.series:
                    ratios[f"{ours}/{peer}"] = self.ratio(ours, peer)
        floor = floors.get(self.floor) if self.floor else None
        to_floor = {}
        if floor is not None:
            for name, s in self.series.items():
                if s.median is not None:
                    to_floor[name] = s.median / floor.median
        return {
            "title": self.title,
            "target_vs_buildkit": self.target,
            "target_vs_buildah": BUILDAH_TARGET,
            "floor": self.floor,
            "notes": self.notes,
            "builders": {name: s.to_json() for name, s in self.series.items()},
            "ratios": ratios,
            "ratio_to_floor": to_floor,
            "daemon_rss_mib_after": self.daemon_rss_mib,
        }


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def format_scenario(result: ScenarioResult, floors: dict[str, Floor]) -> str:
    head = f"== {result.name}: {result.title}"
    goals = []
    if result.target is not None:
        goals.append(f"Dockyard <= {result.target:.2f}x BuildKit")
    goals.append(f"buildah >= {1 / BUILDAH_TARGET:.0f}x Dockyard")
    lines = [head, f"   targets: {'; '.join(goals)}"]
    for note in result.notes:
        lines.append(f"   note: {note}")
    floor = floors.get(result.floor) if result.floor else None
    lines.append(
        f"   {'builder':<19}{'median':>10}  {'min – max':<21}{'runs':>4}  "
        f"{'vs BuildKit':<15}{'vs buildah':<15}" + ("vs floor" if floor else "")
    )
    for name, s in result.series.items():
        if s.error is not None and not s.samples:
            lines.append(f"   {name:<19}FAILED: {s.error.splitlines()[0][:160]}")
            continue
        span = f"{_s(min(s.samples))} – {_s(max(s.samples))}" if s.samples else ""
        cells = ["", ""]
        if name in DOCKYARD_BUILDERS:
            for i, peer in enumerate((BUILDKIT, BUILDAH)):
                r = result.ratio(name, peer)
                if r is None:
                    continue
                goal = result.target if peer == BUILDKIT else BUILDAH_TARGET
                cells[i] = f"{r:.2f}x" + (f" {_mark(r <= goal)}" if goal is not None else "")
        floor_cell = ""
        if floor is not None and s.median is not None:
            floor_cell = f"{s.median / floor.median:.2f}x {result.floor}"
        lines.append(
            f"   {name:<19}{_s(s.median):>10}  {span:<21}{len(s.samples):>4}  "
            f"{cells[0]:<15}{cells[1]:<15}{floor_cell}"
        )
        if s.sizes:
            sizes = sorted(s.sizes)
            lines.append(
                f"   {'':<19}pushed its largest layer as "
                f"{statistics.median(sizes) / 1e6:.1f} MB (median of {len(sizes)})"
            )
        if s.error is not None:
            lines.append(f"   {'':<19}(then failed: {s.error.splitlines()[0][:140]})")
    if result.daemon_rss_mib is not None:
        lines.append(f"   dockyardd RSS after it, idle: {result.daemon_rss_mib:.0f} MiB")
    return "\n".join(lines)


def format_floors(
    floors: list[Floor], exec_overhead: dict[str, float], title: str = "floors (this run)"
) -> str:
    lines = [f"== {title}"]
    for f in floors:
        rate = f"  {f.size / f.median / (1 << 20):7.0f} MiB/s" if f.size else ""
        lines.append(
            f"   {f.name:<24}{_s(f.median):>10}  ({_s(min(f.samples))} – {_s(max(f.samples))})"
            f"{rate}  {f.detail}"
        )
    if exec_overhead:
        o = exec_overhead
        lines.append(
            f"   per-exec: Dockyard exec of /bin/true {o['dockyard_exec_ms']:.1f} ms vs floor "
            f"crun {o['crun_ms']:.1f} ms + overlay {o['overlay_ms']:.1f} ms = "
            f"{o['floor_ms']:.1f} ms: {o['ratio']:.2f}x "
            f"(target <= {o['target']:.0f}x: {_mark(o['ratio'] <= o['target'])})"
        )
    return "\n".join(lines)
