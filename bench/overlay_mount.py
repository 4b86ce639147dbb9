"""Mount overhead: overlay mount+unmount by system call (dockyard.snapshot.mount) beside
the ``mount``/``umount`` commands, for 1, 10 and 200 lower layers (200 long paths take
the new mount API). Needs root. Usage: ``python -m bench.overlay_mount [-n RUNS]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from dockyard.snapshot.mount import mount_all, unmount
from dockyard.snapshot.types import Mount


def _overlay(base: Path, lowers: int, name_len: int) -> Mount:
    dirs = []
    for i in range(lowers):
        d = base / (f"{i:03d}" + "x" * name_len)
        d.mkdir()
        dirs.append(str(d))
    for name in ("upper", "work", "target"):
        (base / name).mkdir()
    return Mount(
        type="overlay",
        source="overlay",
        options=(
            "lowerdir=" + ":".join(dirs),
            f"upperdir={base / 'upper'}",
            f"workdir={base / 'work'}",
        ),
    )


def _ms(seconds: float, runs: int) -> str:
    return f"{seconds / runs * 1000:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--runs", type=int, default=200)
    runs = parser.parse_args().runs
    for lowers, name_len in ((1, 8), (10, 8), (200, 60)):
        base = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        try:
            m = _overlay(base, lowers, name_len)
            target = base / "target"
            mount_all([m], target)  # warm up (loads libc, dentries)
            unmount(target)
            start = time.perf_counter()
            for _ in range(runs):
                mount_all([m], target)
                unmount(target)
            syscall = time.perf_counter() - start
            line = f"overlay {lowers:>3} lowers: syscall {_ms(syscall, runs)}"
            opts = ",".join(m.options)
            if len(opts) < 4096:
                cmd_runs = max(runs // 10, 1)
                start = time.perf_counter()
                for _ in range(cmd_runs):
                    subprocess.run(
                        ["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True
                    )
                    subprocess.run(["umount", str(target)], check=True)
                line += f"  mount(8) {_ms(time.perf_counter() - start, cmd_runs)}"
            else:
                line += f"  (options {len(opts)} bytes: new mount API)"
            print(line)
        finally:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
