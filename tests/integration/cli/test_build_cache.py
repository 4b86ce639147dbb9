"""``--cache-to``/``--cache-from type=local``: a second state directory reuses the
first one's steps through an exported cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.engine.conftest import store_busybox


@pytest.fixture
async def other(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A second state directory holding busybox."""
    path = tmp_path / "other-state"
    await store_busybox(path, busybox_rootfs)
    return path


def test_a_local_cache_exported_and_imported(
    state: Path, other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN head -c 16 /dev/urandom | od -x > /random.txt\n"
    )
    cache = tmp_path / "cache"

    def build(state_dir: Path, out: str, *args: str) -> int:
        return main(
            ["build", "--state-dir", str(state_dir), "--progress", "plain",
             "-o", str(tmp_path / out), *args, str(ctx)]
        )  # fmt: skip

    assert build(state, "first", "--cache-to", f"type=local,dest={cache},mode=max") == 0
    assert (cache / "index.json").is_file()
    capsys.readouterr()
    assert build(other, "second", "--cache-from", f"type=local,src={cache}") == 0
    err = capsys.readouterr().err
    assert (tmp_path / "second/random.txt").read_text() == (
        tmp_path / "first/random.txt"
    ).read_text()  # the step did not run again
    assert "CACHED" in err


def test_a_min_cache_of_a_filtered_build_serves_a_build_without_the_filter(
    state: Path, other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--no-cache-filter`` gives the rebuilt stage's steps run keys (6aae130); a
    mode=min export keeps their keys without results, and the importer skipped such
    records: a build without the filter from that cache ran every step again."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS base\nRUN head -c 16 /dev/urandom | od -x > /base.txt\n"
        "FROM base\nRUN head -c 16 /dev/urandom | od -x > /random.txt\n"
    )
    cache = tmp_path / "cache"

    def build(state_dir: Path, out: str, *args: str) -> int:
        return main(
            ["build", "--state-dir", str(state_dir), "--progress", "plain",
             "-o", str(tmp_path / out), *args, str(ctx)]
        )  # fmt: skip

    assert (
        build(state, "first", "--no-cache-filter", "base", "--cache-to", f"type=local,dest={cache}")
        == 0
    )
    capsys.readouterr()
    assert build(other, "second", "--cache-from", f"type=local,src={cache}") == 0
    for name in ("base.txt", "random.txt"):  # neither step ran again
        assert (tmp_path / "second" / name).read_text() == (tmp_path / "first" / name).read_text()
