"""The OCI runtime binary (crun or runc): command lines, host quirks, kill and delete.

Host quirks handled here (see the package docstring for the why):

- **Hybrid cgroups.** crun refuses to start a container when ``/sys/fs/cgroup`` is a
  tmpfs of v1 hierarchies and the v2 hierarchy at ``/sys/fs/cgroup/unified`` has
  controllers, whatever its ``--cgroup-manager``. On such a host every crun command is
  started as ``unshare --mount --mount-proc=/sys/fs/cgroup/unified crun ...``: in a
  private copy of our mount namespace (made as crun starts, so the bundle's mounts are
  in it) a proc instance covers the v2 mount, crun's ``statfs`` no longer finds cgroup2
  there and takes the layout for plain v1; with ``--cgroup-manager=disabled`` it then
  touches no cgroup at all. Nothing on the host changes. Without util-linux's
  ``unshare``, a ``preexec_fn`` does the same with system calls (slower: it forces a
  real ``fork`` of this process).
- **rlimits.** Raising a hard limit needs ``CAP_SYS_RESOURCE``; :func:`nofile_limit`
  never asks for more than the current hard limit.

``kill`` and ``delete`` have a time limit (:data:`KILL_TIMEOUT`, :data:`DELETE_TIMEOUT`):
a runtime stuck on a frozen cgroup or a stale lock must not stall the cancellation of a
build. After it the runtime command is killed with everything it started (its process
group) and reaped, and an :class:`~dockyard.core.ExecError` names the container and the
command. (BuildKit's runc executor gives ``runc kill`` 7 s, then gives up on it and kills
``runc run``; the executor here escalates the same way, see ``OciExecutor._kill``.)
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.core import ConfigError, ExecError

from ._spec import ALL_CAPABILITIES
from .types import RLIM_INFINITY, Rlimit

__all__ = [
    "DELETE_TIMEOUT",
    "KILL_TIMEOUT",
    "SECCOMP_BPF_ANNOTATION",
    "Runtime",
    "RuntimeKind",
    "check_rlimits",
    "host_capabilities",
    "hybrid_cgroup_controllers",
    "knows_annotation",
    "nofile_limit",
]

_NOFILE_MAX = 1 << 20
CGROUP2_HYBRID_MOUNT = "/sys/fs/cgroup/unified"

KILL_TIMEOUT = 2.0
"""Seconds a ``kill`` may take (a healthy one takes milliseconds) before it is killed."""
DELETE_TIMEOUT = 5.0
"""Seconds a ``delete --force`` may take before it is killed."""
_REAP_TIMEOUT = 1.0  # for a killed runtime command to exit and close its pipe


class RuntimeKind(enum.Enum):
    CRUN = "crun"
    RUNC = "runc"

    @classmethod
    def parse(cls, value: str) -> RuntimeKind:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown OCI runtime {value!r} (expected crun or runc)") from None


def _mount_fstypes() -> dict[str, str]:
    """Mount point -> file-system type of this mount namespace (the last mount wins)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields = left.split(" ")
                if sep and len(fields) >= 5:
                    out[fields[4]] = right.split(" ", 1)[0]
    except OSError:
        pass
    return out


def hybrid_cgroup_controllers() -> str:
    """The controllers of the v2 hierarchy in a hybrid cgroup layout ('' if not hybrid).

    Mirrors crun's own test: ``/sys/fs/cgroup`` is a tmpfs and ``/sys/fs/cgroup/unified``
    a cgroup2 mount whose ``cgroup.controllers`` is not empty.
    """
    types = _mount_fstypes()
    if types.get("/sys/fs/cgroup") != "tmpfs" or types.get("/sys/fs/cgroup/unified") != "cgroup2":
        return ""
    try:
        return Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().strip()
    except OSError:
        return ""


def host_capabilities() -> tuple[str, ...]:
    """Capability names in this process's bounding set (what a runtime can hand out)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return tuple(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)
    except (OSError, ValueError):
        pass
    return ALL_CAPABILITIES


_CAP_SYS_RESOURCE = 24


def check_rlimits(rlimits: Sequence[Rlimit]) -> None:
    """Refuse limits the runtime could not set: a hard limit above this process's own
    needs ``CAP_SYS_RESOURCE`` (an :class:`~dockyard.core.ExecError` naming the limit,
    rather than the runtime's ``setrlimit: Operation not permitted``)."""
    if not rlimits or _has_effective_cap(_CAP_SYS_RESOURCE):
        return
    for limit in rlimits:
        which = getattr(resource, limit.type, None)
        if which is None:
            continue
        _soft, hard = resource.getrlimit(which)
        current = RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard
        if limit.spec_value(limit.hard) > current:
            shown = "unlimited" if limit.hard == -1 else str(limit.hard)
            raise ExecError(
                f"ulimit {limit.name}: the hard limit {shown} is above this host's"
                f" {current if current != RLIM_INFINITY else 'unlimited'}; raising it needs"
                " CAP_SYS_RESOURCE, which this process does not have"
            )


def _has_effective_cap(number: int) -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError):
        pass
    return False


