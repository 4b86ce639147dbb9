"""Running the ``git`` program for the git source.

Every run gets a clean environment: no system or user configuration (``HOME=/dev/null``,
``GIT_CONFIG_NOSYSTEM``), no prompts, ``LC_ALL=C``, only the transports the source allows
(``protocol.allow=never`` but for git, http(s), ssh and file), no hooks, and
``protocol.file.allow=user`` so a repository cannot pull files of the engine's host in
as submodules. Credentials travel in the
environment only — the remote URL as ``remote.origin.url`` and auth headers as
``http.<url>.extraheader`` through ``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, the SSH
agent as ``SSH_AUTH_SOCK`` — never in argv (visible to every user in ``ps``). What git
prints goes through a :class:`~dockyard.source._git_url.Scrubber` before it reaches a
log or an error.

Processes run in their own session (remote helpers do not die with their parent), with
umask 022 (checked-out files are 0644/0755, as BuildKit's), and are killed as a group
when the caller is cancelled or the time limit passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError
from dockyard.core.procs import wait_through_cancel

from ._git_url import GitRemote, Scrubber

__all__ = ["GitAuth", "GitResult", "GitRunner"]

# GIT_ALLOW_PROTOCOL would make file "always"; the config keeps it "user" (not for
# submodules, whose clones git runs with GIT_PROTOCOL_FROM_USER=0)
_PROTOCOLS = (
    ("protocol.allow", "never"),
    ("protocol.file.allow", "user"),
    ("protocol.git.allow", "always"),
    ("protocol.http.allow", "always"),
    ("protocol.https.allow", "always"),
    ("protocol.ssh.allow", "always"),
)
_TAIL_LINES = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class GitAuth:
    """Credentials for git runs: ``headers`` are ``(url prefix, "Name: value")`` pairs
    sent with HTTP requests to URLs under the prefix; ``ssh_auth_sock`` is a forwarded
    agent socket; ``known_hosts`` a file for ssh's ``UserKnownHostsFile`` (without one,
    host keys are not checked, as BuildKit)."""

    headers: tuple[tuple[str, str], ...] = ()
    ssh_auth_sock: Path | None = None
    known_hosts: Path | None = None


@dataclass(frozen=True, slots=True)
class GitResult:
    """A finished git run: exit status, stdout, and stderr already scrubbed."""

    returncode: int
    stdout: bytes
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def tail(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return "\n".join(lines[-_TAIL_LINES:])


class GitRunner:
    """Runs ``git`` (the program ``git``) with ssh as ``ssh`` (a command line, e.g. a
    test's stand-in); ``timeout`` bounds each run (``None``: no limit)."""

    def __init__(self, *, git: str = "git", ssh: str = "ssh", timeout: float | None = None) -> None:
        self.git = git
        self.ssh = ssh
        self.timeout = timeout

    def environment(
        self,
        *,
        remote: GitRemote | None,
        auth: GitAuth,
        extra_config: Sequence[tuple[str, str]] = (),
        index_file: Path | None = None,
    ) -> dict[str, str]:
        """The environment of one run (see the module docstring)."""
        ssh = [*shlex.split(self.ssh), "-F", "/dev/null", "-o", "BatchMode=yes"]
        if auth.known_hosts is not None:
            ssh += [
                "-o",
                f"UserKnownHostsFile={auth.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
        else:
            ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": "/dev/null",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": shlex.join(ssh),
            "GIT_SSH_VARIANT": "ssh",
        }
        if auth.ssh_auth_sock is not None:
            env["SSH_AUTH_SOCK"] = str(auth.ssh_auth_sock)
        if index_file is not None:
            env["GIT_INDEX_FILE"] = str(index_file)
        config: list[tuple[str, str]] = [
            *_PROTOCOLS,
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("init.defaultBranch", "master"),
            ("advice.detachedHead", "false"),
            ("credential.helper", ""),
        ]
        if remote is not None:
            config.append(("remote.origin.url", remote.url))
        for scope, header in auth.headers:
            config.append((f"http.{scope}.extraheader", header))
        config.extend(extra_config)
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    async def run(
        self,
        *args: str,
        scrub: Scrubber,
        git_dir: Path | None = None,
        work_tree: Path | None = None,
        cwd: Path | None = None,
        remote: GitRemote | None = None,
        auth: GitAuth | None = None,
        index_file: Path | None = None,
        extra_config: Sequence[tuple[str, str]] = (),
        log: Callable[[bytes], None] | None = None,
        check: bool = True,
        what: str = "",
    ) -> GitResult:
        """Run ``git [--git-dir=D] [--work-tree=W] args...``.

        With ``check`` a non-zero exit raises :class:`DockyardError` naming ``what`` (or
        the git command) with the scrubbed tail of git's messages. Scrubbed stderr lines
        also go to ``log`` as they arrive.
        """
        argv: list[str] = []
        if git_dir is not None:
            argv.append(f"--git-dir={git_dir}")
        if work_tree is not None:
            argv.append(f"--work-tree={work_tree}")
        argv.extend(args)
        env = self.environment(
            remote=remote,
            auth=auth or GitAuth(),
            extra_config=extra_config,
            index_file=index_file,
        )
        if cwd is None and git_dir is None:
            # outside any repository: never pick up one around the engine's directory
            with tempfile.TemporaryDirectory(prefix="dockyard-git-") as empty:
                env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(empty)
                result = await self._exec(argv, env=env, cwd=Path(empty), scrub=scrub, log=log)
        else:
            result = await self._exec(argv, env=env, cwd=cwd, scrub=scrub, log=log)
        if check and not result.ok:
            label = what or f"git {args[0] if args else ''}"
            detail = result.tail()
            raise DockyardError(f"{label} failed" + (f": {detail}" if detail else ""))
        return result

    async def _exec(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        scrub: Scrubber,
        log: Callable[[bytes], None] | None,
    ) -> GitResult:
        loop = asyncio.get_running_loop()
        try:
            transport, run = await loop.subprocess_exec(
                lambda: _Run(loop, scrub, log),
                self.git,
                *argv,
                env=dict(env),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                umask=0o022,
            )
        except FileNotFoundError as exc:
            raise DockyardError(f"the git program {self.git!r} was not found") from exc
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await asyncio.shield(run.finished)
            except TimeoutError:
                await _kill(transport, run)
                command = next((a for a in argv if not a.startswith("-")), "")
                raise DockyardError(f"git {command} timed out after {self.timeout:g}s") from None
            except BaseException:
                await _kill(transport, run)
                raise
        finally:
            transport.close()  # its pipes (a killed git may have left them to a helper)
        if run.error is not None:
            raise run.error
        returncode = transport.get_returncode()
        assert returncode is not None
        return GitResult(returncode, bytes(run.stdout), "\n".join(run.stderr_lines))


class _Run(asyncio.SubprocessProtocol):
    """One git process: its stdout collected, its stderr scrubbed line by line (each to
    ``log`` as it arrives); :attr:`exited` resolves when the process exited,
    :attr:`finished` when it also closed both pipes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        scrub: Scrubber,
        log: Callable[[bytes], None] | None,
    ) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.stdout = bytearray()
        self.stderr_lines: list[str] = []
        self.error: Exception | None = None  # raised by ``log``
        self._partial = bytearray()  # stderr's unfinished line
        self._scrub = scrub
        self._log = log

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.stdout += data
            return
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            self._line(bytes(line))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 2 and self._partial:
            line, self._partial = bytes(self._partial), bytearray()
            self._line(line)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # (the process exited and both pipes are closed)
        self.process_exited()
        if not self.finished.done():
            self.finished.set_result(None)

    def _line(self, line: bytes) -> None:
        text = self._scrub(line.decode("utf-8", "replace").rstrip("\r"))
        # progress lines end in \r; keep the last state of each
        text = text.rsplit("\r", 1)[-1]
        self.stderr_lines.append(text)
        if self._log is not None and self.error is None:
            try:
                self._log((text + "\n").encode())
            except Exception as exc:  # raised once git is done, not into the event loop
                self.error = exc


async def _kill(transport: asyncio.SubprocessTransport, run: _Run) -> None:
    """Kill the process group of ``transport``'s git and wait until git exited, also
    through further cancellations, which are raised afterwards.

    A cancelled run is often cancelled again while it waits here: the solver cancels a
    failed build's computations without waiting for them, and ``asyncio.run`` cancels
    what is left before it closes the loop. A git given up on then had its exit reported
    to a closed loop: its transport, ``Popen`` and pipes were never closed and warned
    when a garbage collection freed them, wherever that happened to be. (Its exit only:
    a helper that left the group may keep a pipe open; the caller closes the pipes.)
    """
    if transport.get_returncode() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(transport.get_pid(), signal.SIGKILL)
    await wait_through_cancel(run.exited)  # killed already: it exits at once
