"""A multi-platform build's cache exported (``--cache-to type=local`` and
``type=registry``) and imported by a fresh state directory (``--cache-from``): every
platform's steps are CACHED and the outputs are the first build's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import requirement_missing
from tests.integration.engine.conftest import store_busybox
from tests.integration.platforms import AMD64, ARM64, MULTI, build_step_prefix

# the random bytes make a step that ran again visible in its output
CROSS = """\
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETPLATFORM
RUN echo $TARGETPLATFORM > /p && head -c 16 /dev/urandom | od -x >> /p
FROM scratch
COPY --from=build /p /p
"""
STEPS = (
    f"[{build_step_prefix(AMD64)} build 2/2] RUN echo linux/amd64 > /p",
    f"[{build_step_prefix(ARM64)} build 2/2] RUN echo linux/arm64 > /p",
    "[linux/amd64 stage-1 1/1] COPY --from=build /p /p",
    "[linux/arm64 stage-1 1/1] COPY --from=build /p /p",
)


@pytest.fixture
async def fresh(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A second state directory holding busybox (and no build cache)."""
    path = tmp_path / "fresh-state"
    await store_busybox(path, busybox_rootfs)
    return path


def _build(state: Path, ctx: Path, out: Path, *args: str) -> int:
    return main(
        ["build", "--state-dir", str(state), "--progress", "plain", "--platform", MULTI,
         "-o", f"type=local,dest={out}", *args, str(ctx)]
    )  # fmt: skip


def _step_states(err: str) -> dict[str, bool]:
    """Each step's name (the part before `` && ``) and whether it was CACHED."""
    numbers: dict[str, str] = {}
    for match in re.finditer(r"^#(\d+) (\[.*)$", err, re.MULTILINE):
        numbers.setdefault(match.group(2).split(" && ")[0], match.group(1))
    return {
        name: re.search(rf"^#{number} CACHED$", err, re.MULTILINE) is not None
        for name, number in numbers.items()
    }


def _check_imported(first: Path, second: Path, err: str) -> None:
    steps = _step_states(err)
    for step in STEPS:
        assert steps.get(step) is True, f"{step} not CACHED:\n{err}"
    for platform in ("linux_amd64", "linux_arm64"):
        assert (second / platform / "p").read_text() == (first / platform / "p").read_text()


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CROSS)
    return ctx


def test_a_local_cache_of_every_platform(
    state: Path, fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, cache = _context(tmp_path), tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    code = _build(state, ctx, first, "--cache-to", f"type=local,dest={cache},mode=max")
    err = capsys.readouterr().err
    assert code == 0, err
    assert not any(_step_states(err).values())  # nothing to reuse the first time
    assert (cache / "index.json").is_file()
    code = _build(fresh, ctx, second, "--cache-from", f"type=local,src={cache}")
    err = capsys.readouterr().err
    assert code == 0, err
    _check_imported(first, second, err)


def test_a_registry_cache_of_every_platform(
    state: Path, fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(REGISTRY_BINARY).exists():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    registry = start_registry(tmp_path / "registry")
    try:
        ctx, ref = _context(tmp_path), registry.ref("multi-cache:buildcache")
        first, second = tmp_path / "first", tmp_path / "second"
        code = _build(state, ctx, first, "--cache-to", f"type=registry,ref={ref},mode=max")
        err = capsys.readouterr().err
        assert code == 0, err
        code = _build(fresh, ctx, second, "--cache-from", f"type=registry,ref={ref}")
        err = capsys.readouterr().err
        assert code == 0, err
        _check_imported(first, second, err)
    finally:
        registry.stop()
