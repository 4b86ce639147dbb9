"""``dockyard solve`` through a real ``dockyardd`` (as ``buildctl build`` sends a
Definition to buildkitd): a Definition on stdin with a local source served over the
session and a local output written on this host; a Python build file — run in this
process, never in the daemon — with a build argument and a secret; a failing RUN and a
raising build file reported as the embedded engine reports them; an empty Definition.
And the embedded ``dockyard solve`` still loads no grpc."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cli.main import main
from tests.integration.daemon.conftest import DaemonProcess


async def solve(daemon: DaemonProcess, *args: str) -> int:
    return await asyncio.to_thread(main, ["--addr", f"unix://{daemon.socket}", "solve", *args])


def stdin_with(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


async def test_a_definition_on_stdin_with_a_local_source_exports_to_the_client(
    running: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "greeting").write_text("hello from the client\n")
    (src / "skipped").write_text("not asked for\n")
    shout = "mkdir /out && tr a-z A-Z < /in/greeting > /out/shout && ls /in > /out/seen"
    made = (
        llb.image("busybox")
        .file(llb.copy(llb.local("src"), "/greeting", "/in/greeting", create_dest_path=True))
        .run(shout, name="shout")
    )
    result = llb.scratch().file(llb.copy(made.root, "/out/", "/", dir_contents_only=True))
    stdin_with(monkeypatch, result.marshal().to_bytes())
    out = tmp_path / "out"
    code = await solve(
        running, "--progress", "plain", "--local", f"src={src}", "-o", f"type=local,dest={out}"
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "shout").read_text() == "HELLO FROM THE CLIENT\n"
    assert (out / "seen").read_text() == "greeting\n"
    assert sorted(p.name for p in out.iterdir()) == ["seen", "shout"]
    assert "shout" in err

    # a local directory that is not one is a usage error, before anything is sent
    stdin_with(monkeypatch, result.marshal().to_bytes())
    code = await solve(
        running, "--local", f"src={tmp_path / 'nope'}", "-o", f"type=local,dest={out}"
    )
    assert code == 2
    assert "--local src=" in capsys.readouterr().err


BUILD_FILE = """\
import os
from pathlib import Path

from dockyard import llb

Path(os.environ["DY_TEST_PID_FILE"]).write_text(str(os.getpid()))


def build(ctx):
    Path(os.environ["DY_TEST_PLATFORM_FILE"]).write_text(str(ctx.platform))
    version = ctx.build_args.get("VERSION", "none")
    made = llb.image("busybox").run(
        f"mkdir /out && echo {version} > /out/version && wc -c < /run/secrets/token > /out/n",
        mounts=[llb.SecretMount("/run/secrets/token", id="token")],
        name="use the secret",
    )
    return llb.scratch().file(llb.copy(made.root, "/out/", "/", dir_contents_only=True))
