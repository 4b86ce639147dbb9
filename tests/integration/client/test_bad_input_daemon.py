"""Bad input to ``dockyard --addr ... build`` found by the error audit
(docs/errors-audit.md): the same clear error as on the embedded engine, naming the
argument, never a foreign exception's name and text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.daemon.conftest import DaemonProcess


async def test_a_local_output_naming_a_file(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o type=local,dest=FILE`` through a daemon failed with "the session peer failed:
    FileExistsError: [Errno 17] File exists: ..." (the embedded engine names the dest)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    dest = tmp_path / "file"
    dest.write_text("mine")
    args = ["--addr", f"unix://{running.socket}", "build", "--progress", "plain"]
    code = await asyncio.to_thread(main, [*args, "-o", f"type=local,dest={dest}", str(ctx)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"ERROR: failed to solve: cannot export to directory '{dest}': File exists\n" in err
    assert "FileExistsError" not in err
    assert dest.read_text() == "mine"
