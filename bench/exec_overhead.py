"""Per-exec overhead of the OCI executor against the raw runtime floor, measured together.

    python -m bench.exec_overhead [-n RUNS] [--runtime crun|runc]

Floor: the runtime binary running ``/bin/true`` from a ready bundle (a plain rootfs
directory and the runtime's default ``config.json``), started from this process the same way the
executor starts it; plus an overlay mount and unmount by system call. Dockyard: one
``OciExecutor.run(/bin/true)`` on an overlay of the same rootfs, from the overlay mount
through the bundle, the runtime and the teardown. The target is at most 3× the floor.
Needs root, the runtime and busybox-static.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.executor import OciExecutor, ProcessSpec
from dockyard.executor._runtime import Runtime, RuntimeKind
from dockyard.snapshot import mount as snapmount
from dockyard.snapshot.types import Mount
from dockyard.testing.rootfs import make_busybox_rootfs


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _time(fn: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _raw_bundle(runtime: Runtime, rootfs: Path, bundle: Path) -> None:
    """The runtime's own default bundle (``<runtime> spec``), made runnable on any host:
    no rlimits (raising them may be refused), no cgroup mount, ``/bin/true``."""
    bundle.mkdir()
    subprocess.run([runtime.binary, "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["process"].pop("rlimits", None)
    spec["root"] = {"path": str(rootfs), "readonly": True}
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"]
    (bundle / "config.json").write_text(json.dumps(spec))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecOverhead:
    """Samples (seconds) of one interleaved measurement: the raw runtime running
    ``/bin/true``, an overlay mount + unmount by system call, and Dockyard's exec."""

    runtime: str
    private_namespace: bool
    raw: list[float]
    overlay: list[float]
    dockyard: list[float]

    @property
    def floor_ms(self) -> float:
        """The floor: median raw run plus median overlay cycle, in milliseconds."""
        return _median_ms(self.raw) + _median_ms(self.overlay)

    @property
    def dockyard_ms(self) -> float:
        return _median_ms(self.dockyard)

    @property
    def ratio(self) -> float:
        return self.dockyard_ms / self.floor_ms


def measure(runs: int = 30, runtime_name: str = "crun") -> ExecOverhead:
    """Measure the floor and Dockyard's exec, interleaved, ``runs`` times each (root)."""
    base = Path(tempfile.mkdtemp(prefix="dockyard-bench-exec-"))
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        runtime = Runtime.create(RuntimeKind.parse(runtime_name), base / "raw-state")
        _raw_bundle(runtime, rootfs, base / "raw-bundle")
        raw_argv = [*runtime._global(), "run", "--no-new-keyring", "-b", str(base / "raw-bundle")]

        counter = iter(range(1 << 30))

        def raw_run() -> None:
            proc = runtime.popen([*raw_argv, f"floor-{next(counter)}"], capture=True)
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"raw {runtime_name} run failed: {err.decode().strip()}")

        upper, work, target = base / "upper", base / "work", base / "mnt"
        for d in (upper, work, target):
            d.mkdir()
        overlay = Mount(
            type="overlay",
            source="overlay",
            options=(f"lowerdir={rootfs}", f"upperdir={upper}", f"workdir={work}"),
        )

        def overlay_cycle() -> None:
            snapmount.mount_all([overlay], target)
            snapmount.unmount(target)

        executor = OciExecutor(base / "state", runtime=runtime_name)
        process = ProcessSpec(args=("/bin/true",))
        loop = asyncio.new_event_loop()

        def dockyard_run() -> None:
            rc = loop.run_until_complete(executor.run(root=[overlay], process=process))
            if rc != 0:
                raise SystemExit(f"dockyard run exited {rc}")

        # interleave the three so that machine noise hits them alike
        raw: list[float] = []
        ovl: list[float] = []
        dy: list[float] = []
        for fn in (raw_run, overlay_cycle, dockyard_run):
            _time(fn, 0, warmup=3)
        for _ in range(runs):
            raw += _time(raw_run, 1, warmup=0)
            ovl += _time(overlay_cycle, 1, warmup=0)
            dy += _time(dockyard_run, 1, warmup=0)
        loop.close()
        return ExecOverhead(
            runtime=runtime_name,
            private_namespace=runtime.hide_cgroup2,
            raw=raw,
            overlay=ovl,
            dockyard=dy,
        )
    finally:
        for m in reversed(snapmount.mountpoints_under(base)):
            snapmount.unmount(m, detach=True)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--runtime", default="crun", choices=["crun", "runc"])
    args = parser.parse_args(argv)

    result = measure(args.runs, args.runtime)
    raw, ovl, dy = result.raw, result.overlay, result.dockyard
    floor = result.floor_ms
    ours = result.dockyard_ms
    note = " (in a private mount namespace: hybrid cgroups)" if result.private_namespace else ""
    print(f"runs: {args.runs} each, interleaved; runtime {args.runtime}{note}")
    print(f"{'raw ' + args.runtime + ' run /bin/true':<36}{_median_ms(raw):8.2f} ms (median)")
    print(f"{'overlay mount+umount (syscalls)':<36}{_median_ms(ovl):8.2f} ms (median)")
    print(f"{'floor (sum)':<36}{floor:8.2f} ms")
    print(f"{'dockyard exec /bin/true':<36}{ours:8.2f} ms (median)")
    print(f"{'  min / max':<36}{min(dy) * 1000:8.2f} / {max(dy) * 1000:.2f} ms")
    print(f"{'overhead over the floor':<36}{ours - floor:8.2f} ms")
    print(f"{'ratio to floor (target <= 3.0)':<36}{ours / floor:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