"""


async def test_a_build_file_runs_in_the_client_with_build_args_and_a_secret(
    running: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build = tmp_path / "build.py"
    build.write_text(BUILD_FILE)
    pid_file, platform_file = tmp_path / "pid", tmp_path / "platform"
    monkeypatch.setenv("DY_TEST_PID_FILE", str(pid_file))
    monkeypatch.setenv("DY_TEST_PLATFORM_FILE", str(platform_file))
    (tmp_path / "token").write_text("s3cr3t-value")
    # the daemon is chosen by $DOCKYARD_HOST here (the other tests: --addr)
    monkeypatch.setenv("DOCKYARD_HOST", f"unix://{running.socket}")
    tar = tmp_path / "out.tar"
    code = await asyncio.to_thread(
        main,
        ["solve", "--progress", "plain", "--build-arg", "VERSION=1.2.3",
         "--secret", f"id=token,src={tmp_path / 'token'}", "-o", f"type=tar,dest={tar}",
         str(build)],
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    with tarfile.open(tar) as archive:
        files = {m.name: archive.extractfile(m) for m in archive.getmembers() if m.isfile()}
        content = {name: f.read() for name, f in files.items() if f is not None}
    assert content == {"version": b"1.2.3\n", "n": b"12\n"}
    # the build file ran in this process — the client's — and never in the daemon's
    assert int(pid_file.read_text()) == os.getpid()
    assert int(pid_file.read_text()) != running.pid
    # for the daemon's worker platform (this host's), as embedded
    from dockyard.core import host_platform

    assert platform_file.read_text() == str(host_platform())
    assert "[internal] load build file build.py" in err
    assert "s3cr3t-value" not in err
    assert "s3cr3t-value" not in running.log_text()

    # --platform is the build file's target platform (a graph of no image: nothing of
    # that platform needs to be pulled)
    build.write_text(
        "from dockyard import llb\n\n"
        "def build(ctx):\n"
        "    return llb.scratch().file(llb.mkfile('/platform', 0o644, str(ctx.platform)))\n"
    )
    out = tmp_path / "out"
    code = await asyncio.to_thread(
        main,
        ["solve", "--progress", "quiet", "--platform", "linux/arm64", "-o",
         f"type=local,dest={out}", str(build)],
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (out / "platform").read_text() == "linux/arm64"


async def test_a_failing_run_exits_1_with_the_step_log(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "build.py"
    build.write_text(
        "from dockyard import llb\n\n"
        "def build():\n"
        "    return llb.image('busybox').run('echo about to fail; exit 9', name='doomed').root\n"
    )
    assert await solve(running, "--progress", "plain", str(build)) == 1
    err = capsys.readouterr().err
    assert " > doomed:" in err, err
    assert "about to fail" in err.split(" > doomed:")[1]
    assert 'ERROR: process "/bin/sh -c echo about to fail; exit 9" did not complete' in err
    assert "exit code: 9" in err
    # quiet: no progress, the error still shows the step's last lines (as embedded)
    assert await solve(running, "--progress", "quiet", str(build)) == 1
    assert capsys.readouterr().err.splitlines() == [
        "------",
        " > doomed:",
        "about to fail",
        "------",
        'ERROR: process "/bin/sh -c echo about to fail; exit 9" did not complete '
        "successfully: exit code: 9",
    ]


async def test_a_raising_build_file_names_its_file_and_line(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "broken.py"
    build.write_text(
        textwrap.dedent(
            """\
            from dockyard import llb

            def build(ctx):
                raise ValueError("boom")
            """
        )
    )
    assert await solve(running, "--progress", "plain", str(build)) == 1
    err = capsys.readouterr().err
    assert f"ERROR: {build}:4: ValueError in build(): boom" in err
    assert 'raise ValueError("boom")' in err  # the file's line, shown
    assert "Traceback" not in err
    assert "[internal] load build file broken.py" in err

    build.write_text("def build(:\n")
    assert await solve(running, "--progress", "quiet", str(build)) == 1
    err = capsys.readouterr().err
    assert f"ERROR: {build}:1: syntax error" in err
    assert "Traceback" not in err
    # the daemon saw none of it
    assert "broken.py" not in running.log_text()


async def test_an_empty_definition_exports_an_empty_result(
    running: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdin_with(monkeypatch, b"")
    out = tmp_path / "out"
    assert await solve(running, "-o", f"type=local,dest={out}", "-") == 0, capsys.readouterr()
    assert out.is_dir()
    assert list(out.iterdir()) == []


def test_the_embedded_solve_loads_no_grpc_and_no_client(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = (
        "import sys\n"
        "from dockyard.cli.main import main\n"
        f"code = main(['solve', '--state-dir', {str(tmp_path / 'state')!r}, '--progress',"
        f" 'quiet', '-o', 'type=local,dest={out}', '-'])\n"
        "assert code == 0, code\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_HOST", "DOCKYARD_WARM")}
    modules = (
        subprocess.run(
            [sys.executable, "-c", script],
            input=b"",
            check=True,
            capture_output=True,
            env={**env, "DOCKYARD_WARM": "0"},
        )
        .stdout.decode()
        .split()
    )
    assert "dockyard.engine" in modules  # it did build embedded
    assert "grpc" not in modules
    assert "dockyard.client" not in modules  # nothing named a daemon: no client loaded
    assert out.is_dir()


async def test_allow_grants_what_the_daemon_allows(
    daemon: DaemonProcess,
    daemon_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = 'allowed-entitlements = ["network.host"]\n[worker]\nruntime = "crun"\n'
    await asyncio.to_thread(daemon_config.write_text, config)
    await daemon.start()
    build = tmp_path / "build.py"
    build.write_text(
        "from dockyard import llb\n\n"
        "def build():\n"
        "    made = llb.image('busybox').run(\n"
        "        'mkdir /out && ls /sys/class/net > /out/net', network=llb.NetMode.HOST\n"
        "    )\n"
        "    return llb.scratch().file(llb.copy(made.root, '/out/net', '/net'))\n"
    )
    out = tmp_path / "out"
    args = ("--progress", "quiet", "-o", f"type=local,dest={out}", str(build))
    assert await solve(daemon, "--allow", "network.host", *args) == 0, capsys.readouterr().err
    assert set((out / "net").read_text().split()) == set(os.listdir("/sys/class/net"))
    # not asked for: refused, as embedded
    assert await solve(daemon, *args) == 2
    assert "needs the network.host entitlement" in capsys.readouterr().err