def nofile_limit() -> int:
    """``RLIMIT_NOFILE`` for a sandbox: docker's 1048576, capped at our hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return _NOFILE_MAX
    return min(hard, _NOFILE_MAX)


class _HideCgroup2:
    """``preexec_fn`` fallback when util-linux ``unshare`` is missing: private mount
    namespace, cgroup2 unmounted. The C functions are looked up here, before any fork:
    the child only makes three system calls and touches no Python lock. (It costs a real
    ``fork`` of this process, ~3 ms, where ``unshare`` keeps ``vfork``.)
    """

    CLONE_NEWNS = 0x00020000
    MS_REC = 0x4000
    MS_SLAVE = 1 << 19
    MNT_DETACH = 2

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self._unshare = libc.unshare
        self._unshare.argtypes = [ctypes.c_int]
        self._mount = libc.mount
        self._mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        self._umount2 = libc.umount2
        self._umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._root = b"/"
        self._none = b"none"
        self._target = CGROUP2_HYBRID_MOUNT.encode()

    def __call__(self) -> None:
        if self._unshare(self.CLONE_NEWNS) != 0:
            os._exit(125)
        # slave first: the unmount below must not propagate back to the host
        if self._mount(self._none, self._root, None, self.MS_REC | self.MS_SLAVE, None) != 0:
            os._exit(125)
        self._umount2(self._target, self.MNT_DETACH)


#: the annotation through which crun takes a precompiled seccomp program (it then
#: ignores ``linux.seccomp``); crun versions from before early 2021 do not know it
SECCOMP_BPF_ANNOTATION = "run.oci.seccomp_bpf_data"


@functools.cache
def knows_annotation(binary: str, annotation: str) -> bool:
    """Whether the runtime ``binary`` names ``annotation`` in its code (read once per
    process and binary, ~1 ms): crun looks its annotations up by these strings, so one it
    lacks is one it ignores."""
    needle = annotation.encode()
    try:
        with open(binary, "rb") as f:
            tail = b""
            while chunk := f.read(1 << 20):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle) :]
    except OSError:
        return False
    return False


@dataclass(slots=True, kw_only=True)
class Runtime:
    """One OCI runtime binary with a private state directory (``--root``).

    ``kill_timeout`` and ``delete_timeout`` limit those commands (seconds)."""

    kind: RuntimeKind
    binary: str
    state_dir: Path
    hide_cgroup2: bool = False
    kill_timeout: float = KILL_TIMEOUT
    delete_timeout: float = DELETE_TIMEOUT
    _prefix: tuple[str, ...] = field(default=(), repr=False)
    _preexec: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def precompiled_seccomp(self) -> bool:
        """Whether this runtime takes a seccomp program compiled ahead (a crun that knows
        :data:`SECCOMP_BPF_ANNOTATION`): the spec then carries the program alone."""
        return self.kind is RuntimeKind.CRUN and knows_annotation(
            self.binary, SECCOMP_BPF_ANNOTATION
        )

    @classmethod
    def create(cls, kind: RuntimeKind, state_dir: Path, *, binary: str | None = None) -> Runtime:
        path = binary or shutil.which(kind.value)
        if path is None:
            raise ConfigError(
                f"OCI runtime {kind.value!r} not found in PATH (install the {kind.value} "
                "package, or choose another runtime)"
            )
        hide = kind is RuntimeKind.CRUN and bool(hybrid_cgroup_controllers())
        prefix: tuple[str, ...] = ()
        preexec: Callable[[], None] | None = None
        if hide:
            unshare = shutil.which("unshare")
            if unshare is not None:
                # a private mount namespace where a proc instance covers the v2 mount:
                # crun's statfs sees no cgroup2 there and takes the layout for plain v1
                prefix = (unshare, "--mount", f"--mount-proc={CGROUP2_HYBRID_MOUNT}")
            else:
                preexec = _HideCgroup2()
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(
            kind=kind,
            binary=path,
            state_dir=state_dir,
            hide_cgroup2=hide,
            _prefix=prefix,
            _preexec=preexec,
        )

    @property
    def name(self) -> str:
        return self.kind.value

    def _global(self, log: Path | None = None) -> list[str]:
        argv = [*self._prefix, self.binary, "--root", str(self.state_dir)]
        if self.kind is RuntimeKind.CRUN:
            argv.append("--cgroup-manager=disabled")
            if log is not None:
                argv += [f"--log=file:{log}", "--log-format=json"]
        elif log is not None:
            argv += ["--log", str(log), "--log-format", "json"]
        return argv

    def run_argv(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path,
        log: Path,
        console_socket: Path | None = None,
    ) -> list[str]:
        """``run`` of the bundle; with ``console_socket`` (a spec with
        ``process.terminal``) the runtime sends the pty's master end there."""
        console = ["--console-socket", str(console_socket)] if console_socket else []
        return [
            *self._global(log),
            "run",
            "--bundle",
            str(bundle),
            "--pid-file",
            str(pid_file),
            "--no-new-keyring",
            *console,
            container_id,
        ]

    def popen(
        self,
        argv: Sequence[str],
        *,
        capture: bool,
        stdio: tuple[int, int, int] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a runtime command (blocking: call it in a thread). With ``capture``,
        stdout and stderr are pipes; otherwise stdout is discarded and stderr piped.
        ``stdio``: the runtime's (and so the process's) stdin, stdout and stderr as
        they are (an interactive process)."""
        stdin, stdout, stderr = stdio or (
            subprocess.DEVNULL,
            subprocess.PIPE if capture else subprocess.DEVNULL,
            subprocess.PIPE,
        )
        try:
            return subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                preexec_fn=self._preexec,
                start_new_session=True,
            )
        except OSError as exc:
            raise ExecError(f"cannot start {self.name} ({self.binary}): {exc.strerror}") from exc

    def _call(self, *args: str, timeout: float) -> tuple[int, str]:
        """Run ``<runtime> <global options> ARGS`` to its end: (exit status, stderr).
        Past ``timeout`` seconds the command is killed with everything it started and
        an :class:`~dockyard.core.ExecError` names it. Blocking."""
        _reap_abandoned()
        proc = self.popen([*self._global(), *args], capture=False)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise ExecError(
                f"{self.name} {' '.join(args)} did not finish within {timeout:g} s and was"
                f" killed (the runtime may be stuck, e.g. on a frozen cgroup or a stale lock"
                f" in {self.state_dir})"
            ) from None
        return proc.returncode, err.decode(errors="replace").strip()

    def has_state(self, container_id: str) -> bool:
        return (self.state_dir / container_id).exists()

    def kill(
        self, container_id: str, signal: str = "KILL", *, timeout: float | None = None
    ) -> bool:
        """Signal the container's init (its death ends the pid namespace). False if the
        container is not there (not yet created, or gone). An
        :class:`~dockyard.core.ExecError` when the runtime cannot be started or did not
        finish within ``timeout`` seconds (:attr:`kill_timeout` by default; it is killed
        then). Blocking."""
        limit = self.kill_timeout if timeout is None else timeout
        rc, _ = self._call("kill", container_id, signal, timeout=limit)
        return rc == 0

    def delete(self, container_id: str) -> None:
        """``delete --force`` (which kills a container still running); the state directory
        is gone afterwards whatever happened. An :class:`~dockyard.core.ExecError`
        (after the state directory was removed) when the runtime cannot be started or
        did not finish within :attr:`delete_timeout` seconds (it is killed then).
        Blocking."""
        if not self.has_state(container_id):
            return
        try:
            rc, _ = self._call("delete", "--force", container_id, timeout=self.delete_timeout)
        except ExecError:
            self._remove_state(container_id)
            raise
        if rc != 0:
            # the runtime could not clean up after itself (e.g. it was killed midway)
            self._remove_state(container_id)

    def _remove_state(self, container_id: str) -> None:
        if self.has_state(container_id):
            shutil.rmtree(self.state_dir / container_id, ignore_errors=True)

    def runtime_error(self, log: Path) -> str:
        """The runtime's own error messages from its JSON log ('' when there are none)."""
        with contextlib.suppress(OSError):
            messages: list[str] = []
            for line in log.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    messages.append(str(entry.get("msg", "")).strip())
            return "; ".join(m for m in messages if m)
        return ""


# killed runtime commands that had not exited yet (a process in uninterruptible sleep
# dies when it leaves it): reaped by a later call
_ABANDONED: list[subprocess.Popen[bytes]] = []
_ABANDONED_LOCK = threading.Lock()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a runtime command that overran its time, with everything it started (it
    leads a process group of its own), and reap it."""
    if proc.returncode is None:
        # not reaped yet, so neither its pid nor its group id can have been reused
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=_REAP_TIMEOUT)
        return
    except subprocess.TimeoutExpired:
        pass
    # something that left its process group still holds the pipe, or the command cannot
    # die yet: stop reading, and reap it later if it does not exit now
    if proc.stderr is not None:
        proc.stderr.close()
    try:
        proc.wait(timeout=_REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with _ABANDONED_LOCK:
            _ABANDONED.append(proc)


def _reap_abandoned() -> None:
    if not _ABANDONED:
        return
    with _ABANDONED_LOCK:
        _ABANDONED[:] = [p for p in _ABANDONED if p.poll() is None]
