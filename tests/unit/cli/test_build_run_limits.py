"""``dockyard build --add-host/--ulimit/--shm-size/--cgroup-parent`` parsed into
BuildOptions (nothing is built), bad values as usage errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cli import _build
from dockyard.cli.main import main
from dockyard.client import BuildOptions, Client


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[BuildOptions]:
    seen: list[BuildOptions] = []

    def fake_run(client: Client, options: BuildOptions, **kwargs: object) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(_build, "run_build", fake_run)
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    return seen


def build(tmp_path: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(tmp_path / "state"), *args, str(tmp_path)])


def test_the_flags_become_build_options(captured: list[BuildOptions], tmp_path: Path) -> None:
    code = build(
        tmp_path, "--add-host", "db:10.0.0.2", "--add-host", "v6=[fd00::1]",
        "--add-host", "gw:host-gateway", "--ulimit", "nofile=1024:2048",
        "--ulimit", "nproc=50", "--ulimit", "nofile=512:1024", "--shm-size", "1.5g",
        "--cgroup-parent", "/builds",
    )  # fmt: skip
    assert code == 0
    (options,) = captured
    assert options.extra_hosts == (
        llb.HostIP(host="db", ip="10.0.0.2"),
        llb.HostIP(host="v6", ip="fd00::1"),
        llb.HostIP(host="gw", ip="127.0.0.1"),
    )
    # a later --ulimit of the same name replaces the first (docker's map of limits)
    assert options.ulimits == (
        llb.Ulimit(name="nofile", soft=512, hard=1024),
        llb.Ulimit(name="nproc", soft=50, hard=50),
    )
    assert options.shm_size == 1536 << 20
    assert options.cgroup_parent == "/builds"


@pytest.mark.parametrize(
    ("value", "size"),
    [("134217728", 134217728), ("128m", 128 << 20), ("128MB", 128 << 20), ("64 k", 64 << 10),
     ("1GiB", 1 << 30), ("512b", 512)],
)  # fmt: skip
def test_shm_sizes(captured: list[BuildOptions], tmp_path: Path, value: str, size: int) -> None:
    assert build(tmp_path, "--shm-size", value) == 0
    assert captured[0].shm_size == size


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--add-host", "db:10.0.0"), "--add-host db:10.0.0: invalid IP address '10.0.0'"),
        (("--add-host", "db"), "--add-host db: invalid extra host 'db' (expected NAME:IP)"),
        (("--ulimit", "open=5"), "--ulimit open=5: unknown ulimit 'open'"),
        (("--ulimit", "nofile=10:5"), "--ulimit nofile=10:5: ulimit nofile: the soft limit"),
        (("--shm-size", "12x"), "--shm-size 12x: invalid size"),
        (("--shm-size", "-1m"), "--shm-size -1m: invalid size"),
        (("--cgroup-parent", "a/../b"), "--cgroup-parent 'a/../b'"),
    ],
)
def test_bad_values_name_the_flag(
    captured: list[BuildOptions], tmp_path: Path, flags: tuple[str, ...], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert build(tmp_path, *flags) == 2
    assert message in capsys.readouterr().err
    assert not captured


def test_the_help_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--add-host NAME:IP", "--ulimit NAME=SOFT[:HARD]", "--shm-size SIZE",
                 "--cgroup-parent PATH"):  # fmt: skip
        assert flag in text
    assert "host-gateway" in text
