"""``dockyard build``'s replay of a build that changed nothing, end to end: the third
identical build needs no engine (it succeeds while another engine holds the state
directory), and every change that matters — the context, the Dockerfile, the image
store's names, the cache — makes the build run again."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.engine._lock import StateLock
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import requirement_missing
from tests.integration.engine.conftest import store_busybox

from .conftest import EXAMPLE

RUN_LINE = "RUN sed"  # the example's RUN step, as the progress names it


@contextmanager
def engine_busy(state: Path) -> Iterator[None]:
    """Another engine holds ``state``: a build that needs an engine fails."""
    lock = StateLock.acquire(state, purpose="a test")
    try:
        yield
    finally:
        lock.release()


def memos(state: Path) -> list[Path]:
    directory = state / "memo"
    return sorted(directory.glob("*.memo")) if directory.is_dir() else []


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    shutil.copytree(EXAMPLE, ctx)
    return ctx


def build(state: Path, ctx: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), "-t", "memo-test", *args, str(ctx)])


def test_a_no_op_build_is_replayed_without_an_engine(
    state: Path, context: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(state, context, "-q") == 0  # runs the steps: nothing remembered
    first_id = capsys.readouterr().out.strip()
    assert memos(state) == []
    assert build(state, context, "-q") == 0  # all cached: remembered
    assert capsys.readouterr().out.strip() == first_id
    assert len(memos(state)) == 1

    iid, meta = tmp_path / "iid", tmp_path / "meta.json"
    with engine_busy(state):
        code = build(
            state, context, "--progress", "plain", "--iidfile", str(iid),
            "--metadata-file", str(meta),
        )  # fmt: skip
        err = capsys.readouterr().err
    assert code == 0, err
    assert iid.read_text() == first_id
    assert json.loads(meta.read_text())["containerimage.config.digest"] == first_id
    # the remembered progress, as the no-op build showed it
    assert f"{RUN_LINE} " in err
    step = err[err.index(RUN_LINE) :]
    assert step.splitlines()[1].endswith("CACHED"), err
    assert "naming to docker.io/library/memo-test:latest" in err
    assert f"Image docker.io/library/memo-test:latest ({first_id}) stored" in err

    # -q replays too, and prints only the image ID
    with engine_busy(state):
        assert build(state, context, "-q") == 0
    out = capsys.readouterr()
    assert out.out.strip() == first_id
    assert out.err == ""


def test_a_changed_context_or_dockerfile_builds_again(
    state: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert build(state, context, "-q") == 0
    first_id = capsys.readouterr().out.split()[-1]
    assert len(memos(state)) == 1

    (context / "greet.sh.in").write_text("#!/bin/sh\necho '@GREETING@, again'\n")
    with engine_busy(state):  # the context changed: this build needs the engine
        assert build(state, context, "-q") == 1
    assert "in use" in capsys.readouterr().err
    assert build(state, context, "-q") == 0
    second_id = capsys.readouterr().out.strip()
    assert second_id != first_id

    # the same size and content, only touched: the file's ctime moved, so it runs
    # again (and, all cached, is remembered again)
    (context / "greet.sh.in").write_text((context / "greet.sh.in").read_text())
    with engine_busy(state):
        assert build(state, context, "-q") == 1
    capsys.readouterr()

    with (context / "Dockerfile").open("a") as f:
        f.write('LABEL memo="changed"\n')
    assert build(state, context, "-q") == 0
    assert capsys.readouterr().out.strip() not in (first_id, second_id)

    # a build argument is part of the command: another value, another build
    assert build(state, context, "-q", "--build-arg", "GREETING=hi") == 0
    capsys.readouterr()
    with engine_busy(state):
        assert build(state, context, "-q", "--build-arg", "GREETING=hello") == 1
    capsys.readouterr()


def test_removing_the_image_or_pruning_the_cache_builds_again(
    state: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert build(state, context, "-q") == 0
    image_id = capsys.readouterr().out.split()[-1]

    assert main(["rmi", "--state-dir", str(state), "memo-test"]) == 0
    with engine_busy(state):  # the name is gone: the build must store it again
        assert build(state, context, "-q") == 1
    capsys.readouterr()
    assert build(state, context, "-q") == 0
    assert capsys.readouterr().out.strip() == image_id
    assert main(["images", "--state-dir", str(state)]) == 0
    assert "memo-test" in capsys.readouterr().out

    assert build(state, context, "-q") == 0  # a no-op again: remembered
    capsys.readouterr()
    assert main(["prune", "--state-dir", str(state), "--all"]) == 0
    capsys.readouterr()
    assert build(state, context, "--progress", "plain") == 0
    err = capsys.readouterr().err
    match = re.search(rf"#(\d+) \[[^]]*\] {RUN_LINE}", err)
    assert match is not None, err
    number = match.group(1)
    assert f"#{number} DONE" in err, err  # the step ran again
    assert f"#{number} CACHED" not in err  # its keys went with the pruned results


def test_engine_only_flags_are_never_replayed(
    state: Path, context: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for _ in range(3):
        assert build(state, context, "-q", "-o", f"type=local,dest={out}") == 0
        assert build(state, context, "-q", "--no-cache-filter", "build") == 0
    assert memos(state) == []
    capsys.readouterr()


def test_a_base_image_from_a_registry_is_asked_for_again(
    state: Path,
    context: Path,
    busybox_rootfs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not Path(REGISTRY_BINARY).exists():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    registry = start_registry(tmp_path / "registry")
    try:
        base = registry.ref("memo-base:1")

        def push(*args: str) -> None:
            code = main(["build", "--state-dir", str(state), "-q", "-t", base, "--push", *args,
                         str(context)])  # fmt: skip
            assert code == 0, capsys.readouterr().err

        push()
        other = tmp_path / "other-state"  # holds busybox only: the base is in the registry
        asyncio.run(store_busybox(other, busybox_rootfs))
        consumer = tmp_path / "consumer"
        consumer.mkdir()
        (consumer / "Dockerfile").write_text(f"FROM {base}\nRUN greet > /out.txt\n")
        for _ in range(2):
            assert build(other, consumer, "-q") == 0
        first_id = capsys.readouterr().out.split()[-1]
        assert len(memos(other)) == 1
        with engine_busy(other):  # the tag did not move: replayed
            assert build(other, consumer, "-q") == 0
        assert capsys.readouterr().out.strip() == first_id

        push("--build-arg", "GREETING=moved")  # the tag moves to another image
        with engine_busy(other):
            assert build(other, consumer, "-q") == 1
        capsys.readouterr()
        assert build(other, consumer, "-q") == 0
        assert capsys.readouterr().out.strip() != first_id
        assert build(other, consumer, "-q") == 0  # a no-op on the new base: remembered
    finally:
        registry.stop()
    capsys.readouterr()
    with engine_busy(other):  # the registry is gone: it cannot say, so the build runs
        assert build(other, consumer, "-q") == 1
    capsys.readouterr()
