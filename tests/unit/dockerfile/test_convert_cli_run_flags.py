"""``dockyard debug dump-llb --dockerfile`` with the RUN runtime flags of ``dockyard
build`` (``--add-host``, ``--ulimit``, ``--shm-size``, ``--cgroup-parent``): they show on
the exec ops of the dump, parsed as the build parses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main

DOCKERFILE = """\
FROM busybox
RUN echo one
RUN echo two
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["debug", "dump-llb", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dockerfile(tmp_path: Path) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(DOCKERFILE)
    return path


def execs(out: str) -> list[dict[str, Any]]:
    ops = [json.loads(line)["Op"] for line in out.splitlines()]
    return [op["exec"] for op in ops if "exec" in op]


def test_run_flags_are_on_every_exec(dockerfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "--dockerfile", str(dockerfile),
        "--add-host", "db:10.0.0.2", "--add-host", "gw:host-gateway",
        "--ulimit", "nofile=1024:2048", "--ulimit", "nofile=512:1024",
        "--shm-size", "128m", "--cgroup-parent", "/builds",
    )  # fmt: skip
    assert code == 0, err
    found = execs(out)
    assert len(found) == 2
    for exec_op in found:
        meta = exec_op["meta"]
        assert meta["extraHosts"] == [
            {"Host": "db", "IP": "10.0.0.2"},
            {"Host": "gw", "IP": "127.0.0.1"},
        ]
        # a later --ulimit of a name replaces the first, as `dockyard build` takes it
        assert meta["ulimit"] == [{"Name": "nofile", "Soft": "512", "Hard": "1024"}]
        assert meta["cgroupParent"] == "/builds"
        shm = [m for m in exec_op["mounts"] if m.get("dest") == "/dev/shm"]
        assert len(shm) == 1
        assert shm[0]["TmpfsOpt"]["size"] == str(128 << 20)


def test_without_flags_the_execs_have_none(
    dockerfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--dockerfile", str(dockerfile))
    assert code == 0, err
    for exec_op in execs(out):
        assert "extraHosts" not in exec_op["meta"]
        assert "ulimit" not in exec_op["meta"]
        assert "cgroupParent" not in exec_op["meta"]
        assert not [m for m in exec_op["mounts"] if m.get("dest") == "/dev/shm"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ulimit", "open=5"), "--ulimit open=5: unknown ulimit 'open'"),
        (("--shm-size", "12x"), "--shm-size 12x: invalid size"),
        (("--add-host", "nocolon"), "--add-host nocolon"),
        (("--cgroup-parent", "../x"), "--cgroup-parent '../x'"),
    ],
)
def test_bad_values_name_the_flag(
    dockerfile: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "--dockerfile", str(dockerfile), *args)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_run_flags_need_a_dockerfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(
        capsys, str(tmp_path / "def.pb"), "--shm-size", "1m", "--ulimit", "nproc=5"
    )
    assert code == 2
    assert "--ulimit, --shm-size: RUN flags apply to --dockerfile only" in err
