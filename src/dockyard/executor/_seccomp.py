"""The seccomp filter of a RUN step: Dockyard's own profile, docker's semantics.

BuildKit runs every RUN step under a seccomp profile equivalent to docker's default one
(``RUN --security=insecure`` with the ``security.insecure`` entitlement runs unconfined);
so does Dockyard. :func:`seccomp_profile` builds the OCI ``linux.seccomp`` object for a
process's capability set on a host; :func:`host_seccomp` is that for this host, cached per
process (the executor calls it for every sandboxed step). The list below is written for
Dockyard, from the semantics docker documents for its profile ("Significant syscalls
blocked by the default profile"), not copied from moby's JSON.

Structure and why:

- **An allow list.** Every system call a build needs is named; anything else is refused.
  A deny list would let every system call added to the kernel after the list was written
  through, unreviewed (``io_uring`` went that way), so new means denied.
- **The default answer is ENOSYS, a deliberate refusal is EPERM.** A call the list does
  not name looks unimplemented, which is what makes a C library fall back to an older
  call (glibc tries ``clone3``, ``fchmodat2`` or ``faccessat2`` and falls back on ENOSYS
  only; EPERM from a filter breaks it, as docker's EPERM default once broke newer
  distributions before runc grew an ENOSYS stub). crun has no such stub, so the default
  itself is ENOSYS, as podman's profile has it. The calls docker documents as blocked for
  a reason (the kernel keyring, module loading, mounting, namespaces, clock setting,
  ``bpf``, ``perf_event_open``, ``userfaultfd``, ...) are named with EPERM, the answer
  docker gives and the one tools report as "Operation not permitted". Obsolete calls
  (``uselib``, ``ustat``, ``sysfs``, ``_sysctl``, ``nfsservctl``, ...) and ``io_uring``
  (whose operations bypass the filter) are simply not listed: ENOSYS.
- **Capability-conditional rules.** Calls the kernel gates by a capability the default
  set lacks (``mount`` and the namespace calls by ``CAP_SYS_ADMIN``, ``reboot`` by
  ``CAP_SYS_BOOT``, ...) are allowed exactly when the process holds that capability, so
  the filter adds a second wall behind the capability check and never refuses what the
  capabilities grant. With docker's default capability set they stay denied; an
  ``insecure`` step has no filter at all.
- **clone, clone3, unshare, personality.** Without ``CAP_SYS_ADMIN``: ``clone`` is
  allowed only without namespace flags (a flag set is EPERM), ``clone3`` is ENOSYS (its
  flags sit in memory a filter cannot read; libc then falls back to ``clone``),
  ``unshare`` and ``setns`` are EPERM (an unprivileged user namespace would give the
  process ``CAP_SYS_ADMIN`` over new namespaces and the kernel code behind them).
  ``personality`` takes only the plain Linux personalities (``PER_LINUX``,
  ``PER_LINUX32``, ``UNAME26``, their combination) and the query ``0xffffffff``.
- **ptrace.** Before Linux 4.8 a tracer could rewrite a system call after the filter
  passed it, so there ``ptrace`` and ``process_vm_*`` need ``CAP_SYS_PTRACE``; from 4.8
  they are allowed and the kernel's own ptrace access checks apply (same user, same pid
  namespace), as with docker. ``kcmp``, ``pidfd_getfd`` and ``process_madvise`` need
  ``CAP_SYS_PTRACE`` on any kernel, as in docker's profile.
- **socket.** Address families docker's profile refuses (``AF_ALG``, ``AF_VSOCK``, old
  protocol families, any family newer than ``AF_MCTP``) are EPERM; the i386
  ``socketcall`` multiplexer is allowed as docker allows it (its arguments sit in memory).

Architectures: the filter applies to the system calls the host kernel sees, so it lists
the host's architecture and the compat ones it can run natively (amd64: x86_64, i386 and
x32; arm64: aarch64 and arm). A RUN step of another platform runs under a QEMU user-mode
emulator, a host binary whose host system calls are filtered like any other process's
(the emulator translates the guest's calls; a guest ``clone3`` or ``unshare`` reaches the
host as a host call and meets the same rules). A call from an architecture the filter does
not list would kill the thread, so the compat ones are always listed. On a host
architecture outside the table there is no filter (its argument layout is unknown).

Cost: libseccomp takes ~20 ms to compile these ~450 rules for three architectures, and
crun 1.8 and runc compile ``linux.seccomp`` on every start. For crun, Dockyard compiles
the profile once per process and capability set with the host's libseccomp
(:class:`Libseccomp`, through ctypes, exactly as crun would from the JSON) and passes the
program as crun's ``run.oci.seccomp_bpf_data`` annotation in place of ``linux.seccomp``;
runc has no such input and pays the compile per start. The kernel runs the program on
system calls (calls allowed whatever their arguments hit its per-call cache after the
first). Names the host's libseccomp does not know are left out (:func:`host_seccomp`), so
crun never warns of an "unknown seccomp syscall".
"""

