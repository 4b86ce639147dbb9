"""``dockyard build --invoke CMD`` / ``--on always|error`` parsed (nothing is built: the
run is replaced), and the combinations refused as usage errors (exit code 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import _build
from dockyard.cli._build import DEFAULT_SHELL, InvokeSpec
from dockyard.cli.main import main
from dockyard.client import BuildOptions, Client
from dockyard.core import UsageError
from dockyard.executor.types import Stdio


class Captured:
    client: Client
    options: BuildOptions
    kwargs: dict[str, Any]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    seen = Captured()

    def fake_run(client: Client, options: BuildOptions, **kwargs: Any) -> int:
        seen.client, seen.options, seen.kwargs = client, options, kwargs
        return 0

    monkeypatch.setattr(_build, "run_build", fake_run)
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    return seen


def build(tmp_path: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(tmp_path / "state"), *args])


@pytest.mark.parametrize(
    ("invoke", "on", "args", "on_success"),
    [
        ("/bin/sh", None, ("/bin/sh",), True),
        ("/bin/bash -l", None, ("/bin/bash", "-l"), True),
        ("sh -c 'ls /; exec sh'", None, ("sh", "-c", "ls /; exec sh"), True),
        ("/bin/sh", "always", ("/bin/sh",), True),
        ("/bin/sh", "error", ("/bin/sh",), False),
        ("on-error", None, (DEFAULT_SHELL,), False),
        ("on-error", "error", (DEFAULT_SHELL,), False),
        (None, "error", (DEFAULT_SHELL,), False),
        (None, "always", (DEFAULT_SHELL,), True),
    ],
)
def test_parse(invoke: str | None, on: str | None, args: tuple[str, ...], on_success: bool) -> None:
    assert InvokeSpec.parse(invoke, on) == InvokeSpec(args=args, on_success=on_success)


def test_parse_nothing() -> None:
    assert InvokeSpec.parse(None, None) is None


@pytest.mark.parametrize(
    ("invoke", "on", "message"),
    [
        ("", None, "needs a command"),
        ("   ", None, "needs a command"),
        ("sh -c 'unclosed", None, "No closing quotation"),
        ("on-error", "always", "only on an error"),
        ("/bin/sh", "sometimes", "expected always or error"),
    ],
)
def test_parse_errors(invoke: str, on: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        InvokeSpec.parse(invoke, on)


def test_the_shell_is_on_this_processs_streams() -> None:
    spec = InvokeSpec(args=("/bin/sh",), on_success=False)
    lines: list[str] = []
    shell = spec.shell(lines.append)
    assert shell.args == ("/bin/sh",)
    assert shell.stdio == Stdio()
    assert shell.on_error
    assert not shell.on_success


def test_invoke_reaches_the_build(captured: Captured, tmp_path: Path) -> None:
    assert build(tmp_path, "--invoke", "/bin/sh -l", ".") == 0
    shell = captured.options.debug_shell
    assert shell is not None
    assert shell.args == ("/bin/sh", "-l")
    assert shell.on_success
    assert captured.kwargs["memo"] is None  # never replayed: the shell needs a build
    assert captured.kwargs["console"] is not None


def test_on_error_alone(captured: Captured, tmp_path: Path) -> None:
    assert build(tmp_path, "--on=error", ".") == 0
    shell = captured.options.debug_shell
    assert shell is not None
    assert shell.args == (DEFAULT_SHELL,)
    assert not shell.on_success


def test_no_shell_without_the_flags(captured: Captured, tmp_path: Path) -> None:
    assert build(tmp_path, ".") == 0
    assert captured.options.debug_shell is None
    assert "console" not in captured.kwargs


def test_a_check_gets_no_shell(captured: Captured, tmp_path: Path) -> None:
    assert build(tmp_path, "--check", "--invoke", "/bin/sh", ".") == 0
    assert captured.options.debug_shell is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--invoke", "/bin/sh", "-"], "cannot come from it"),
        (["--invoke", "/bin/sh", "-f", "-", "."], "cannot come from it"),
        (["--invoke", "/bin/sh", "-o", "-", "."], "an output cannot go to -"),
        (["--on", "error", "-o", "type=tar,dest=-", "."], "an output cannot go to -"),
        # stdout named by a path (fd 1 is pytest's capture file here)
        (["--on", "error", "-o", "type=tar,dest=/dev/stdout", "."], "the file stdout is"),
        (["--invoke", "/bin/sh", "-o", "type=oci,dest=/proc/self/fd/1", "."], "stdout is"),
        (["--on", "never", "."], "Invalid value for '--on'"),
        (["--invoke", "on-error", "--on", "always", "."], "only on an error"),
        (
            ["--invoke", "/bin/sh", "--platform", "linux/amd64,linux/arm64", "."],
            "multi-platform",
        ),
    ],
)
def test_refused(
    captured: Captured,
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build(tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert not hasattr(captured, "options")


def test_a_daemon_build_gets_the_shell(captured: Captured, tmp_path: Path) -> None:
    code = main(["build", "--addr", f"unix://{tmp_path}/d.sock", "--invoke", "/bin/sh", "."])
    assert code == 0
    assert captured.client.mode == "daemon"
    shell = captured.options.debug_shell
    assert shell is not None
    assert shell.args == ("/bin/sh",)
    assert captured.kwargs["console"] is not None  # its announcements stop the display


def test_an_output_to_another_file_is_no_stdout(captured: Captured, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    dest.write_bytes(b"")
    assert build(tmp_path, "--on", "error", "-o", f"type=tar,dest={dest}", ".") == 0
    assert captured.options.debug_shell is not None
