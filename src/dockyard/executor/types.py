"""The executor seam: what to run (:class:`ProcessSpec`), on what (root and
:data:`ExecMount` values), and the :class:`Executor` protocol that runs it.

The executor knows nothing of LLB, caches or snapshots' lifetimes: the caller hands it
mount specs (from a snapshotter or the cache manager) and gets back the exit status. Which
exit statuses count as success, how a cache mount is shared or locked, and turning a
non-zero status into an ``ExecError`` are the caller's concerns.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

from dockyard.core import UsageError
from dockyard.core.ulimits import ULIMIT_NAMES
from dockyard.snapshot.types import Mount

from .cdi.types import ContainerEdits

__all__ = [
    "DEFAULT_HOSTNAME",
    "DEFAULT_PATH",
    "BindMount",
    "ExecMount",
    "Executor",
    "HostEntry",
    "InteractiveExecutor",
    "NetworkMode",
    "OutputSink",
    "ProcessSpec",
    "Rlimit",
    "SecretMount",
    "SecurityMode",
    "SshMount",
    "Stdio",
    "TmpfsMount",
    "WindowFeed",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""``PATH`` given to a process whose environment has none (docker's and BuildKit's)."""

DEFAULT_HOSTNAME = "dockyard"


class NetworkMode(enum.Enum):
    """``none``: a network namespace of its own with only loopback up. ``host``: the host's.

    BuildKit's default on a machine without CNI is the host's network; callers map an
    unset LLB network mode to the worker's default.
    """

    NONE = "none"
    HOST = "host"

    @classmethod
    def parse(cls, value: str) -> NetworkMode:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"unknown network mode {value!r} (expected none or host)") from None


