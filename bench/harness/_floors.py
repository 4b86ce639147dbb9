"""The machine's floors, measured in the same run as the scenarios, and Dockyard's
start-up time."""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._builders import DOCKYARD_ENV, venv_bin
from ._proc import BenchError


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    """One floor: samples in seconds; ``size`` the bytes it processes (for MiB/s)."""

    name: str
    samples: list[float]
    size: int = 0
    detail: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_json(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "bytes": self.size,
            "detail": self.detail,
        }


def _time_cmd(
    argv: Sequence[str],
    runs: int,
    *,
    warmup: int = 1,
    fresh: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[float]:
    out: list[float] = []
    for i in range(warmup + runs):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(parents=True)
        start = time.perf_counter()
        done = subprocess.run(
            list(argv),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            env={**os.environ, **(env or {})},
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise BenchError(f"floor {' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
        if i >= warmup:
            out.append(elapsed)
    if fresh is not None:
        shutil.rmtree(fresh, ignore_errors=True)
    return out


def _sha256_memory(runs: int) -> list[float]:
    buf = bytes(64 << 20)
    out = []
    for _ in range(runs):
        h = hashlib.sha256()
        start = time.perf_counter()
        for _ in range(16):
            h.update(buf)
        out.append(time.perf_counter() - start)
    return out


def _pull_floor(blobs: Sequence[Path], dest: Path, runs: int) -> list[float]:
    out = []
    for _ in range(runs + 1):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        for blob in blobs:
            subprocess.run(["sha256sum", str(blob)], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["tar", "-xzf", str(blob), "-C", str(dest)], check=True)
        out.append(time.perf_counter() - start)
    shutil.rmtree(dest, ignore_errors=True)
    return out[1:]


def measure_floors(
    *, payload: Path, pull_blobs: Sequence[Path], pull_size: int, scratch: Path, exec_runs: int = 20
) -> tuple[list[Floor], dict[str, float]]:
    """Every floor, plus the per-exec overhead figures (crun, overlay, Dockyard exec)."""
    from bench.exec_overhead import measure

    floors: list[Floor] = []
    size = payload.stat().st_size
    exec_result = measure(exec_runs, "crun")
    floors.append(
        Floor(
            name="crun run /bin/true",
            samples=exec_result.raw,
            detail="from a ready bundle"
            + (
                ", in a private mount namespace (hybrid cgroups)"
                if exec_result.private_namespace
                else ""
            ),
        )
    )
    floors.append(
        Floor(
            name="overlay mount+umount",
            samples=exec_result.overlay,
            detail="by system call, 1 lower",
        )
    )
    floors.append(
        Floor(
            name="sha256 1 GiB in memory", samples=_sha256_memory(3), size=1 << 30, detail="hashlib"
        )
    )
    floors.append(
        Floor(
            name="pigz -6",
            samples=_time_cmd(["pigz", "-6", "-c", str(payload)], 3),
            size=size,
            detail="the export layer's tar, to /dev/null",
        )
    )
    floors.append(
        Floor(
            name="zstd -3 -T0",
            samples=_time_cmd(["zstd", "-3", "-T0", "-q", "-c", str(payload)], 3),
            size=size,
            detail="the export layer's tar, to /dev/null",
        )
    )
    floors.append(
        Floor(
            name="tar -x",
            samples=_time_cmd(
                ["tar", "-xf", str(payload), "-C", str(scratch / "x")], 3, fresh=scratch / "x"
            ),
            size=size,
            detail="the export layer's tar",
        )
    )
    if pull_blobs:
        floors.append(
            Floor(
                name="pull floor",
                samples=_pull_floor(pull_blobs, scratch / "pull", 3),
                size=pull_size,
                detail="sha256sum + tar -xzf of the pull image's 3 blobs from local files",
            )
        )
    floors.append(
        Floor(
            name="python -c pass",
            samples=_time_cmd([sys.executable, "-c", "pass"], 10, warmup=2),
            detail="the interpreter's own start-up",
        )
    )
    overhead = {
        "crun_ms": statistics.median(exec_result.raw) * 1000,
        "overlay_ms": statistics.median(exec_result.overlay) * 1000,
        "floor_ms": exec_result.floor_ms,
        "dockyard_exec_ms": exec_result.dockyard_ms,
        "ratio": exec_result.ratio,
        "target": 3.0,
    }
    return floors, overhead


def measure_startup(runs: int = 10) -> list[Floor]:
    """``dockyard --version``: the CLI's start-up, with bytecode cached (as installed) and
    without (every module compiled on import, as under PYTHONDONTWRITEBYTECODE=1 with no
    cache written before)."""
    argv = [venv_bin("dockyard"), "--version"]
    no_cache = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/nonexistent/pycache"}
    return [
        Floor(
            name="dockyard --version",
            samples=_time_cmd(argv, runs, warmup=2, env=DOCKYARD_ENV),
            detail="target <= 150 ms",
        ),
        Floor(
            name="  without bytecode",
            samples=_time_cmd(argv, runs, warmup=1, env=no_cache),
            detail="every module compiled (PYTHONDONTWRITEBYTECODE=1, no cache)",
        ),
    ]
