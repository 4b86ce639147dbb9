"""Bad input to ``dockyard build`` and the image commands, as root (see
docs/errors-audit.md): each is a clear error naming the thing, a meaningful exit code,
no traceback (``main`` lets no foreign exception out) and no half-written result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.cli.main import main


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), "--progress", "plain", *args])


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    return ctx


def test_an_output_on_a_full_device_is_an_error(
    state: Path, ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write failing with ENOSPC (here /dev/full) names the output; it used to be an
    OSError traceback out of the exporter."""
    assert build(state, "-o", "type=tar,dest=/dev/full", str(ctx)) == 1
    err = capsys.readouterr().err
    assert "ERROR: failed to solve: cannot write the export to '/dev/full': No space left" in err
    assert "Traceback" not in err

    assert main(["image", "save", "--state-dir", str(state), "-o", "/dev/full", "busybox"]) == 1
    err = capsys.readouterr().err
    assert "ERROR: cannot write the export to '/dev/full': No space left on device" in err


def test_a_tar_output_naming_a_directory_is_refused(
    state: Path, ctx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dest=`` a directory is refused by name (it was an IsADirectoryError traceback
    naming the temporary file at the rename), and nothing is left beside it."""
    out = tmp_path / "out"
    out.mkdir()
    for spec in (f"type=tar,dest={out}", f"type=oci,dest={out},tar=true"):
        assert build(state, "-o", spec, str(ctx)) == 1
        err = capsys.readouterr().err
        assert f"cannot write the export to '{out}': it is a directory" in err
        assert sorted(os.listdir(tmp_path)) == ["ctx", "out", "state"]
        assert os.listdir(out) == []


def test_a_cache_export_that_cannot_be_written_says_why(
    state: Path, ctx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reason is the system's, not Python's ``[Errno 20] Not a directory: '...'``."""
    (tmp_path / "file").write_text("")
    dest = tmp_path / "file" / "cache"
    assert build(state, "--cache-to", f"type=local,dest={dest}", str(ctx)) == 1
    err = capsys.readouterr().err
    assert f"ERROR: failed to solve: exporting cache to {dest} failed: Not a directory" in err
    assert "[Errno" not in err