from __future__ import annotations

import base64
import errno
import functools
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

_log = logging.getLogger("dockyard.executor")

__all__ = [
    "ALWAYS_ALLOWED",
    "ARCHITECTURES",
    "CAPABILITY_SYSCALLS",
    "CLONE_NAMESPACE_FLAGS",
    "DENIED",
    "OMITTED",
    "PERSONALITIES",
    "PTRACE_SYSCALLS",
    "SOCKET_FAMILIES_REFUSED",
    "SOCKET_FAMILY_MAX",
    "ArgRule",
    "Libseccomp",
    "SeccompProfile",
    "SyscallRule",
    "host_seccomp",
    "host_seccomp_bpf",
    "libseccomp",
    "seccomp_profile",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ALWAYS_ALLOWED: frozenset[str] = _words(
    # processes, threads, signals, scheduling (clone/personality have argument rules)
    """
    execve execveat exit exit_group fork vfork wait4 waitid waitpid kill tkill tgkill
    getpid getppid gettid getpgid getpgrp getsid setpgid setsid set_tid_address
    set_robust_list get_robust_list restart_syscall rseq membarrier
    futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
    rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
    sigaction signal sigpending sigprocmask sigreturn sigsuspend sigaltstack
    pause alarm nanosleep clock_nanosleep clock_nanosleep_time64
    getitimer setitimer timer_create timer_delete timer_getoverrun timer_gettime
    timer_gettime64 timer_settime timer_settime64
    sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr
    sched_getparam sched_setparam sched_getscheduler sched_setscheduler
    sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_rr_get_interval_time64 getpriority setpriority nice ioprio_get ioprio_set
    getcpu getrlimit setrlimit ugetrlimit prlimit64 getrusage times sysinfo uname
    prctl arch_prctl seccomp capget capset landlock_create_ruleset landlock_add_rule
    landlock_restrict_self pidfd_open pidfd_send_signal process_mrelease
    set_thread_area get_thread_area modify_ldt set_tls get_tls cacheflush breakpoint
    riscv_flush_icache
    """
    # credentials
    """
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
    getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
    setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
    setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid setfsgid32
    setgroups setgroups32
    """
    # memory
    """
    brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 munlock
    mlockall munlockall remap_file_pages memfd_create memfd_secret pkey_alloc pkey_free
    pkey_mprotect map_shadow_stack mseal
    """
    # files and directories
    """
    read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2
    open openat openat2 creat close close_range dup dup2 dup3 lseek _llseek
    stat lstat fstat stat64 lstat64 fstat64 fstatat64 newfstatat statx statfs fstatfs
    statfs64 fstatfs64 access faccessat faccessat2 chmod fchmod fchmodat fchmodat2
    chown lchown fchown fchownat chown32 lchown32 fchown32 umask
    truncate ftruncate truncate64 ftruncate64 fallocate fadvise64 fadvise64_64
    arm_fadvise64_64 readahead fsync fdatasync sync syncfs sync_file_range
    sync_file_range2 arm_sync_file_range fcntl fcntl64 flock ioctl
    getdents getdents64 getcwd chdir fchdir mkdir mkdirat rmdir mknod mknodat
    link linkat unlink unlinkat symlink symlinkat readlink readlinkat rename renameat
    renameat2 utime utimes futimesat utimensat utimensat_time64
    setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr
    flistxattr removexattr lremovexattr fremovexattr setxattrat getxattrat listxattrat
    removexattrat file_getattr file_setattr name_to_handle_at
    sendfile sendfile64 splice tee vmsplice copy_file_range cachestat
    statmount listmount
    """
    # waiting, events, pipes, IPC
    """
    pipe pipe2 poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
    epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
    eventfd eventfd2 signalfd signalfd4 timerfd_create timerfd_gettime timerfd_gettime64
    timerfd_settime timerfd_settime64 inotify_init inotify_init1 inotify_add_watch
    inotify_rm_watch fanotify_mark
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
    io_pgetevents_time64
    ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
    shmget shmat shmdt shmctl mq_open mq_unlink mq_timedsend mq_timedsend_time64
    mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
    """
    # time (reading it; adjtimex changes the clock only with CAP_SYS_TIME)
    """
    time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
    adjtimex
    """
    # sockets
    """
    socketpair socketcall bind connect listen accept accept4 getsockname
    getpeername getsockopt setsockopt shutdown send sendto sendmsg sendmmsg recv
    recvfrom recvmsg recvmmsg recvmmsg_time64
    """
    # randomness
    """
    getrandom
    """
)
"""Allowed for every sandboxed process, whatever its capabilities."""

CAPABILITY_SYSCALLS: dict[str, frozenset[str]] = {
    "CAP_SYS_ADMIN": _words(
        """
        mount umount umount2 fsopen fsconfig fsmount fspick open_tree open_tree_attr
        move_mount mount_setattr pivot_root unshare setns clone3 sethostname
        setdomainname swapon swapoff quotactl quotactl_fd lookup_dcookie fanotify_init
        bpf perf_event_open
        """
    ),
    "CAP_BPF": frozenset({"bpf"}),
    "CAP_PERFMON": frozenset({"perf_event_open"}),
    "CAP_SYS_BOOT": frozenset({"reboot", "kexec_load", "kexec_file_load"}),
    "CAP_SYS_MODULE": frozenset({"init_module", "finit_module", "delete_module"}),
    "CAP_SYS_PACCT": frozenset({"acct"}),
    "CAP_SYS_RAWIO": frozenset({"iopl", "ioperm"}),
    "CAP_SYS_TIME": frozenset(
        {"settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime"}
        | {"clock_adjtime64"}
    ),
    "CAP_SYS_NICE": frozenset(
        {"get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind"}
        | {"move_pages", "migrate_pages"}
    ),
    "CAP_SYS_TTY_CONFIG": frozenset({"vhangup"}),
    "CAP_SYSLOG": frozenset({"syslog"}),
    "CAP_DAC_READ_SEARCH": frozenset({"open_by_handle_at"}),
    "CAP_SYS_CHROOT": frozenset({"chroot"}),
    "CAP_SYS_PTRACE": frozenset({"userfaultfd", "kcmp", "pidfd_getfd", "process_madvise"}),
}
"""System calls allowed only while the process holds the capability (any one of those
naming it); without it they are refused with EPERM. ``clone`` with namespace flags and
``clone3`` follow ``CAP_SYS_ADMIN`` too."""

PTRACE_SYSCALLS: frozenset[str] = frozenset({"ptrace", "process_vm_readv", "process_vm_writev"})
"""Allowed from Linux 4.8 on (the kernel's ptrace access checks apply); before it only
with ``CAP_SYS_PTRACE``. (``kcmp``, ``pidfd_getfd`` and ``process_madvise`` need
``CAP_SYS_PTRACE`` on any kernel, as in docker's profile.)"""

SOCKET_FAMILIES_REFUSED: dict[int, str] = {
    12: "AF_DECnet",
    19: "AF_ECONET",
    20: "AF_ATMSVC",
    23: "AF_IRDA",
    25: "AF_WANPIPE",
    34: "AF_ISDN",
    37: "AF_CAIF",
    38: "AF_ALG",
    40: "AF_VSOCK",
}
"""``socket`` address families refused (EPERM) whatever the capabilities, as docker's
profile refuses them: old or rarely used protocol families whose kernel code has been a
source of exploits, the kernel crypto API (``AF_ALG``) and the host/VM channel
(``AF_VSOCK``). Families above :data:`SOCKET_FAMILY_MAX` are refused too (new means
denied)."""

SOCKET_FAMILY_MAX = 45
"""The highest ``socket`` family allowed (``AF_MCTP``)."""

DENIED: frozenset[str] = frozenset(
    # the kernel keyring is not namespaced; x86 real mode (vm86)
    {"keyctl", "add_key", "request_key", "vm86", "vm86old"}
)
"""Refused with EPERM whatever the capabilities (the rest of what is not allowed gets
the default ENOSYS)."""

OMITTED: frozenset[str] = _words(
    # obsolete, never implemented or removed from the kernel
    """
    _sysctl afs_syscall bdflush break create_module epoll_ctl_old epoll_wait_old ftime
    get_kernel_syms getpmsg gtty idle lock mpx nfsservctl oldfstat oldlstat oldolduname
    oldstat olduname prof profil putpmsg query_module readdir security sgetmask ssetmask
    stty sysfs tuxcall ulimit uselib ustat vserver usr26 usr32
    """
    # io_uring: its operations run without passing the filter
    """
    io_uring_setup io_uring_enter io_uring_register
    """
    # PCI configuration space (old ARM)
    """
    pciconfig_iobase pciconfig_read pciconfig_write
    """
)
"""Not listed on purpose: the default answer, ENOSYS (documentation; the rules do not
name them)."""

CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
"""The ``clone`` flags that make a namespace (linux/sched.h)."""

PERSONALITIES: tuple[int, ...] = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
"""``personality`` arguments allowed: ``PER_LINUX``, ``PER_LINUX32``, ``UNAME26``,
``UNAME26 | PER_LINUX32`` and the query ``0xffffffff``."""

ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "riscv64": ("SCMP_ARCH_RISCV64",),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
}
"""The libseccomp architectures a host machine (``uname -m``) runs natively."""

