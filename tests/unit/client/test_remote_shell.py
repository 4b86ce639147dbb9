"""``--invoke`` through a daemon, on the client's side: the build request asks for the
debug shell (its command and when it runs) and the build's session offers this
process's terminal for it, announcing lines as the embedded engine does."""

from __future__ import annotations

from pathlib import Path

from dockyard.client import BuildOptions
from dockyard.client._context import PreparedContext
from dockyard.client._job import Job, dockerfile_job
from dockyard.client._remote import RemoteBackend, _user_terminal
from dockyard.executor.types import Stdio
from dockyard.llbsolver import DebugShell


def _job(tmp_path: Path, shell: DebugShell | None) -> Job:
    context = PreparedContext(
        context=tmp_path,
        dockerfile_dir=tmp_path,
        filename="Dockerfile",
        shared_key="k",
        description=".",
    )
    return dockerfile_job(
        BuildOptions(context=str(tmp_path), debug_shell=shell),
        context,
        secrets=None,
        ssh=None,
        credentials=None,
    )


def test_the_request_asks_for_the_shell_and_the_session_offers_the_terminal(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    shell = DebugShell(
        args=("/bin/sh", "-l"),
        stdio=Stdio(stdin=5, stdout=6, stderr=7, terminal=True),
        on_success=False,
        announce=lines.append,
    )
    job = _job(tmp_path, shell)
    request = RemoteBackend(f"unix://{tmp_path}/d.sock")._request(job, "ref", "sid", ())
    assert request.HasField("debug_shell")
    assert list(request.debug_shell.args) == ["/bin/sh", "-l"]
    assert (request.debug_shell.on_error, request.debug_shell.on_success) == (True, False)
    terminal = _user_terminal(job)
    assert terminal is not None
    assert (terminal.stdin, terminal.stdout, terminal.stderr) == (5, 6, 7)
    assert terminal.uses_terminal()
    terminal.announce("RUN failed: running /bin/sh -l (exit it to continue)")
    assert lines == ["RUN failed: running /bin/sh -l (exit it to continue)"]
    session = job.session(shell=terminal)
    assert session.info().shell


def test_no_shell_no_terminal(tmp_path: Path) -> None:
    job = _job(tmp_path, None)
    request = RemoteBackend(f"unix://{tmp_path}/d.sock")._request(job, "ref", "sid", ())
    assert not request.HasField("debug_shell")
    assert _user_terminal(job) is None
    assert not job.session().info().shell
