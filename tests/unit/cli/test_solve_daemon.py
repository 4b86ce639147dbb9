"""``dockyard solve`` choosing a daemon (no daemon needed: one that cannot be reached
shows which was chosen): ``--addr`` of the command or of ``dockyard``,
``$DOCKYARD_HOST``, the embedded engine with ``--state-dir``; bad input is refused
before anything is dialled, as embedded; a build file is evaluated only once the
daemon has named its platform (or ``--platform`` names one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cli.main import main

BUILD_FILE = """\
import os
from pathlib import Path

from dockyard import llb

Path(os.environ["DY_UNIT_MARKER"]).write_text("ran")


def build():
    return llb.scratch().file(llb.mkfile("/f", 0o644, "x"))
"""


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKYARD_WARM", "0")


@pytest.fixture
def nowhere(tmp_path: Path) -> str:
    return f"unix://{tmp_path / 'no-daemon.sock'}"


@pytest.fixture
def build_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    build = tmp_path / "build.py"
    build.write_text(BUILD_FILE)
    monkeypatch.setenv("DY_UNIT_MARKER", str(tmp_path / "marker"))
    return build


def test_addr_of_dockyard_or_of_solve_or_the_environment_picks_the_daemon(
    nowhere: str,
    build_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = f"cannot reach dockyardd at {nowhere}"
    for argv in (
        ["--addr", nowhere, "solve", "--progress", "quiet", str(build_file)],
        ["solve", "--addr", nowhere, "--progress", "quiet", str(build_file)],
        # --addr wins over --state-dir, as for dockyard build
        ["--addr", nowhere, "solve", "--state-dir", str(tmp_path / "s"), str(build_file)],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert expected in err, err
        assert "Traceback" not in err
    # the daemon names the build platform first: the file did not run
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "s").exists()  # no embedded engine was opened

    monkeypatch.setenv("DOCKYARD_HOST", nowhere)
    assert main(["solve", "--progress", "quiet", "--platform", "linux/amd64", str(build_file)]) == 1
    assert f"dockyardd at {nowhere}" in capsys.readouterr().err  # the session cannot start
    # with a target platform it ran here, then its Definition could not be sent
    assert (tmp_path / "marker").read_text() == "ran"


def test_bad_input_is_refused_before_the_daemon_is_dialled(
    nowhere: str, build_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = tmp_path / "def.pb"
    definition.write_bytes(llb.scratch().file(llb.mkfile("/f", 0o644, "x")).marshal().to_bytes())
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff" * 30)
    cases: list[tuple[list[str], int, str]] = [
        (["--build-arg", "A=1", str(definition)], 2, "apply to a Python build file"),
        (["--local", f"src={tmp_path / 'nope'}", str(definition)], 2, "--local src="),
        (["--local", "src", str(definition)], 2, "--local expects KEY=VALUE"),
        (["--platform", "linux/nope/x/y", str(build_file)], 2, "--platform:"),
        (["-o", "type=nope", str(definition)], 2, "nope"),
        (["--secret", f"id=s,src={tmp_path / 'missing'}", str(definition)], 2, "missing"),
        ([str(tmp_path / "absent.pb")], 1, "absent.pb: no such file"),
        ([str(garbage)], 1, "corrupt or truncated Definition"),
    ]
    for args, code, message in cases:
        assert main(["--addr", nowhere, "solve", *args]) == code, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "cannot reach" not in err, args
        assert "Traceback" not in err
    assert not (tmp_path / "marker").exists()


def test_an_address_that_is_none_is_a_usage_error(
    build_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["solve", "--addr", "http://example", str(build_file)]) == 2
    assert "--addr" in capsys.readouterr().err


def test_embedded_asks_no_daemon(
    build_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DOCKYARD_HOST=embedded`` (or ``--state-dir``) keeps the embedded path: the
    daemon client is never made."""
    import dockyard.client

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a daemon client was made")

    monkeypatch.setattr(dockyard.client.Client, "connect", refuse)
    monkeypatch.setenv("DOCKYARD_HOST", "embedded")
    from dockyard.cli import _solve

    assert _solve._daemon_address(None, None) is None
    assert _solve._daemon_address(None, str(tmp_path)) is None
    monkeypatch.delenv("DOCKYARD_HOST")
    assert _solve._daemon_address(None, str(tmp_path)) is None
    assert _solve._daemon_address("unix:///x.sock", str(tmp_path)) == "unix:///x.sock"
    assert os.environ.get("DOCKYARD_HOST") is None


def test_the_embedded_paths_names_are_the_clients() -> None:
    from dockyard.cli import _solve
    from dockyard.client import DEFAULT_SOCKET, HOST_ENV

    assert _solve._HOST_ENV == HOST_ENV
    assert Path(_solve._DEFAULT_SOCKET) == DEFAULT_SOCKET


def test_the_embedded_path_loads_no_client(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from dockyard.cli import _solve\n"
        f"assert _solve._daemon_address(None, {str(tmp_path)!r}) is None\n"
        "assert 'dockyard.client' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_HOST"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)


def test_a_build_on_a_missing_daemon_says_so_plainly(
    nowhere: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the session's attach failed first and its grpc status reached the user:
    # "cannot start a session with dockyardd at ...: cannot attach the session:
    # UNAVAILABLE: failed to connect to all addresses; last error: FAILED_PRECONDITION..."
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    for argv in (["build", "-q", str(ctx)], ["du"], ["prune"]):
        assert main(["--addr", nowhere, *argv]) == 1
        err = capsys.readouterr().err
        assert f"cannot reach dockyardd at {nowhere}: no socket there (is dockyardd running?" in (
            err
        ), err
        assert "FAILED_PRECONDITION" not in err
        assert "UNAVAILABLE" not in err
        # nothing was solved: no "failed to solve:" before it (buildx names a dead builder so)
        assert f"ERROR: cannot reach dockyardd at {nowhere}" in err, err
