"""Running build processes in OCI sandboxes (crun by default, runc by choice).

:class:`OciExecutor` turns a :class:`ProcessSpec`, root mount specs and
:data:`ExecMount` values into an OCI bundle, runs it with the runtime, streams the output
and tears everything down again (see :mod:`dockyard.executor._oci` for the life of a run).

Host configuration that works on a fresh Debian 12 VM with hybrid cgroups and no
``CAP_SYS_RESOURCE`` — and everywhere else — without changing the host:

- **crun and hybrid cgroups.** crun 1.8 refuses to start a container when cgroup v1
  hierarchies live under a tmpfs ``/sys/fs/cgroup`` and the v2 hierarchy at
  ``/sys/fs/cgroup/unified`` has any controller (``cgroups in hybrid mode not supported,
  drop all controllers from cgroupv2``); its check comes before the cgroup manager is
  consulted, so ``--cgroup-manager=disabled`` alone does not help. When this layout is
  detected, each crun command runs as ``unshare --mount
  --mount-proc=/sys/fs/cgroup/unified crun ...``: in a private copy of our mount
  namespace (taken as crun starts, so the bundle's mounts are in it) a proc instance
  covers the v2 mount, and crun takes the layout for plain v1. The host's mounts are
  untouched (no ``fix_cgroup_hybrid``), and hosts with a pure v1 or v2 layout run crun
  directly.
- **No resource cgroups; a device cgroup.** crun always runs with
  ``--cgroup-manager=disabled`` and the spec has no ``cgroupsPath`` and no cgroup mount:
  a build process gets no resource limits, and the pid namespace (its init's death kills
  every process in it) is what makes cancelling complete. Its device rules (BuildKit's:
  deny all, then runc's defaults — any node may be made, only ``/dev/null``, ``zero``,
  ``full``, ``random``, ``urandom``, ``tty``, ``ptmx``, the ptys and ``/dev/net/tun``
  opened — plus the CDI devices granted; everything when insecure) are enforced by the
  executor: crun is started inside a per-container cgroup ``dockyard/<key>-<id>`` under
  this process's own, of the v1 ``devices`` controller (hybrid and v1 hosts) or of the
  unified hierarchy with a BPF device program (pure v2 hosts), through a ``sh`` that
  enters it and then execs crun; a spare ``sh`` enters the next container's cgroup
  while a step runs, so that no step waits for the kernel's grace period of a cgroup
  move (:mod:`dockyard.executor._devices`, :mod:`dockyard.executor._spares`). A host
  with neither refuses sandboxed crun steps (crun clears ``nodev`` on the root); runc
  steps then get ``nodev`` mounts and no ``CAP_MKNOD``. runc has no "disabled" manager;
  it makes and removes a cgroup per container under its defaults, which works on this
  layout, and enforces the same rules there itself.
- **Cgroup parent** (``--cgroup-parent``). With runc the spec's ``cgroupsPath`` is
  ``/PARENT/dockyard/<id>`` (BuildKit's ``/PARENT/buildkit/<id>``), made and removed by
  runc in every hierarchy (the parent stays, as docker leaves it). crun cannot honour it
  here: on the hybrid layout it only starts with the v2 hierarchy hidden, and a crun
  that manages cgroups (``--cgroup-manager=cgroupfs``) then still makes the container's
  cgroup in the hidden v2 mount point and fails (``creating cgroup directory
  /sys/fs/cgroup/unified/...: No such file or directory``), after making the v1 ones. So
  with crun a cgroup parent is an :class:`~dockyard.core.ExecError` saying to use runc,
  never silently dropped.
- **A container dies with its process.** ``crun run`` and ``runc run`` leave their
  container running when they, or their parent, are killed by SIGKILL. Each process that
  runs containers has a watchdog process (:mod:`dockyard.executor._watchdog`), told of
  every container before its runtime starts; when the process dies, however it dies, the
  watchdog kills the inits of its running containers (and with them their pid
  namespaces). The bundles and mounts left are reaped at the next start.
- **rlimits.** Raising a hard limit needs ``CAP_SYS_RESOURCE``, which the VM lacks
  (``setrlimit RLIMIT_NOFILE: Operation not permitted``). By default the spec sets only
  ``RLIMIT_NOFILE``, to docker's 1048576 capped at our current hard limit; a process's
  own limits (``--ulimit``) are set as given, and one whose hard limit is above ours
  without ``CAP_SYS_RESOURCE`` is refused before the runtime starts, naming the limit.
- **Capabilities.** ``security=insecure`` grants every capability in our bounding set
  (``CAP_SYS_RESOURCE`` is not in it here), never one the runtime could not hand out,
  and, as BuildKit's insecure spec, device nodes for ``/dev/kmsg``, ``cuse``, ``fuse``,
  ``kvm``, ``net/tun``, ``loop-control`` and the loop devices
  (:mod:`dockyard.executor._privileged`).
- **seccomp.** Sandboxed processes run under Dockyard's filter with the semantics of
  docker's default profile (:mod:`dockyard.executor._seccomp`); crun gets it compiled
  once per process (the ``run.oci.seccomp_bpf_data`` annotation), runc gets
  ``linux.seccomp`` and compiles it itself. ``security=insecure`` has none.
- **Network.** With network ``none`` both runtimes bring ``lo`` up in the new namespace
  themselves; nothing else is in it.

Processes of another architecture run under QEMU user-mode emulators the host registered
in binfmt_misc with the ``F`` flag; :func:`host_platforms` says which platforms this host
runs (see :mod:`dockyard.executor._binfmt`), :func:`install_handlers` registers Debian's
``qemu-user-static`` (``dockyard debug binfmt --install``).

The runtime's state lives in a private ``--root`` under the executor's directory, never
in ``/run/crun`` or ``/run/runc``.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from .types import (
    DEFAULT_HOSTNAME,
    DEFAULT_PATH,
    BindMount,
    ExecMount,
    Executor,
    HostEntry,
    NetworkMode,
    OutputSink,
    ProcessSpec,
    Rlimit,
    SecretMount,
    SecurityMode,
    SshMount,
    TmpfsMount,
)

__all__ = [
    "BINFMT_D",
    "BINFMT_MISC",
    "DEFAULT_HOSTNAME",
    "DEFAULT_PATH",
    "ELF_ARCHITECTURES",
    "BindMount",
    "BinfmtHandler",
    "ElfArchitecture",
    "ExecMount",
    "Executor",
    "HostEntry",
    "HostPlatforms",
    "InstallResult",
    "NetworkMode",
    "OciExecutor",
    "OutputSink",
    "PlatformSupport",
    "ProcessSpec",
    "Rlimit",
    "SecretMount",
    "SecurityMode",
    "SshMount",
    "TmpfsMount",
    "binfmt_misc_dir",
    "detect_host_platforms",
    "host_platforms",
    "install_handlers",
    "parse_handler",
    "parse_register_line",
    "prepare_seccomp",
]

if TYPE_CHECKING:
    from ._binfmt import (
        BINFMT_D,
        BINFMT_MISC,
        ELF_ARCHITECTURES,
        BinfmtHandler,
        ElfArchitecture,
        HostPlatforms,
        InstallResult,
        PlatformSupport,
        binfmt_misc_dir,
        detect_host_platforms,
        host_platforms,
        install_handlers,
        parse_handler,
        parse_register_line,
    )
    from ._oci import OciExecutor
    from ._spec import prepare_seccomp


_BINFMT = (
    "BINFMT_D",
    "BINFMT_MISC",
    "ELF_ARCHITECTURES",
    "BinfmtHandler",
    "ElfArchitecture",
    "HostPlatforms",
    "InstallResult",
    "PlatformSupport",
    "binfmt_misc_dir",
    "detect_host_platforms",
    "host_platforms",
    "install_handlers",
    "parse_handler",
    "parse_register_line",
)

# the runner (subprocess, ctypes, asyncio) loads only when an executor is made:
# importing the seam's values stays cheap
__getattr__ = lazy_getattr(
    __name__,
    {"OciExecutor": "._oci", "prepare_seccomp": "._spec", **dict.fromkeys(_BINFMT, "._binfmt")},
)
