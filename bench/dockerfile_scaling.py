"""How the Dockerfile frontend's time grows with the Dockerfile (no sandbox, no I/O).

For each shape (N ``ENV`` lines, N chained stages, …) a Dockerfile is generated at
sizes N, 2N, 4N, … and each phase is timed: ``parse`` (bytes → typed instructions),
``convert`` (→ LLB state and image config, base images unresolved, lint included),
``marshal`` (the target's Definition, as a build sends it to the solver), ``outline``
and ``targets`` (the ``--call=outline|targets`` subrequests). A phase whose time more
than ``--factor`` times (default 2.3) when N doubles is flagged ``SUPERLINEAR``.

    python -m bench.dockerfile_scaling                    # every shape, 1000..8000
    python -m bench.dockerfile_scaling -s env,stages -n 2000 --steps 3
    python -m bench.dockerfile_scaling --small 2000       # the hot path: a small file
    python -m bench.dockerfile_scaling -s env -n 8000 --profile   # cProfile, top 25
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable

from dockyard.core import Platform
from dockyard.dockerfile import (
    ConvertOptions,
    Dockerfile,
    convert,
    list_targets,
    outline_target,
    parse_dockerfile,
)


def _lines(head: str, body: Callable[[int], str], n: int) -> str:
    return head + "".join(body(i) + "\n" for i in range(n))


SHAPES: dict[str, Callable[[int], tuple[str, dict[str, str]]]] = {
    "env": lambda n: (_lines("FROM scratch\n", lambda i: f"ENV K{i}=v{i}", n), {}),
    "env-pairs": lambda n: (
        "FROM scratch\nENV " + " ".join(f"K{i}=v{i}" for i in range(n)) + "\n",
        {},
    ),
    "arg": lambda n: (_lines("FROM scratch\n", lambda i: f"ARG A{i}=v{i}", n), {}),
    "label": lambda n: (_lines("FROM scratch\n", lambda i: f"LABEL L{i}=v{i}", n), {}),
    "expose": lambda n: (_lines("FROM scratch\n", lambda i: f"EXPOSE {i + 1}", n), {}),
    "run": lambda n: (_lines("FROM scratch\n", lambda i: f"RUN echo {i}", n), {}),
    "run-env": lambda n: (
        _lines("FROM scratch\n", lambda i: f"ENV K{i}=v{i}\nRUN echo $K{i}", n // 2),
        {},
    ),
    "copy": lambda n: (_lines("FROM scratch\n", lambda i: f"COPY f{i} /f{i}", n), {}),
    "workdir": lambda n: (_lines("FROM scratch\n", lambda i: f"WORKDIR /w{i}", n), {}),
    "stages": lambda n: (
        _lines("FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}", n),
        {},
    ),
    "stages-run": lambda n: (
        _lines("FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}\nRUN echo {i}", n),
        {},
    ),
    "copy-from": lambda n: (
        _lines(
            "FROM scratch AS s0\nCOPY f /f\n",
            lambda i: f"FROM scratch AS s{i + 1}\nCOPY --from=s{i} /f /f",
            n,
        ),
        {},
    ),
    "stages-env": lambda n: (
        _lines("FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}\nENV K{i}=v", n),
        {},
    ),
    "stage-args": lambda n: (
        _lines("ARG G=1\nFROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}\nARG G", n),
        {},
    ),
    "global-args": lambda n: (
        _lines("", lambda i: f"ARG G{i}=v{i}", n) + "FROM scratch\nRUN true\n",
        {},
    ),
    "build-args": lambda n: (
        "FROM scratch\nARG A0\nRUN true\n",
        {f"A{i}": f"v{i}" for i in range(n)},
    ),
    "build-args-used": lambda n: (
        _lines("FROM scratch\n", lambda i: f"ARG A{i}", n) + "RUN true\n",
        {f"A{i}": f"v{i}" for i in range(n)},
    ),
    "heredoc": lambda n: (
        "FROM scratch\nRUN <<EOF\n" + "".join(f"echo {i}\n" for i in range(n)) + "EOF\n",
        {},
    ),
    "heredoc-copy": lambda n: (
        "FROM scratch\nCOPY <<EOF /f\n" + "".join(f"line $X {i}\n" for i in range(n)) + "EOF\n",
        {},
    ),
    "continuation": lambda n: (
        "FROM scratch\nRUN echo \\\n" + "".join(f" {i} \\\n" for i in range(n)) + " end\n",
        {},
    ),
    "onbuild": lambda n: (
        _lines("FROM scratch AS base\n", lambda i: f"ONBUILD RUN echo {i}", n)
        + "FROM base\nRUN true\n",
        {},
    ),
    "onbuild-env": lambda n: (
        _lines("FROM scratch AS base\n", lambda i: f"ONBUILD ENV K{i}=v{i}", n)
        + "FROM base\nRUN true\n",
        {},
    ),
    "mounts": lambda n: (
        _lines(
            "FROM scratch AS s0\n",
            lambda i: f"FROM scratch AS s{i + 1}\nRUN --mount=from=s{i},target=/m true",
            n,
        ),
        {},
    ),
}

SMALL = """\
# syntax=docker/dockerfile:1
FROM busybox AS build
ARG VERSION=1.0
ENV APP=/app PATH=/app/bin:$PATH
WORKDIR /app
COPY . .
RUN --mount=type=cache,target=/cache echo building $VERSION > /app/out
LABEL org.opencontainers.image.version=$VERSION

