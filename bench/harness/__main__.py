"""``bench/run`` (= ``python -m bench.harness``): Dockyard against docker's BuildKit and
buildah, scenario by scenario, builders interleaved run by run. See bench/README.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._builders import (
    ALL_BUILDERS,
    BUILDKIT,
    DAEMON,
    TOOLS_DIR,
    Builder,
    DockerBuildKit,
    DockyardDaemon,
    make_builders,
    stop_warm_servers,
    venv_bin,
    warm_bytecode,
    wipe,
)
from ._contexts import BASE_IMAGE, check_base_image, make_contexts
from ._floors import Floor, measure_floors, measure_startup
from ._proc import BenchError, Log, output, run
from ._profile import summarize, summarize_pyinstrument
from ._report import ScenarioResult, Series, format_floors, format_scenario
from ._scenarios import NAMES, Scenario, make_scenarios

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _say(text: str) -> None:
    print(text, flush=True)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


_BINFMT_STATUS = Path("/proc/sys/fs/binfmt_misc/status")


@contextlib.contextmanager
def _emulation_paused(pause: bool) -> Iterator[str]:
    """binfmt_misc switched off for the run, and back on after it (yields what was done).

    BuildKit v0.8 (docker 20.10's) probes every emulator binfmt_misc offers on each
    build (~0.35 s per build with qemu-user-static's handlers, which scripts/setup
    registers): the peer is measured at its best, as on a host without emulators. No
    scenario runs another platform, so Dockyard does not use them either."""
    try:
        enabled = _BINFMT_STATUS.read_text().strip() == "enabled"
    except OSError:
        yield "not mounted"
        return
    if not enabled:
        yield "off"
        return
    if not pause:
        yield "on"
        return
    _BINFMT_STATUS.write_text("0")
    try:
        yield "paused for the run"
    finally:
        _BINFMT_STATUS.write_text("1")


#: Seconds a cold scenario rests after every builder's reset (and a sync) before the
#: timed builds; 0 (the default): each builder's reset right before its own build.
#: ext4 without a journal (this VM's root file system) does not reuse an inode freed
#: less than 60 s ago (``recently_deleted`` in ``find_inode_bit``; 360 s while its inode
#: table block is dirty), so every file created in a block group scans past them all,
#: and a cold build right after a reset pays for the reset's deletions. Resting does not
#: remove that cleanly — the first creates dirty the inode table blocks again, which
#: brings the 360 s window back for the neighbours — and the first build after the
#: rest ran slower (run harness-20261128T172636Z with 65 s: cold 0.70x / 0.70x, BuildKit
#: 1.45 s instead of ~1.13 s; the pull 0.56x / 0.62x buildah instead of ~0.43x), so it
#: is an option, not the default.
RESET_SETTLE = 0.0


def _settle() -> None:
    """Write back what earlier work left dirty (untimed), so that no builder's timed run
    pays for the page cache another builder — or its own untimed preparation — filled:
    a pull or an export leaves ~100 MB to write, a reset frees thousands of inodes."""
    os.sync()


def _profile_run(
    scenario: Scenario, builder: Builder, index: int, stem: Path, log: Log
) -> list[Path]:
    """More runs of ``builder`` with profilers: pyinstrument around the ``dockyard`` CLI
    (the main thread's wall clock), then py-spy over every thread of the embedded CLI or
    of the daemon. Returns the text reports."""
    out = []
    scenario.prepare(builder, index)
    _settle()
    session = stem.with_name(stem.name + "-client.pyisession")
    builder.profile_to = session
    try:
        scenario.timed(builder, index)
    finally:
        builder.profile_to = None
    scenario.finish(builder, index)
    if session.exists():
        text, tree = session.with_suffix(".txt"), session.with_suffix(".json")
        for renderer, dest in (("text", text), ("json", tree)):
            run(
                [venv_bin("pyinstrument"), "--load", str(session), "-r", renderer, "-o", str(dest)],
                log,
            )
        summary = session.with_name(session.stem + "-summary.txt")
        summary.write_text(summarize_pyinstrument(tree))
        out += [text, summary]
    scenario.prepare(builder, index + 1)
    _settle()
    if isinstance(builder, DockyardDaemon):
        raw = stem.with_name(stem.name + "-daemon.collapsed")
        builder.start_spy(raw)
        try:
            scenario.timed(builder, index + 1)
        finally:
            builder.stop_spy()
    else:
        raw = stem.with_name(stem.name + "-threads.collapsed")
        builder.profile_to = raw
        try:
            scenario.timed(builder, index + 1)
        finally:
            builder.profile_to = None
    scenario.finish(builder, index + 1)
    if raw.exists():
        text = raw.with_suffix(".txt")
        text.write_text(summarize(raw))
        out.append(text)
    return out


def run_scenario(
    scenario: Scenario,
    builders: Sequence[Builder],
    *,
    runs: int,
    warmup: int,
    log: Log,
    profile_stem: Path | None,
    reset_settle: float = 0.0,
) -> ScenarioResult:
    active = [b for b in builders if b.name in scenario.builders]
    result = ScenarioResult(
        name=scenario.name,
        title=scenario.title,
        target=scenario.target,
        floor=scenario.floor,
        notes=list(scenario.notes),
    )
    log.note(f"scenario {scenario.name}")
    for b in active:
        result.series[b.name] = Series()
        try:
            scenario.setup(b)
        except BenchError as exc:
            result.series[b.name].error = str(exc)
    apart = scenario.resets and reset_settle > 0
    if apart:
        result.notes.append(
            f"every builder's reset ran first, then sync and {reset_settle:g} s of rest"
            " before the timed builds (see --reset-settle)"
        )
    for i in range(warmup + runs):
        k = i % len(active) if active else 0
        order = [*active[k:], *active[:k]]  # rotate: no builder always goes first
        cells = []
        prepared: set[str] = set()
        if apart:
            for b in order:
                if result.series[b.name].error is not None:
                    continue
                try:
                    scenario.prepare(b, i)
                except BenchError as exc:
                    result.series[b.name].error = str(exc)
                    log.note(f"{scenario.name} {b.name} run {i} failed: {exc}")
                    continue
                prepared.add(b.name)
            _settle()
            time.sleep(reset_settle)
        for b in order:
            series = result.series[b.name]
            if series.error is not None:
                continue
            try:
                if b.name not in prepared:
                    scenario.prepare(b, i)
                _settle()
                elapsed = scenario.timed(b, i)
                scenario.finish(b, i)
            except BenchError as exc:
                series.error = str(exc)
                log.note(f"{scenario.name} {b.name} run {i} failed: {exc}")
                cells.append(f"{b.name} FAILED")
                continue
            (series.warmup if i < warmup else series.samples).append(elapsed)
            cells.append(f"{b.name} {elapsed:.3f}s")
        tag = "warm-up" if i < warmup else f"run {i - warmup + 1}/{runs}"
        _say(f"   {scenario.name} {tag}: " + ", ".join(cells))
    if profile_stem is not None:
        for b in active:
            if not b.is_dockyard or result.series[b.name].error is not None:
                continue
            stem = profile_stem.parent / f"{profile_stem.name}-{scenario.name}-{b.name}"
            try:
                done = _profile_run(scenario, b, warmup + runs, stem, log)
            except BenchError as exc:
                _say(f"   profile of {b.name} failed: {exc}")
                continue
            _say(f"   profile of {b.name}: {', '.join(str(p) for p in done)}")
    for b in active:
        result.series[b.name].sizes = scenario.observed(b)
    return result


def _versions() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[2])
    changed = output(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"])
    return {
        "git": output(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
        + (f" + {len(changed.splitlines())} changed files" if changed else ""),
        "dockyard": output([venv_bin("dockyard"), "--version"]),
        "docker": output(["/usr/bin/docker", "version", "--format", "{{.Server.Version}}"]),
        "buildah": output(["buildah", "--version"]),
        "crun": output(["crun", "--version"]).splitlines()[0]
        if output(["crun", "--version"])
        else "",
        "runc": output(["runc", "--version"]).splitlines()[0]
        if output(["runc", "--version"])
        else "",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=5, help="counted runs (default 5)")
    parser.add_argument("-w", "--warmup", type=int, default=1, help="warm-up runs (default 1)")
    parser.add_argument(
        "-s", "--scenarios", default=",".join(NAMES), help=f"comma list of: {', '.join(NAMES)}"
    )
    parser.add_argument(
        "-b",
        "--builders",
        default=",".join(ALL_BUILDERS),
        help=f"comma list of: {', '.join(ALL_BUILDERS)}",
    )
    parser.add_argument("--no-floors", action="store_true", help="skip the floors")
    parser.add_argument(
        "--reset-settle",
        type=float,
        default=RESET_SETTLE,
        metavar="SECONDS",
        help="cold scenarios: reset every builder, then sync and rest this long before"
        f" the timed builds (default {RESET_SETTLE:g}; 0: each builder's reset right"
        " before its own build)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after each scenario's runs, one more Dockyard run under a profiler "
        "(pyinstrument around the embedded CLI, py-spy on the daemon)",
    )
    parser.add_argument(
        "--no-warm",
        action="store_true",
        help="run every dockyard command in its own process (DOCKYARD_WARM=0): what a "
        "first command costs, without the warm-start server",
    )
    parser.add_argument("--size-mib", type=int, default=100, help="export/pull size (100)")
    parser.add_argument(
        "--keep-emulators",
        action="store_true",
        help="leave binfmt_misc on (BuildKit v0.8 then probes every emulator per build)",
    )
    parser.add_argument("--work", type=Path, help="work directory (default under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where JSON goes")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        _say("bench/run needs root (overlay mounts, OCI runtimes, dockerd, buildah)")
        return 2
    scenarios_wanted = _split(args.scenarios)
    unknown = [s for s in scenarios_wanted if s not in NAMES]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work: Path = args.work or Path(f"/var/tmp/dockyard-bench/run-{stamp}")
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    log = Log(results_dir / f"harness-{stamp}.log")
    profile_stem = results_dir / f"harness-{stamp}-profile" if args.profile else None
    _say(f"dockyard bench harness: work {work}, log {log.path}, load {_loadavg()}")

    problem = check_base_image()
    if problem is not None:
        _say(f"cannot run: {problem}")
        return 2
    try:
        builders = make_builders(_split(args.builders), work, log, warm=not args.no_warm)
    except BenchError as exc:
        parser.error(str(exc))
    skipped: dict[str, str] = {}
    for b in list(builders):
        why = b.available()
        if why is not None:
            skipped[b.name] = why
            builders.remove(b)
            _say(f"skipping {b.name}: {why}")
    for b in builders:
        if isinstance(b, DockerBuildKit):
            b.bases = (BASE_IMAGE,)

    from dockyard.testing.registry import start_registry

    work.mkdir(parents=True, exist_ok=True)
    registry = start_registry(work / "registry")
    daemon = next((b for b in builders if isinstance(b, DockyardDaemon)), None)
    meta: dict[str, object] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(),
        "base_image": BASE_IMAGE,
        "runs": args.runs,
        "warmup": args.warmup,
        "load_start": _loadavg(),
        "skipped": skipped,
        "registry": registry.host,
        "tools": str(TOOLS_DIR),
        "dockyard_warm_start": not args.no_warm,
        "reset_settle_s": args.reset_settle,
    }
    results: list[ScenarioResult] = []
    floors: list[Floor] = []
    exec_overhead: dict[str, float] = {}
    startup: list[Floor] = []
    rss: dict[str, float | None] = {}
    emulation = contextlib.ExitStack()
    try:
        meta["binfmt_misc"] = emulation.enter_context(
            _emulation_paused(not args.keep_emulators and any(b.name == BUILDKIT for b in builders))
        )
        if meta["binfmt_misc"] == "paused for the run":
            _say("binfmt_misc: off for the run (BuildKit v0.8 probes every emulator per build)")
        _say("bytecode cache, contexts ...")
        warm_bytecode(log)
        ctx = make_contexts(
            work / "ctx", TOOLS_DIR, log, registry_host=registry.host, size_mib=args.size_mib
        )
        for b in builders:
            if isinstance(b, DockerBuildKit):
                b.bases = (BASE_IMAGE, f"{registry.host}/bench-pull:latest")
            b.start()
        if daemon is not None:
            time.sleep(1)
            rss["fresh"] = daemon.rss_mib()
        startup = measure_startup()
        _say(format_floors(startup, {}, "start-up"))
        if not args.no_floors:
            _say("measuring floors ...")
            floors, exec_overhead = measure_floors(
                payload=ctx.payload_tar,
                pull_blobs=ctx.pull_blobs,
                pull_size=ctx.pull_size,
                scratch=work / "floors",
            )
            _say(format_floors(floors, exec_overhead))
        floor_map = {f.name: f for f in floors}
        for scenario in make_scenarios(scenarios_wanted, ctx, registry.host):
            _say(f"-- {scenario.name}: {scenario.title}")
            result = run_scenario(
                scenario,
                builders,
                runs=args.runs,
                warmup=args.warmup,
                log=log,
                profile_stem=profile_stem,
                reset_settle=args.reset_settle,
            )
            if daemon is not None and DAEMON in result.series:
                time.sleep(1)
                result.daemon_rss_mib = daemon.rss_mib()
            results.append(result)
            _say(format_scenario(result, floor_map))
    finally:
        meta["load_end"] = _loadavg()
        if daemon is not None:
            rss["end"] = daemon.rss_mib()
        for b in builders:
            try:
                b.stop()
                if not b.is_dockyard and b.tags:
                    b.remove_images(sorted(b.tags))
            except BenchError as exc:
                _say(f"cleanup of {b.name}: {exc}")
        if any(b.name == BUILDKIT for b in builders):
            run(["/usr/bin/docker", "builder", "prune", "-af"], log, check=False)
        stop_warm_servers(work)
        registry.close()
        emulation.close()
        floor_map = {f.name: f for f in floors}
        report = {
            "meta": meta,
            "startup": {f.name.strip(): f.to_json() for f in startup},
            "daemon_rss_mib": rss,
            "floors": {f.name: f.to_json() for f in floors},
            "exec_overhead": exec_overhead,
            "scenarios": {r.name: r.to_json(floor_map) for r in results},
        }
        out = results_dir / f"harness-{stamp}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        if not args.keep:
            wipe(work)
        elif work.exists():
            _say(f"kept {work}")
    _say("")
    _say(
        f"== summary ({args.runs} counted runs after {args.warmup} warm-up; load {meta['load_start']} -> {meta['load_end']})"
    )
    if startup:
        _say(format_floors(startup, {}, "start-up"))
    if rss:
        fresh = rss.get("fresh")
        after = [r.daemon_rss_mib for r in results if r.daemon_rss_mib is not None]
        peak = max(after) if after else None
        _say(
            "   dockyardd idle RSS: fresh "
            + (f"{fresh:.0f} MiB" if fresh else "?")
            + (f", after builds up to {peak:.0f} MiB" if peak else "")
            + " (target <= 150 MB)"
        )
    if floors:
        _say(format_floors(floors, exec_overhead))
    for r in results:
        _say(format_scenario(r, floor_map))
    _say(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
