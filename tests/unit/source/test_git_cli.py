"""Running git: a clean environment carrying the credentials, scrubbed output and errors,
time limits and cancellation that take the whole process group down."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import stat
import threading
import warnings
from pathlib import Path

import pytest

from dockyard.core import DockyardError
from dockyard.source import GitRemote
from dockyard.source._git_cli import GitAuth, GitRunner
from dockyard.source._git_url import Scrubber


def _config(env: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in range(int(env["GIT_CONFIG_COUNT"])):
        out.setdefault(env[f"GIT_CONFIG_KEY_{i}"], []).append(env[f"GIT_CONFIG_VALUE_{i}"])
    return out


def test_environment_is_clean_and_carries_credentials(tmp_path: Path) -> None:
    runner = GitRunner()
    remote = GitRemote.parse("https://tok@example.com/r.git")
    env = runner.environment(
        remote=remote,
        auth=GitAuth(
            headers=(("https://example.com/r.git", "Authorization: basic Zm9vOmJhcg=="),),
            ssh_auth_sock=tmp_path / "agent.sock",
            known_hosts=tmp_path / "known_hosts",
        ),
    )
    assert env["HOME"] == "/dev/null"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_ALLOW_PROTOCOL" not in env  # it would allow file:// submodules
    assert env["SSH_AUTH_SOCK"] == str(tmp_path / "agent.sock")
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in env["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=yes" in env["GIT_SSH_COMMAND"]
    assert "-F /dev/null" in env["GIT_SSH_COMMAND"]
    config = _config(env)
    assert config["remote.origin.url"] == ["https://tok@example.com/r.git"]
    assert config["http.https://example.com/r.git.extraheader"] == [
        "Authorization: basic Zm9vOmJhcg=="
    ]
    assert config["protocol.allow"] == ["never"]
    assert config["protocol.file.allow"] == ["user"]
    assert "protocol.ext.allow" not in config
    assert config["core.hooksPath"] == ["/dev/null"]
    assert not any(k for k in env if k.startswith(("GIT_DIR", "GIT_WORK_TREE")))


def test_without_known_hosts_host_keys_are_not_checked() -> None:
    env = GitRunner(ssh="my-ssh --flag").environment(remote=None, auth=GitAuth())
    assert env["GIT_SSH_COMMAND"].startswith("my-ssh --flag -F /dev/null")
    assert "StrictHostKeyChecking=no" in env["GIT_SSH_COMMAND"]
    assert "SSH_AUTH_SOCK" not in env
    assert "remote.origin.url" not in _config(env)


def _fake_git(tmp_path: Path, script: str) -> str:
    path = tmp_path / "fake-git"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_credentials_never_reach_argv(tmp_path: Path) -> None:
    seen = tmp_path / "argv"
    git = _fake_git(tmp_path, f'echo "$@" > {seen}\nenv > {seen}.env\n')
    runner = GitRunner(git=git)
    remote = GitRemote.parse("https://user:topsecret@example.com/r.git")
    await runner.run(
        "ls-remote",
        "origin",
        "main",
        remote=remote,
        auth=GitAuth(headers=(("https://example.com/", "Authorization: Bearer tok3n"),)),
        scrub=Scrubber([remote]),
    )
    argv = seen.read_text()
    assert argv.strip() == "ls-remote origin main"
    assert "topsecret" not in argv
    assert "tok3n" not in argv
    env = seen.with_suffix(".env").read_text()
    assert "topsecret" in env
    assert "tok3n" in env
    # outside any repository: an empty directory, discovery stops above it
    assert "GIT_CEILING_DIRECTORIES=" in env


async def test_failure_message_is_scrubbed(tmp_path: Path) -> None:
    git = _fake_git(
        tmp_path,
        "echo \"fatal: could not read from 'https://user:topsecret@example.com/r.git'\" >&2\n"
        "echo 'using topsecret' >&2\nexit 128\n",
    )
    runner = GitRunner(git=git)
    remote = GitRemote.parse("https://user:topsecret@example.com/r.git")
    logged: list[bytes] = []
    with pytest.raises(DockyardError) as info:
        await runner.run(
            "fetch",
            "origin",
            remote=remote,
            scrub=Scrubber([remote]),
            log=logged.append,
            what="fetching",
        )
    message = str(info.value)
    assert message.startswith("fetching failed: ")
    assert "topsecret" not in message
    assert "https://user:xxxxx@example.com/r.git" in message
    assert logged
    assert all(b"topsecret" not in line for line in logged)


async def test_unchecked_failure_returns_the_result(tmp_path: Path) -> None:
    git = _fake_git(tmp_path, "echo out; echo err >&2; exit 3\n")
    result = await GitRunner(git=git).run("x", scrub=Scrubber(), check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", "err")
    assert not result.ok


async def test_checked_out_files_get_the_standard_umask(tmp_path: Path) -> None:
    git = _fake_git(tmp_path, f"touch {tmp_path}/made; mkdir {tmp_path}/dir\n")
    old = os.umask(0o077)
    try:
        await GitRunner(git=git).run("x", scrub=Scrubber())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o755


async def test_time_limit_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    git = _fake_git(tmp_path, f"sleep 60 & echo $! > {pidfile}\nwait\n")
    runner = GitRunner(git=git, timeout=0.5)
    with pytest.raises(DockyardError, match="timed out"):
        await runner.run("fetch", "origin", scrub=Scrubber())
    await _gone(int(pidfile.read_text()))


async def test_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    git = _fake_git(tmp_path, f"sleep 60 & echo $! > {pidfile}\nwait\n")
    task = asyncio.ensure_future(GitRunner(git=git).run("fetch", scrub=Scrubber()))
    for _ in range(1000):
        if _started(pidfile):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _gone(int(pidfile.read_text()))


def test_a_run_cancelled_twice_leaves_no_git_to_a_closed_loop(tmp_path: Path) -> None:
    # A cancelled build step is often cancelled again while git dies: the solver cancels a
    # failed build's work without waiting, then asyncio.run cancels what is left and closes
    # the loop. The runner used to give up waiting there: git's exit went to a closed loop,
    # its transport, Popen and stderr pipe were never closed, and "subprocess N is still
    # running" failed whichever later test's garbage collection freed them. A holder in a
    # session of its own keeps git's stderr open past the SIGKILL of git's group (as a
    # late exit would), so the old runner always gave up here.
    pidfile, holder_file = tmp_path / "git.pid", tmp_path / "holder.pid"
    git = _fake_git(
        tmp_path,
        f"setsid sh -c 'echo $$ > {holder_file}.tmp; mv {holder_file}.tmp {holder_file}; "
        "exec sleep 60' >/dev/null &\n"
        f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}\nexec sleep 60\n",
    )

    holders: list[int] = []

    async def build() -> None:
        task = asyncio.ensure_future(GitRunner(git=git).run("fetch", scrub=Scrubber()))
        for _ in range(1000):
            if _started(pidfile) and _started(holder_file):
                break
            await asyncio.sleep(0.01)
        holders.append(int(holder_file.read_text()))
        task.cancel()
        await asyncio.sleep(0)  # the run kills git; asyncio.run cancels it once more

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(build())
            pid = int(pidfile.read_text())
            assert not Path(f"/proc/{pid}").exists(), "git not reaped when the loop closed"
            for thread in threading.enumerate():  # asyncio's waitpid threads hold git's
                if thread.name.startswith("asyncio-waitpid"):  # transport until they end
                    thread.join(10)
            gc.collect()
    finally:
        for holder in holders:
            os.kill(holder, signal.SIGKILL)
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked


def _started(pidfile: Path) -> bool:
    return pidfile.exists() and bool(pidfile.read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"  # a zombie waits for init to reap it: it is dead


async def _gone(pid: int) -> None:
    for _ in range(250):
        if not _alive(pid):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"process {pid} still runs")


async def test_missing_git_program() -> None:
    with pytest.raises(DockyardError, match="not found"):
        await GitRunner(git="/nonexistent/git").run("version", scrub=Scrubber())