FROM busybox
COPY --from=build /app/out /out
EXPOSE 8080
USER nobody
CMD ["cat", "/out"]
"""

PHASES = ("parse", "convert", "marshal", "outline", "targets")


def _measure(text: str, build_args: dict[str, str], phases: tuple[str, ...]) -> dict[str, float]:
    platform = Platform.parse("linux/amd64")
    out: dict[str, float] = {}
    gc.collect()
    start = time.perf_counter()
    dockerfile = parse_dockerfile(text)
    out["parse"] = time.perf_counter() - start
    if "convert" in phases or "marshal" in phases:
        options = ConvertOptions(build_args=build_args, build_platform=platform)
        asyncio.run(_convert(dockerfile, options, "marshal" in phases, out))
    if "outline" in phases:
        start = time.perf_counter()
        outline_target(dockerfile, build_args=build_args, build_platform=platform)
        out["outline"] = time.perf_counter() - start
    if "targets" in phases:
        start = time.perf_counter()
        list_targets(dockerfile)
        out["targets"] = time.perf_counter() - start
    return out


async def _convert(
    dockerfile: Dockerfile, options: ConvertOptions, marshal: bool, out: dict[str, float]
) -> None:
    # the result stays inside: asyncio.run (3.11) formats its main task's repr, result
    # included, when it restores the SIGINT handler
    start = time.perf_counter()
    result = await convert(dockerfile, options)
    out["convert"] = time.perf_counter() - start
    if marshal:
        start = time.perf_counter()
        result.state.marshal()
        out["marshal"] = time.perf_counter() - start


def _scan(args: argparse.Namespace) -> int:
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    phases = tuple(args.phases.split(","))
    flagged = 0
    for shape in shapes:
        print(f"{shape}:")
        previous: dict[str, float] | None = None
        n = args.n
        for _ in range(args.steps):
            text, build_args = SHAPES[shape](n)
            best: dict[str, float] = {}
            for _ in range(args.runs):
                for phase, seconds in _measure(text, build_args, phases).items():
                    best[phase] = min(best.get(phase, seconds), seconds)
            cells = []
            for phase in PHASES:
                if phase not in best:
                    continue
                cell = f"{phase} {best[phase] * 1000:8.1f} ms"
                if previous is not None and previous.get(phase, 0) > 0.002:
                    ratio = best[phase] / previous[phase]
                    cell += f" x{ratio:4.1f}"
                    if ratio > args.factor:
                        cell += " SUPERLINEAR"
                        flagged += 1
                cells.append(cell)
            print(f"  N={n:<6} {len(text) // 1024:>5} KiB  " + "  ".join(cells), flush=True)
            previous = best
            n *= 2
    print(f"{flagged} superlinear step(s)")
    return 0


async def _small_runs(options: ConvertOptions, repetitions: int) -> list[float]:
    for _ in range(20):  # warm-up: imports, caches
        await convert(parse_dockerfile(SMALL), options)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repetitions):
            await convert(parse_dockerfile(SMALL), options)
        samples.append((time.perf_counter() - start) / repetitions)
    return samples


def _small(repetitions: int) -> int:
    platform = Platform.parse("linux/amd64")
    options = ConvertOptions(build_platform=platform)
    samples = asyncio.run(_small_runs(options, repetitions))
    samples.sort()
    print(
        f"small Dockerfile, parse + convert: median {samples[2] * 1e6:.0f} µs, "
        f"min {samples[0] * 1e6:.0f} µs (5 x {repetitions} repetitions)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dockerfile_scaling")
    parser.add_argument("-s", "--shapes", default="", help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("-p", "--phases", default=",".join(PHASES))
    parser.add_argument("-n", type=int, default=1000, help="the first size (1000)")
    parser.add_argument("--steps", type=int, default=4, help="sizes, each double the last (4)")
    parser.add_argument("-r", "--runs", type=int, default=1, help="runs per size, best kept (1)")
    parser.add_argument("--factor", type=float, default=2.3)
    parser.add_argument("--profile", action="store_true", help="cProfile one run of -s at -n")
    parser.add_argument("--small", type=int, default=0, metavar="REPS")
    args = parser.parse_args(argv)
    if args.small:
        return _small(args.small)
    if args.profile:
        for shape in args.shapes.split(","):
            text, build_args = SHAPES[shape](args.n)
            profile = cProfile.Profile()
            profile.enable()
            _measure(text, build_args, tuple(args.phases.split(",")))
            profile.disable()
            print(f"== {shape} N={args.n}")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return 0
    return _scan(args)


if __name__ == "__main__":
    sys.exit(main())
