"""``--add-host``, ``--ulimit``, ``--shm-size`` and ``--cgroup-parent`` of ``dockyard
build`` as RUN steps see them, on the embedded engine: lines of ``/etc/hosts``,
``ulimit -n``/``-Hn``, the ``/dev/shm`` tmpfs's size, the process's cgroup (runc) — and
in the cache key (a changed limit runs the step again)."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.conftest import need_tools

REPORT = (
    "FROM busybox\n"
    "RUN (grep -E '\\s(db|v6|gw)$' /etc/hosts; echo soft=$(ulimit -n) hard=$(ulimit -Hn);"
    " grep ' /dev/shm ' /proc/mounts; df -k /dev/shm | tail -n 1) > /report\n"
)


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


def _context(tmp_path: Path, dockerfile: str = REPORT) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _report(out: Path) -> list[str]:
    return (out / "report").read_text().splitlines()


def test_hosts_ulimits_and_shm_size_reach_every_run(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    out = tmp_path / "out"
    code = build(
        state, "-q", "-o", str(out), "--add-host", "db:10.1.2.3", "--add-host", "v6=[fd00::1]",
        "--add-host", "gw:host-gateway", "--ulimit", "nofile=1024:2048", "--shm-size", "128m",
        str(ctx),
    )  # fmt: skip
    assert code == 0
    lines = _report(out)
    assert lines[:3] == ["10.1.2.3\tdb", "fd00::1\tv6", "127.0.0.1\tgw"]
    assert lines[3] == "soft=1024 hard=2048"
    shm_mounts = [line for line in lines if " /dev/shm " in line]
    assert len(shm_mounts) == 1  # the default 64 MiB /dev/shm is replaced, not covered
    assert "size=131072k" in shm_mounts[0].split()[3].split(",")
    assert lines[-1].split()[1] == "131072"  # df's 1K-blocks
    # without the flags, the same step has the sandbox's defaults
    plain = tmp_path / "plain"
    assert build(state, "-q", "-o", str(plain), str(ctx)) == 0
    lines = _report(plain)
    assert not any(line.endswith(("\tdb", "\tv6", "\tgw")) for line in lines)
    assert lines[0] != "soft=1024 hard=2048"
    assert lines[-1].split()[1] == "65536"  # docker's default 64m


def test_a_changed_limit_or_size_runs_the_step_again(state: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    results: list[list[str]] = []
    for i, flags in enumerate(
        (
            ("--ulimit", "nofile=1024:2048", "--shm-size", "128m"),
            ("--ulimit", "nofile=512:2048", "--shm-size", "128m"),
            ("--ulimit", "nofile=512:2048", "--shm-size", "96m"),
        )
    ):
        out = tmp_path / f"out{i}"
        assert build(state, "-q", "-o", str(out), *flags, str(ctx)) == 0
        results.append(_report(out))
    assert results[0][0] == "soft=1024 hard=2048"
    assert results[1][0] == "soft=512 hard=2048"  # not the cached step of the first build
    assert results[1][-1].split()[1] == "131072"
    assert results[2][-1].split()[1] == "98304"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--add-host", "db:not-an-ip"), "--add-host db:not-an-ip: invalid IP address"),
        (("--add-host", "nohost"), "--add-host nohost"),
        (("--ulimit", "files=10"), "--ulimit files=10: unknown ulimit 'files'"),
        (("--ulimit", "nofile=2048:1024"), "soft limit must be at most the hard limit"),
        (("--ulimit", "nofile=lots"), "--ulimit nofile=lots"),
        (("--shm-size", "big"), "--shm-size big: invalid size"),
        (("--shm-size", "0"), "--shm-size 0"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(
    state: Path, tmp_path: Path, flags: tuple[str, ...], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ctx = _context(tmp_path)
    assert build(state, *flags, str(ctx)) == 2
    assert message in capsys.readouterr().err


def test_a_hard_limit_above_the_hosts_is_refused_by_name(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text()
        caps = int(next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1], 16)
        if hard == resource.RLIM_INFINITY or caps >> 24 & 1:
            pytest.skip("this process may raise its hard nofile limit")  # not this VM
    ctx = _context(tmp_path)
    assert build(state, "-q", "--ulimit", f"nofile=1024:{hard + 1}", str(ctx)) == 1
    err = capsys.readouterr().err
    assert f"ulimit nofile: the hard limit {hard + 1} is above this host's {hard}" in err
    assert "CAP_SYS_RESOURCE" in err


def test_cgroup_parent_with_crun_is_an_error_saying_why(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN cat /proc/self/cgroup > /cgroup\n")
    assert build(state, "-q", "--cgroup-parent", "/builds", str(ctx)) == 1
    err = capsys.readouterr().err
    assert "cgroup parent '/builds'" in err
    assert "--runtime runc" in err


def test_cgroup_parent_with_runc_places_run_steps_under_it(state: Path, tmp_path: Path) -> None:
    need_tools("runc")
    parent = f"dy-test-{secrets.token_hex(4)}"
    ctx = _context(tmp_path, "FROM busybox\nRUN cat /proc/self/cgroup > /cgroup\n")
    out = tmp_path / "out"
    try:
        code = build(
            state, "--runtime", "runc", "-q", "-o", str(out), "--cgroup-parent", f"/{parent}",
            str(ctx),
        )  # fmt: skip
        assert code == 0
        paths = [line.split(":", 2)[2] for line in (out / "cgroup").read_text().splitlines()]
        assert paths
        assert all(p.startswith(f"/{parent}/dockyard/dy-") for p in paths), paths
    finally:
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for leftover in sorted(hierarchy.glob(f"{parent}/**/"), reverse=True):
                with contextlib.suppress(OSError):
                    leftover.rmdir()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{parent}"))