class SecurityMode(enum.Enum):
    """``sandbox``: docker's default confinement. ``insecure``: privileged (all
    capabilities, no masked paths, writable ``/sys``); needs an entitlement upstream."""

    SANDBOX = "sandbox"
    INSECURE = "insecure"

    @classmethod
    def parse(cls, value: str) -> SecurityMode:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(
                f"unknown security mode {value!r} (expected sandbox or insecure)"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostEntry:
    """One extra ``/etc/hosts`` line: ``ip`` (v4 or v6) for ``name``."""

    name: str
    ip: str

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise UsageError(f"invalid host name {self.name!r} for /etc/hosts")
        import ipaddress  # only here: it is not needed to import the seam

        try:
            ipaddress.ip_address(self.ip)
        except ValueError:
            raise UsageError(f"invalid IP address {self.ip!r} for host {self.name!r}") from None

    @classmethod
    def parse(cls, value: str) -> HostEntry:
        """``name:ip`` or ``name=ip`` (the forms of ``--add-host``)."""
        for sep in ("=", ":"):
            name, found, ip = value.partition(sep)
            if found:
                return cls(name=name, ip=ip)
        raise UsageError(f"invalid extra host {value!r} (expected name:ip)")


RLIMIT_NAMES = ULIMIT_NAMES
"""The resource limits a process may be given, by docker's ``--ulimit`` names."""

RLIM_INFINITY = (1 << 64) - 1
"""``-1`` (unlimited) as the OCI spec's unsigned limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rlimit:
    """A resource limit (``--ulimit``): ``name`` as docker's (``nofile``, ``nproc``,
    ``core``, ...; one of :data:`RLIMIT_NAMES`), ``soft`` at most ``hard``, ``-1``
    for unlimited. Raising a hard limit above the runtime's own needs
    ``CAP_SYS_RESOURCE``."""

    name: str
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if self.name not in RLIMIT_NAMES:
            raise UsageError(f"unknown resource limit {self.name!r}")
        if min(self.soft, self.hard) < -1:
            raise UsageError(f"resource limit {self.name}: invalid value (-1: unlimited)")
        if self.spec_value(self.soft) > self.spec_value(self.hard):
            raise UsageError(
                f"resource limit {self.name}: soft {self.soft} is above hard {self.hard}"
            )

    @property
    def type(self) -> str:
        """The OCI spec's (and ``setrlimit``'s) name: ``RLIMIT_NOFILE``."""
        return "RLIMIT_" + self.name.upper()

    @staticmethod
    def spec_value(value: int) -> int:
        return RLIM_INFINITY if value == -1 else value


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """The process to run.

    ``env`` holds ``KEY=value`` entries in order (an LLB exec's ``Meta.Env``); ``PATH`` and
    ``HOSTNAME`` are added when missing, ``HOME`` from the user's passwd entry. ``cwd`` is
    made inside the root filesystem if it does not exist. ``user`` is ``name``, ``uid``,
    ``name:group``, ``uid:gid`` (or a mix), resolved from the root filesystem's
    ``/etc/passwd`` and ``/etc/group``; empty means root. Supplementary groups are the
    groups that list the user by name, unless a group is given explicitly.

    ``rlimits`` are set in the process (a ``nofile`` one replaces the sandbox's
    default); ``cgroup_parent`` is the cgroup under which the sandbox gets one of its
    own (``/PARENT/dockyard/<id>``; only runc places processes in cgroups: with crun
    it is an :class:`~dockyard.core.ExecError`, see the package docstring).

    ``cdi_edits`` are the CDI edits of the devices the process gets, in the order they
    are made (a spec's own edits before its first device's): what the worker's
    :class:`~dockyard.executor.cdi.DeviceRegistry` resolved the exec's requests to, from
    the host's spec files only (see :mod:`dockyard.executor.cdi`).
    """

    args: tuple[str, ...]
    # Not in repr: secret env values (RUN --mount=type=secret,env=...) travel here.
    env: tuple[str, ...] = field(default=(), repr=False)
    cwd: str = "/"
    user: str = ""
    hostname: str = DEFAULT_HOSTNAME
    extra_hosts: tuple[HostEntry, ...] = ()
    network: NetworkMode = NetworkMode.HOST
    security: SecurityMode = SecurityMode.SANDBOX
    rlimits: tuple[Rlimit, ...] = ()
    cgroup_parent: str = ""
    cdi_edits: tuple[ContainerEdits, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rlimits", tuple(self.rlimits))
        object.__setattr__(self, "cdi_edits", tuple(self.cdi_edits))
        if self.cgroup_parent and (
            any(c.isspace() for c in self.cgroup_parent) or ".." in self.cgroup_parent.split("/")
        ):
            raise UsageError(f"invalid cgroup parent {self.cgroup_parent!r}")
        if not self.args:
            raise UsageError("a process needs at least one argument")
        for entry in self.env:
            if "=" not in entry or entry.startswith("="):
                key = entry.partition("=")[0]
                raise UsageError(f"invalid environment entry {key!r}... (expected KEY=value)")
        if not self.cwd.startswith("/"):
            raise UsageError(f"working directory {self.cwd!r} must be absolute")
        if not self.hostname or len(self.hostname) > 64 or any(c.isspace() for c in self.hostname):
            raise UsageError(f"invalid hostname {self.hostname!r}")


def _check_dest(dest: str) -> None:
    if not dest.startswith("/"):
        raise UsageError(f"mount destination {dest!r} must be an absolute path")


@dataclass(frozen=True, slots=True, kw_only=True)
class BindMount:
    """A tree mounted at ``dest``: a snapshot's mount specs or a directory (a cache mount).

    ``source`` is what a snapshotter returns (an overlay of a chain, or a bind of a
    directory); the executor mounts it privately and binds ``selector`` — a path resolved
    inside it, symlinks included, never outside — at ``dest``.
    """

    dest: str
    source: tuple[Mount, ...]
    selector: str = ""
    readonly: bool = False

    def __post_init__(self) -> None:
        _check_dest(self.dest)
        if not self.source:
            raise UsageError(f"bind mount at {self.dest!r} has no source")

    @classmethod
    def directory(
        cls, dest: str, path: Path, *, selector: str = "", readonly: bool = False
    ) -> BindMount:
        """A host directory, e.g. the one the cache manager gives for a cache mount."""
        return cls(
            dest=dest,
            source=(Mount(type="bind", source=str(path), options=("rbind",)),),
            selector=selector,
            readonly=readonly,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TmpfsMount:
    """An empty tmpfs at ``dest``; ``size`` in bytes (0: the kernel's default, half of RAM)."""

    dest: str
    size: int = 0

    def __post_init__(self) -> None:
        _check_dest(self.dest)
        if self.size < 0:
            raise UsageError(f"tmpfs size at {self.dest!r} must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretMount:
    """A read-only file at ``dest`` holding ``data``; it lives on a tmpfs, never on disk."""

    dest: str
    data: bytes
    mode: int = 0o400
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        _check_dest(self.dest)
        if not 0 <= self.mode <= 0o7777:
            raise UsageError(f"invalid mode {self.mode:o} for secret at {self.dest!r}")

    def __repr__(self) -> str:  # never show the secret in a log or traceback
        return f"SecretMount(dest={self.dest!r}, data=<{len(self.data)} bytes>, mode={self.mode:o})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SshMount:
    """A unix socket (an SSH agent forwarded by the session) bound at ``dest``."""

    dest: str
    socket: Path

    def __post_init__(self) -> None:
        _check_dest(self.dest)


ExecMount: TypeAlias = BindMount | TmpfsMount | SecretMount | SshMount

OutputSink: TypeAlias = Callable[[int, bytes], None]
"""Receives the process's output as it comes: stream 1 (stdout) or 2 (stderr), bytes.
Must not raise and must be fast (it runs on the event loop)."""


class Executor(Protocol):
    """Runs one process in a fresh sandbox and tears the sandbox down.

    ``root`` is the mount specs of the root filesystem (a snapshot's); writes land in it.
    ``mounts`` are mounted in order over it. Output goes to ``output`` as it comes.

    Returns the exit status (``128 + signal`` for a process killed by a signal). A
    runtime that cannot start the process raises ``ExecError``; a user that does not
    exist raises ``NotFoundError``. Cancelling the call kills every process of the
    sandbox. On return, on error and on cancellation alike, nothing is left behind: no
    mount, no runtime state, no process.
    """

    async def run(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        output: OutputSink | None = None,
    ) -> int: ...


class WindowFeed(Protocol):
    """The window size of a terminal that is not one of this process's descriptors (a
    client's, whose changes arrive over a daemon's session).

    ``size`` is the current size (rows, columns), ``None`` while unknown. ``watch``
    registers ``changed``, called on the event loop after each change, and returns the
    function that unregisters it.
    """

    def size(self) -> tuple[int, int] | None: ...

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Stdio:
    """The streams of an interactive process: file descriptors of this process (the
    user's terminal or pipes), used as they are and never closed.

    ``terminal``: give the process a pseudo-terminal (``None``: when ``stdin`` is a
    terminal). With one, the user's terminal is put in raw mode while the process runs
    (and restored however it ends), the pty's output goes to ``stdout`` and window size
    changes follow; without one the process reads ``stdin`` and writes ``stdout`` and
    ``stderr`` directly. A ``stdout`` that cannot take more holds the pty's output back
    (nothing blocks the event loop when it is non-blocking).

    ``window``: where the pty's window size comes from when the user's terminal is
    elsewhere (``stdin`` and ``stdout`` are then pipes to it); ``None``: the terminal at
    ``stdin`` (or ``stdout``), followed on ``SIGWINCH``.

    ``started``: called (on the event loop, once) when the process runs with its streams
    attached — the runtime started it, and with a terminal its pty is bridged — so that
    a user's terminal elsewhere starts sending input only then (a daemon's client).
    """

    stdin: int = 0
    stdout: int = 1
    stderr: int = 2
    terminal: bool | None = None
    window: WindowFeed | None = None
    started: Callable[[], None] | None = None

    def uses_terminal(self) -> bool:
        if self.terminal is not None:
            return self.terminal
        import os

        return os.isatty(self.stdin)


@runtime_checkable
class InteractiveExecutor(Protocol):
    """An :class:`Executor` that also runs a process attached to the user's streams
    (``dockyard build --invoke``).

    As :meth:`Executor.run` (a fresh sandbox on ``root`` and ``mounts``, torn down on
    return, error and cancellation alike), but the process's input and output are
    ``stdio``'s; returns its exit status. Whatever it does to the user's terminal
    (raw mode) is undone before it returns or raises.
    """

    async def run_interactive(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        stdio: Stdio,
    ) -> int: ...
