"""OCI runtime ``config.json`` generation: a pure function of its inputs (and of the
host's seccomp profile, fixed for the life of the process).

The sandbox is docker's default one: own mount, pid, ipc and uts namespaces (and network,
unless the host's is shared); docker's default capability set with ``no_new_privileges``;
a seccomp filter with docker's semantics (:mod:`dockyard.executor._seccomp`); docker's
masked and read-only paths; ``/proc``, a tmpfs ``/dev`` (the runtime adds the standard
device nodes), ``/dev/pts``, ``/dev/shm``, ``/dev/mqueue`` and a read-only ``/sys``.
``insecure`` gives every capability the host allows, no seccomp filter, no masked paths
and a writable ``/sys`` (the executor adds BuildKit's privileged device nodes:
:mod:`dockyard.executor._privileged`).

No cgroup mount, and no ``cgroupsPath`` unless the caller adds one (a cgroup parent, runc
only): crun runs with ``--cgroup-manager=disabled`` and runc picks its default; see the
package docstring. ``linux.resources.devices`` is BuildKit's device policy (deny all,
then runc's default rules; everything when insecure), which runc enforces itself and
the executor enforces for crun (:mod:`dockyard.executor._devices`). The rlimits are the process's (``--ulimit``) and, unless it sets
``nofile``, a default ``RLIMIT_NOFILE`` never above the current hard limit (raising it
needs ``CAP_SYS_RESOURCE``, which some hosts withhold). A mount the caller gives at a
default mount's destination replaces it (``/dev/shm`` of ``--shm-size``), as BuildKit's
``dedupMounts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._devices import sandbox_rules
from ._seccomp import host_seccomp, host_seccomp_bpf
from ._users import ResolvedUser
from .types import DEFAULT_PATH, NetworkMode, ProcessSpec, SecurityMode

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "SpecMount",
    "build_env",
    "build_spec",
    "default_mounts",
    "prepare_seccomp",
]

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""Docker's default capability set (moby ``oci/caps/defaults.go``)."""

ALL_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Every capability by number (index = capability number, linux/capability.h)."""

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
"""Docker's masked paths (moby ``oci/defaults.go``)."""

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecMount:
    """One entry of the spec's ``mounts`` (already on the host: sources are host paths)."""

    dest: str
    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.dest,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }


def default_mounts(security: SecurityMode) -> list[SpecMount]:
    """``/proc``, ``/dev`` and friends, ``/sys`` (read-only unless insecure)."""
    sys_opts = ("nosuid", "noexec", "nodev") + (
        ("ro",) if security is SecurityMode.SANDBOX else ("rw",)
    )
    return [
        SpecMount(dest="/proc", type="proc", source="proc", options=("nosuid", "noexec", "nodev")),
        SpecMount(
            dest="/dev",
            type="tmpfs",
            source="tmpfs",
            options=("nosuid", "strictatime", "mode=755", "size=65536k"),
        ),
        SpecMount(
            dest="/dev/pts",
            type="devpts",
            source="devpts",
            options=("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
        ),
        SpecMount(
            dest="/dev/shm",
            type="tmpfs",
            source="shm",
            options=("nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        ),
        SpecMount(
            dest="/dev/mqueue",
            type="mqueue",
            source="mqueue",
            options=("nosuid", "noexec", "nodev"),
        ),
        SpecMount(dest="/sys", type="sysfs", source="sysfs", options=sys_opts),
    ]


def build_env(process: ProcessSpec, user: ResolvedUser) -> list[str]:
    """The process environment: ``process.env`` with ``PATH``, ``HOSTNAME`` and ``HOME``
    added when missing. A later entry for the same key replaces an earlier one."""
    out: dict[str, str] = {}
    for entry in process.env:
        key = entry.split("=", 1)[0]
        out.pop(key, None)
        out[key] = entry
    defaults = {"PATH": DEFAULT_PATH, "HOSTNAME": process.hostname, "HOME": user.home or "/"}
    for key, value in defaults.items():
        if key not in out:
            out[key] = f"{key}={value}"
    return list(out.values())


def prepare_seccomp() -> None:
    """Compile the seccomp filter of an ordinary step (docker's default capabilities)
    now, so the first ``RUN`` does not (~15 ms): a long-running process (a daemon, the
    warm server whose commands are forked children) calls it while it warms up."""
    host_seccomp_bpf(frozenset(DEFAULT_CAPABILITIES))


def build_spec(
    *,
    process: ProcessSpec,
    user: ResolvedUser,
    root_path: str,
    root_readonly: bool,
    mounts: Sequence[SpecMount],
    host_capabilities: Sequence[str],
    nofile: int | None,
    precompiled_seccomp: bool = False,
    terminal: bool = False,
) -> dict[str, Any]:
    """The OCI runtime spec (as JSON-able data) for one process.

    ``mounts`` come after the default ones and replace those at the same destination
    (so a user mount at ``/dev/shm`` wins).
    ``host_capabilities`` bounds what ``insecure`` grants: a runtime cannot give a
    capability its own bounding set lacks. ``nofile`` is the ``RLIMIT_NOFILE`` to set
    (``None``: inherit the runtime's). ``precompiled_seccomp`` (a crun that knows the
    ``run.oci.seccomp_bpf_data`` annotation: :attr:`Runtime.precompiled_seccomp`) gives
    the seccomp filter compiled once per process, as that annotation, in place of
    ``linux.seccomp``, which crun would compile on every start (when the host's
    libseccomp cannot compile it, ``linux.seccomp`` is given after all). Never pass it
    for a runtime that does not know the annotation: it would run the step unfiltered.
    ``terminal``: the process gets a pseudo-terminal (``process.terminal``; the runtime
    needs a console socket then).
    """
    insecure = process.security is SecurityMode.INSECURE
    if insecure:
        caps = [c for c in ALL_CAPABILITIES if c in set(host_capabilities)]
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c in set(host_capabilities)]
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
    ]
    if process.network is NetworkMode.NONE:
        namespaces.append({"type": "network"})

    proc: dict[str, Any] = {
        "terminal": terminal,
        "user": {
            "uid": user.uid,
            "gid": user.gid,
            "umask": 0o022,
            **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {}),
        },
        "args": list(process.args),
        "env": build_env(process, user),
        "cwd": process.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
            "inheritable": [],
            "ambient": [],
        },
        "noNewPrivileges": not insecure,
    }
    rlimits = [
        {"type": r.type, "hard": r.spec_value(r.hard), "soft": r.spec_value(r.soft)}
        for r in process.rlimits
    ]
    if nofile is not None and not any(r.name == "nofile" for r in process.rlimits):
        rlimits.insert(0, {"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile})
    if rlimits:
        proc["rlimits"] = rlimits

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        # BuildKit's: runc's defaults after a deny-all, or every device when insecure
        "resources": {
            "devices": [{"allow": True, "access": "rwm"}] if insecure else sandbox_rules()
        },
    }
    annotations: dict[str, str] = {}
    if not insecure:
        bpf = host_seccomp_bpf(frozenset(caps)) if precompiled_seccomp else None
        if bpf is not None:
            # the runtime loads it and ignores linux.seccomp (which it would still parse)
            annotations["run.oci.seccomp_bpf_data"] = bpf
        else:
            seccomp = host_seccomp(caps)
            if seccomp is not None:
                linux["seccomp"] = seccomp
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)

    given = {m.dest for m in mounts}
    all_mounts = [m for m in default_mounts(process.security) if m.dest not in given]
    all_mounts += mounts
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": proc,
        "root": {"path": root_path, "readonly": root_readonly},
        "hostname": process.hostname,
        "mounts": [m.to_json() for m in all_mounts],
        "linux": linux,
    }
    if annotations:
        spec["annotations"] = annotations
    return spec