_CLONE_FLAGS_ARG = {"s390x": 1}  # s390 swaps clone's first two arguments


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgRule:
    """A condition on one system call argument (OCI ``linux.seccomp.syscalls[].args[]``):
    ``op`` compares argument ``index`` with ``value``; for ``SCMP_CMP_MASKED_EQ`` it is
    ``arg & value == value_two``."""

    index: int
    value: int
    value_two: int = 0
    op: str = "SCMP_CMP_EQ"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "value": self.value, "valueTwo": self.value_two, "op": self.op}


@dataclass(frozen=True, slots=True, kw_only=True)
class SyscallRule:
    """One OCI ``linux.seccomp.syscalls[]`` entry: ``names`` get ``action`` (an errno
    for ``SCMP_ACT_ERRNO``) when every one of ``args`` holds."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[ArgRule, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": list(self.names), "action": self.action}
        if self.errno_ret is not None:
            out["errnoRet"] = self.errno_ret
        if self.args:
            out["args"] = [a.to_json() for a in self.args]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SeccompProfile:
    """The OCI ``linux.seccomp`` object: ``rules`` over the default answer (ERRNO with
    ``default_errno``) for the listed ``architectures``."""

    architectures: tuple[str, ...]
    rules: tuple[SyscallRule, ...]
    default_errno: int = errno.ENOSYS

    def action_for(self, name: str) -> list[SyscallRule]:
        """The rules naming ``name`` (none: the default answer)."""
        return [r for r in self.rules if name in r.names]

    def to_json(self) -> dict[str, Any]:
        return {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": self.default_errno,
            "architectures": list(self.architectures),
            "syscalls": [r.to_json() for r in self.rules],
        }


def _allow(names: Iterable[str], *args: ArgRule) -> SyscallRule:
    return SyscallRule(names=tuple(sorted(names)), action="SCMP_ACT_ALLOW", args=args)


def _refuse(names: Iterable[str], err: int, *args: ArgRule) -> SyscallRule:
    return SyscallRule(
        names=tuple(sorted(names)), action="SCMP_ACT_ERRNO", errno_ret=err, args=args
    )


def seccomp_profile(
    capabilities: Collection[str],
    *,
    machine: str,
    kernel: tuple[int, int],
    known: Callable[[str], bool] | None = None,
) -> SeccompProfile | None:
    """The profile of a process holding ``capabilities`` on a ``machine`` (``uname -m``)
    running Linux ``kernel`` (major, minor); ``None`` on a machine :data:`ARCHITECTURES`
    lacks. ``known`` filters the names (those the host's libseccomp resolves); by default
    every name is kept."""
    if machine not in ARCHITECTURES:
        return None
    keep = known or (lambda _name: True)
    caps = set(capabilities)
    admin = "CAP_SYS_ADMIN" in caps

    granted: set[str] = set()
    refused: set[str] = set(DENIED)
    for cap, names in CAPABILITY_SYSCALLS.items():
        (granted if cap in caps else refused).update(names)
    if kernel >= (4, 8) or "CAP_SYS_PTRACE" in caps:
        granted |= PTRACE_SYSCALLS
    else:
        refused |= PTRACE_SYSCALLS
    refused -= granted
    # clone3 is ENOSYS, the default, when not granted: libc falls back to clone
    refused.discard("clone3")

    flags_arg = _CLONE_FLAGS_ARG.get(machine, 0)
    rules: list[SyscallRule] = [_allow(n for n in ALWAYS_ALLOWED | granted if keep(n))]
    if admin:
        rules.append(_allow(["clone"]))
    else:
        mask = sum(CLONE_NAMESPACE_FLAGS.values())
        rules.append(
            _allow(["clone"], ArgRule(index=flags_arg, value=mask, op="SCMP_CMP_MASKED_EQ"))
        )
        rules += [
            _refuse(
                ["clone"],
                errno.EPERM,
                ArgRule(index=flags_arg, value=flag, value_two=flag, op="SCMP_CMP_MASKED_EQ"),
            )
            for flag in CLONE_NAMESPACE_FLAGS.values()
        ]
    rules += [_allow(["personality"], ArgRule(index=0, value=p)) for p in PERSONALITIES]
    rules += _socket_rules()
    rules.append(_refuse((n for n in refused if keep(n)), errno.EPERM))
    return SeccompProfile(architectures=ARCHITECTURES[machine], rules=tuple(rules))


def _socket_rules() -> list[SyscallRule]:
    """``socket`` allowed for the families below :data:`SOCKET_FAMILY_MAX` but
    :data:`SOCKET_FAMILIES_REFUSED`, refused (EPERM) for the rest. (``socketcall``, the
    i386 multiplexer, carries its arguments in memory a filter cannot read: allowed, as
    docker allows it.)"""
    first = min(SOCKET_FAMILIES_REFUSED)
    rules = [_allow(["socket"], ArgRule(index=0, value=first, op="SCMP_CMP_LT"))]
    for family in range(first + 1, SOCKET_FAMILY_MAX + 1):
        if family not in SOCKET_FAMILIES_REFUSED:
            rules.append(_allow(["socket"], ArgRule(index=0, value=family)))
    rules += [
        _refuse(["socket"], errno.EPERM, ArgRule(index=0, value=family))
        for family in sorted(SOCKET_FAMILIES_REFUSED)
    ]
    rules.append(
        _refuse(
            ["socket"],
            errno.EPERM,
            ArgRule(index=0, value=SOCKET_FAMILY_MAX + 1, op="SCMP_CMP_GE"),
        )
    )
    return rules


class Libseccomp:
    """The host's libseccomp (``libseccomp.so.2``, the library crun and runc compile
    profiles with), through ctypes: name lookups and compiling a profile to the BPF
    program the kernel loads. :func:`libseccomp` gives the process's one instance."""

    _ACT_ALLOW = 0x7FFF0000
    _ACT_ERRNO = 0x00050000
    _OPS: ClassVar[dict[str, int]] = {
        "NE": 1, "LT": 2, "LE": 3, "EQ": 4, "GE": 5, "GT": 6, "MASKED_EQ": 7
    }  # fmt: skip
    _NR_SCMP_ERROR = -1  # other architectures' calls resolve to pseudo numbers <= -10000

    def __init__(self) -> None:
        import ctypes

        class ArgCmp(ctypes.Structure):
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        lib = ctypes.CDLL("libseccomp.so.2")  # OSError when missing
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.restype = None
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_add.restype = ctypes.c_int
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(ArgCmp),
        ]
        lib.seccomp_rule_add_array.restype = ctypes.c_int
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_export_bpf.restype = ctypes.c_int
        self._lib = lib
        self._arg_cmp = ArgCmp

    def knows(self, name: str) -> bool:
        """Whether the library resolves ``name`` (of any architecture it knows)."""
        return int(self._lib.seccomp_syscall_resolve_name(name.encode())) != self._NR_SCMP_ERROR

    def _action(self, action: str, errno_ret: int | None) -> int:
        if action == "SCMP_ACT_ALLOW":
            return self._ACT_ALLOW
        if action == "SCMP_ACT_ERRNO":
            return self._ACT_ERRNO | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
        raise ValueError(f"seccomp action {action} is not one Dockyard uses")

    def compile(self, profile: SeccompProfile) -> bytes:
        """The BPF program of ``profile``, made as crun makes it from the same JSON (rules
        whose action is the default skipped, unknown names left out); ``OSError`` when
        the library refuses it."""
        lib = self._lib
        default = self._ACT_ERRNO | profile.default_errno
        ctx = lib.seccomp_init(default)
        if not ctx:
            raise OSError(errno.EINVAL, "seccomp_init failed")
        try:
            for arch in profile.architectures:
                token = lib.seccomp_arch_resolve_name(
                    arch.removeprefix("SCMP_ARCH_").lower().encode()
                )
                rc = lib.seccomp_arch_add(ctx, token) if token else -errno.EINVAL
                if rc < 0 and rc != -errno.EEXIST:
                    raise OSError(-rc, f"seccomp_arch_add {arch}")
            for rule in profile.rules:
                action = self._action(rule.action, rule.errno_ret)
                if action == default:
                    continue
                cmps = (self._arg_cmp * max(len(rule.args), 1))()
                for i, a in enumerate(rule.args):
                    op = self._OPS[a.op.removeprefix("SCMP_CMP_")]
                    cmps[i] = self._arg_cmp(a.index, op, a.value, a.value_two)
                for name in rule.names:
                    nr = lib.seccomp_syscall_resolve_name(name.encode())
                    if nr == self._NR_SCMP_ERROR:
                        continue
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(rule.args), cmps)
                    if rc < 0:
                        raise OSError(-rc, f"seccomp_rule_add {name}")
            fd = os.memfd_create("dockyard-seccomp", os.MFD_CLOEXEC)
            try:
                rc = lib.seccomp_export_bpf(ctx, fd)
                if rc < 0:
                    raise OSError(-rc, "seccomp_export_bpf")
                size = os.fstat(fd).st_size
                return os.pread(fd, size, 0)
            finally:
                os.close(fd)
        finally:
            lib.seccomp_release(ctx)


