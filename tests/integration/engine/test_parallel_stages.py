"""Independent stages of a Dockerfile run at the same time, through the real engine.

Each stage's RUN leaves a marker in a shared cache mount and waits (up to a timeout) for
the other stage's marker: both can finish only if they run at the same time. The final
stage copies from one onto a copy from the other, the shape that used to serialize them
(the second stage was started only once the first copy's content key was known)."""

from __future__ import annotations

import uuid
from pathlib import Path

from dockyard.engine import Engine

from .conftest import read_tree
from .test_builds import dockerfile_build

WAIT_TENTHS = 600  # how long a stage waits for the other one: 60 s


def _stage(name: str, other: str, cache_id: str) -> str:
    return (
        f"FROM busybox AS {name}\n"
        f"RUN --mount=type=cache,id={cache_id},target=/meet,sharing=shared"
        f" touch /meet/{name} && i=0"
        f" && while [ ! -e /meet/{other} ]; do"
        f" i=$((i + 1)); if [ $i -gt {WAIT_TENTHS} ]; then"
        f" echo 'stage {other} never ran at the same time' >&2; exit 1; fi; sleep 0.1; done"
        f" && echo {name} > /{name}\n"
    )


async def test_independent_stages_run_at_the_same_time(engine: Engine, tmp_path: Path) -> None:
    cache_id = f"meet-{uuid.uuid4().hex}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        _stage("left", "right", cache_id)
        + _stage("right", "left", cache_id)
        + "FROM busybox\n"
        + "COPY --from=left /left /out/left\n"
        + "COPY --from=right /right /out/right\n"
    )
    out = tmp_path / "out"
    reporter, _ = await dockerfile_build(engine, ctx, outputs=(f"type=local,dest={out}",))
    tree = read_tree(out)
    assert tree["out/left"] == b"left\n"
    assert tree["out/right"] == b"right\n"
    runs = [s for s in reporter.statuses() if s.name.startswith(("[left ", "[right "))]
    assert runs
    assert not any(s.error for s in runs)
