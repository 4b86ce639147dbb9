"""Builds through a real ``dockyardd``: a Dockerfile from the client's session with its
files exported back; errors and progress over the wire; eight concurrent clients with
overlapping Dockerfiles whose shared RUN steps execute once; a client killed mid-build
cancels its build."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.core import ExecError, FrontendError

from .client import BuildResult, DaemonClient
from .conftest import DaemonProcess, eventually, processes_with

MULTI_STAGE = """\
FROM busybox AS build
COPY hello.txt /src/
RUN mkdir /out && tr a-z A-Z < /src/hello.txt > /out/HELLO.txt && echo converted
FROM scratch
COPY --from=build /out/ /
"""


def _context(root: Path, dockerfile: str, **files: str) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


async def test_a_dockerfile_builds_through_the_daemon(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx", MULTI_STAGE, **{"hello.txt": "hello daemon\n"})
    async with running.client() as client:
        first = await client.build(ctx, out=tmp_path / "out")
        assert (tmp_path / "out" / "HELLO.txt").read_text() == "HELLO DAEMON\n"
        steps = first.statuses()
        run = next(s for n, s in steps.items() if "RUN mkdir /out" in n)
        assert run.done
        assert not run.cached
        assert b"converted" in first.logs()
        assert "[internal] load build definition from Dockerfile" in steps

        again = await client.build(ctx, out=tmp_path / "again")
        assert (tmp_path / "again" / "HELLO.txt").read_text() == "HELLO DAEMON\n"
        rerun = next(s for n, s in again.statuses().items() if "RUN mkdir /out" in n)
        assert rerun.cached

        records = await client.du()
        assert records
        assert not any(r.in_use for r in records)
        workers = await client.workers()
        assert workers.record[0].labels["org.mobyproject.buildkit.worker.snapshotter"]
        # the host's platform first, then what it runs besides (emulated ones included)
        from dockyard.executor import host_platforms

        listed = [(p.OS, p.Architecture, p.Variant) for p in workers.record[0].platforms]
        host = host_platforms()
        assert listed[0][:2] == (host.native.os, host.native.architecture)
        for support in host.supported:
            platform = support.platform
            assert (platform.os, platform.architecture, platform.variant) in listed


async def test_errors_and_their_lines_cross_the_wire(
    running: DaemonProcess, tmp_path: Path
) -> None:
    async with running.client() as client:
        failing = _context(tmp_path / "fail", "FROM busybox\nRUN echo before && exit 3\n")
        with pytest.raises(ExecError) as info:
            await client.build(failing)
        assert str(info.value).startswith("Dockerfile:2")
        assert "exit code: 3" in str(info.value)
        assert info.value.vertex is not None
        assert info.value.locations[0].data is not None  # the client can show the line

        broken = _context(tmp_path / "broken", "FROM busybox\nRUNN true\n")
        with pytest.raises(FrontendError, match=r"^Dockerfile:2"):
            await client.build(broken)


async def test_eight_clients_share_the_steps_they_have_in_common(
    running: DaemonProcess, tmp_path: Path
) -> None:
    """Every client's Dockerfile runs one RUN all eight share, one its group of four
    shares and one of its own. Shared steps append to a cache mount as they run: it must
    list each shared step once."""
    token = secrets.token_hex(4)  # a fresh cache for this test's steps
    counter = f"--mount=type=cache,id=counter-{token},target=/count,sharing=locked"

    def dockerfile(i: int) -> str:
        group = "a" if i < 4 else "b"
        return (
            "FROM busybox AS work\n"
            f"RUN {counter} echo all >> /count/runs && sleep 1 && echo all-{token} > /all\n"
            f"RUN {counter} echo {group} >> /count/runs && sleep 1 && echo {group} > /group\n"
            f"RUN echo client-{i} > /mine\n"
            "FROM scratch\n"
            "COPY --from=work /all /group /mine /\n"
        )

    async def one(i: int) -> BuildResult:
        ctx = _context(tmp_path / f"ctx{i}", dockerfile(i))
        async with running.client() as client:
            return await client.build(ctx, out=tmp_path / f"out{i}")

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert len(results) == 8
    for i in range(8):
        out = tmp_path / f"out{i}"
        assert (out / "all").read_text() == f"all-{token}\n"
        assert (out / "group").read_text() == ("a\n" if i < 4 else "b\n")
        assert (out / "mine").read_text() == f"client-{i}\n"

    reader = _context(
        tmp_path / "reader",
        "FROM busybox AS read\n"
        f"RUN {counter} cp /count/runs /runs && echo {secrets.token_hex(4)}\n"
        "FROM scratch\nCOPY --from=read /runs /\n",
    )
    async with running.client() as client:
        await client.build(reader, out=tmp_path / "runs")
    runs = sorted((tmp_path / "runs" / "runs").read_text().split())
    assert runs == ["a", "all", "b"]


ROOT = Path(__file__).resolve().parents[3]


async def test_a_client_killed_mid_build_cancels_its_build(
    running: DaemonProcess, tmp_path: Path
) -> None:
    marker = str(3000 + secrets.randbelow(5000))
    ctx = _context(
        tmp_path / "ctx", f"FROM busybox\nRUN echo started && sleep {marker} && echo never\n"
    )
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.daemon.client",
        str(running.socket),
        str(ctx),
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert client.stdout is not None
        line = await asyncio.wait_for(client.stdout.readline(), 60)
        assert line == b"STARTED\n", running.log_text()
        assert processes_with(f"sleep {marker}")
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()

    async def cleaned_up() -> bool:
        if processes_with(f"sleep {marker}"):  # the step's container is gone
            return False
        async with running.client() as daemon_client:
            return not any(r.in_use for r in await daemon_client.du())

    await eventually(cleaned_up)
    assert "cancelled by the client" in running.log_text()
    # the daemon serves on
    async with running.client() as daemon_client:
        await daemon_client.build(_context(tmp_path / "next", "FROM busybox\nRUN true\n"))


async def test_unknown_clients_cannot_read_the_socket(running: DaemonProcess) -> None:
    mode = running.socket.stat().st_mode & 0o777
    assert mode == 0o660
    assert running.socket.stat().st_uid == 0


async def test_a_second_daemon_on_the_same_state_is_refused(
    running: DaemonProcess, tmp_path: Path
) -> None:
    other = await _dockyardd(
        "--addr", f"unix://{running.socket.parent}/other.sock", "--state-dir", str(running.state)
    )
    assert other.returncode == 1
    assert "in use by another Dockyard engine" in other.stderr
    assert not (running.socket.parent / "other.sock").exists()
    same_socket = await _dockyardd(
        "--addr", f"unix://{running.socket}", "--state-dir", str(tmp_path / "other-state")
    )
    assert same_socket.returncode == 2
    assert "another daemon is listening" in same_socket.stderr
    async with DaemonClient(running.target) as client:
        await client.info()  # the first one is unharmed


@dataclass(frozen=True)
class _Exited:
    returncode: int
    stderr: str


async def _dockyardd(*args: str) -> _Exited:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dockyard.cli.daemon",
        *args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return _Exited(returncode=proc.returncode, stderr=err.decode())