@functools.cache
def libseccomp() -> Libseccomp | None:
    """The host's libseccomp, loaded once; ``None`` when it cannot be loaded."""
    try:
        return Libseccomp()
    except (OSError, AttributeError):
        return None


def _kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a kernel release (``uname -r``); (0, 0) when unreadable."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@functools.cache
def _host_profile(capabilities: frozenset[str]) -> SeccompProfile | None:
    uts = os.uname()
    lib = libseccomp()
    return seccomp_profile(
        capabilities,
        machine=uts.machine,
        kernel=_kernel_version(uts.release),
        known=None if lib is None else lib.knows,
    )


def host_seccomp(capabilities: Collection[str]) -> dict[str, Any] | None:
    """The ``linux.seccomp`` object (JSON-able, a fresh copy) for a process holding
    ``capabilities`` on this host; ``None`` when the host's architecture has none. The
    profile is built once per capability set and process."""
    profile = _host_profile(frozenset(capabilities))
    return None if profile is None else profile.to_json()


@functools.cache
def host_seccomp_bpf(capabilities: frozenset[str]) -> str | None:
    """:func:`host_seccomp` compiled by the host's libseccomp, base64 (crun's
    ``run.oci.seccomp_bpf_data`` annotation), once per capability set and process;
    ``None`` when there is no profile or the library is missing or refuses it (crun then
    compiles the JSON itself)."""
    profile = _host_profile(capabilities)
    lib = libseccomp()
    if profile is None or lib is None:
        return None
    try:
        program = lib.compile(profile)
    except OSError as exc:
        _log.warning("seccomp profile not precompiled (crun compiles it per run): %s", exc)
        return None
    return base64.b64encode(program).decode("ascii")
