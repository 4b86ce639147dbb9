"""Bad input found by the error audit (docs/errors-audit.md) that needs no root: each is
a clear error naming the argument, exit code 1 or 2, never a traceback (``main`` lets no
foreign exception out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.core import Platform, UsageError
from dockyard.session import Secrets, SecretSource


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKYARD_WARM", "0")


@pytest.mark.parametrize(
    "command", [["images"], ["rmi", "busybox"], ["image", "inspect", "busybox"]]
)
def test_image_commands_on_a_state_dir_they_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A state directory that cannot be made (read-only file system, a file in the
    way) was an OSError traceback out of the content store."""
    (tmp_path / "file").write_text("")
    state = tmp_path / "file" / "state"
    assert main([*command, "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert err == f"ERROR: cannot use state directory {state}: Not a directory\n"


@pytest.mark.parametrize(
    "command", [["images"], ["rmi", "busybox"], ["image", "inspect", "busybox"]]
)
def test_image_commands_on_a_state_dir_whose_database_cannot_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """An image store that SQLite cannot open (here a directory in its place; a
    read-only state directory alike) was a sqlite3.OperationalError traceback."""
    state = tmp_path / "state"
    (state / "metadata.db").mkdir(parents=True)
    assert main([*command, "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ERROR: cannot use state directory {state}: ")
    assert "Traceback" not in err


def test_an_unknown_platform_word_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--platform foo`` was taken as linux/foo and the build ran (containerd: one word
    is an OS or an architecture it knows); the message names it once."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    assert (
        main(["build", "--state-dir", str(tmp_path / "s"), "--platform", "foo", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert err == (
        "ERROR: --platform: invalid platform 'foo': unknown operating system or architecture\n"
    )
    assert not (tmp_path / "s").exists()  # refused before an engine was opened
    with pytest.raises(ValueError, match="unknown operating system or architecture"):
        Platform.parse("foo")
    assert Platform.parse("plan9").os == "plan9"
    assert str(Platform.parse("riscv64")) == "linux/riscv64"
    assert str(Platform.parse("aarch64")) == "linux/arm64"


def test_a_missing_secret_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--secret id=s,src=MISSING`` built on without the secret (buildx stats it: a
    usage error before anything runs)."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    missing = tmp_path / "no-such-secret"
    code = main(
        [
            "build",
            "--state-dir",
            str(tmp_path / "s"),
            "--secret",
            f"id=s,src={missing}",
            str(tmp_path),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"ERROR: --secret id=s: cannot use '{missing}': No such file or directory\n"
    assert not (tmp_path / "s").exists()  # refused before an engine was opened
    with pytest.raises(UsageError, match="--secret id=s: cannot use"):
        Secrets([SecretSource(id="s", path=missing)])
    missing.write_text("x")
    assert Secrets([SecretSource(id="s", path=missing)]).ids() == {"s"}
