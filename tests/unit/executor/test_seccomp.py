"""The seccomp profile of RUN steps: its structure, the conditional rules and how the
spec carries it (the kernel's and the runtimes' answers are integration tests)."""

from __future__ import annotations

import base64
import errno
import json
from pathlib import Path

import pytest

from dockyard.executor import ProcessSpec, SecurityMode
from dockyard.executor._seccomp import (
    ALWAYS_ALLOWED,
    ARCHITECTURES,
    CAPABILITY_SYSCALLS,
    CLONE_NAMESPACE_FLAGS,
    DENIED,
    OMITTED,
    PERSONALITIES,
    PTRACE_SYSCALLS,
    SOCKET_FAMILIES_REFUSED,
    SOCKET_FAMILY_MAX,
    ArgRule,
    SeccompProfile,
    SyscallRule,
    _kernel_version,
    host_seccomp,
    host_seccomp_bpf,
    libseccomp,
    seccomp_profile,
)
from dockyard.executor._spec import ALL_CAPABILITIES, DEFAULT_CAPABILITIES, build_spec
from dockyard.executor._users import ResolvedUser


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DATA = Path(__file__).parents[2] / "data" / "seccomp"
LIBSECCOMP_NAMES = frozenset(
    line.strip()
    for line in (DATA / "libseccomp-2.5.4-syscalls.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
# listed although libseccomp 2.5.4 does not know them: newer kernels' calls (left out of
# the profile on a host whose libseccomp lacks them) and other architectures' own
NEWER_OR_OTHER_ARCH = _words(
    """
    mseal statmount listmount setxattrat getxattrat listxattrat removexattrat
    file_getattr file_setattr open_tree_attr sync_file_range2
    """
)
# what docker's documentation lists as blocked by its default profile
DOCKER_SIGNIFICANT = _words(
    """
    acct add_key bpf clock_adjtime clock_settime create_module delete_module
    finit_module get_kernel_syms get_mempolicy init_module ioperm iopl kexec_file_load
    kexec_load keyctl lookup_dcookie mbind mount move_pages nfsservctl open_by_handle_at
    perf_event_open pivot_root query_module quotactl reboot request_key set_mempolicy
    setns settimeofday stime swapon swapoff sysfs _sysctl umount umount2 unshare uselib
    userfaultfd ustat vm86 vm86old
    """
)


def profile(
    caps: tuple[str, ...] = DEFAULT_CAPABILITIES,
    *,
    machine: str = "x86_64",
    kernel: tuple[int, int] = (6, 1),
) -> SeccompProfile:
    p = seccomp_profile(caps, machine=machine, kernel=kernel)
    assert p is not None
    return p


def answer(p: SeccompProfile, name: str) -> str:
    """``allow``, ``EPERM``, ``ENOSYS`` (the default) or ``args`` (only some arguments)."""
    rules = p.action_for(name)
    if not rules:
        return errno.errorcode[p.default_errno]
    if any(r.args for r in rules):
        return "args"
    (rule,) = rules
    if rule.action == "SCMP_ACT_ALLOW":
        return "allow"
    assert rule.errno_ret is not None
    return errno.errorcode[rule.errno_ret]


def test_an_allow_list_whose_default_is_enosys() -> None:
    j = profile().to_json()
    assert j["defaultAction"] == "SCMP_ACT_ERRNO"
    assert j["defaultErrnoRet"] == errno.ENOSYS
    assert j["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert all(r["action"] in {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"} for r in j["syscalls"])
    json.dumps(j)  # JSON-able as it is


def test_the_host_architecture_with_its_compat_ones() -> None:
    assert profile(machine="aarch64").architectures == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert seccomp_profile(DEFAULT_CAPABILITIES, machine="mips64", kernel=(6, 1)) is None
    assert set(ARCHITECTURES) >= {"x86_64", "aarch64"}


def test_what_a_build_needs_is_allowed() -> None:
    p = profile()
    for name in _words(
        "read write openat execve fork vfork wait4 exit_group chown fchownat mknodat "
        "connect sendto recvfrom getdents64 statx rename renameat2 symlink "
        "setuid setgroups capset prctl seccomp getrandom futex rseq mmap set_tls "
        "faccessat2 fchmodat2 close_range chroot ptrace"
    ):
        assert answer(p, name) == "allow", name


def test_docker_significant_calls_are_refused_by_default() -> None:
    p = profile()
    for name in DOCKER_SIGNIFICANT:
        assert answer(p, name) in {"EPERM", "ENOSYS"}, name
    for name in ("unshare", "setns", "mount", "keyctl", "add_key", "bpf", "userfaultfd"):
        assert answer(p, name) == "EPERM", name
    for name in ("io_uring_setup", "uselib", "nfsservctl", "clone3"):
        assert answer(p, name) == "ENOSYS", name


def test_no_name_is_both_allowed_and_refused() -> None:
    for caps in (DEFAULT_CAPABILITIES, ALL_CAPABILITIES, ()):
        p = profile(caps)
        allowed = {
            n for r in p.rules if r.action == "SCMP_ACT_ALLOW" and not r.args for n in r.names
        }
        refused = {
            n for r in p.rules if r.action == "SCMP_ACT_ERRNO" and not r.args for n in r.names
        }
        assert not allowed & refused
        assert len(p.rules[0].names) == len(set(p.rules[0].names))


def test_clone_without_namespace_flags_and_clone3_falls_back() -> None:
    p = profile()
    rules = p.action_for("clone")
    mask = sum(CLONE_NAMESPACE_FLAGS.values())
    assert mask == 0x7E020000
    allow = [r for r in rules if r.action == "SCMP_ACT_ALLOW"]
    assert allow == [
        SyscallRule(
            names=("clone",),
            action="SCMP_ACT_ALLOW",
            args=(ArgRule(index=0, value=mask, op="SCMP_CMP_MASKED_EQ"),),
        )
    ]
    # each namespace flag is EPERM (not the default ENOSYS)
    refused = {r.args[0].value for r in rules if r.action == "SCMP_ACT_ERRNO"}
    assert refused == set(CLONE_NAMESPACE_FLAGS.values())
    for r in rules:
        if r.action == "SCMP_ACT_ERRNO":
            assert r.errno_ret == errno.EPERM
            assert r.args[0].value == r.args[0].value_two
    assert answer(p, "clone3") == "ENOSYS"
    # s390 has the flags in the second argument
    s390 = profile(machine="s390x").action_for("clone")
    assert {r.args[0].index for r in s390} == {1}


def test_personality_takes_only_the_plain_linux_ones() -> None:
    rules = profile().action_for("personality")
    assert all(r.action == "SCMP_ACT_ALLOW" for r in rules)
    assert sorted(r.args[0].value for r in rules) == sorted(PERSONALITIES)
    assert all(r.args[0].op == "SCMP_CMP_EQ" for r in rules)


def test_cap_sys_admin_allows_mounts_and_namespaces() -> None:
    p = profile((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    for name in ("mount", "umount2", "unshare", "setns", "clone3", "bpf", "perf_event_open"):
        assert answer(p, name) == "allow", name
    assert answer(p, "clone") == "allow"  # every flag
    assert answer(p, "keyctl") == "EPERM"  # the keyring stays closed
    assert answer(p, "reboot") == "EPERM"  # another capability's


@pytest.mark.parametrize(
    ("cap", "name"),
    [
        ("CAP_SYS_BOOT", "reboot"),
        ("CAP_SYS_MODULE", "finit_module"),
        ("CAP_SYS_TIME", "clock_settime"),
        ("CAP_SYS_PACCT", "acct"),
        ("CAP_SYS_NICE", "mbind"),
        ("CAP_SYSLOG", "syslog"),
        ("CAP_BPF", "bpf"),
        ("CAP_PERFMON", "perf_event_open"),
        ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ("CAP_SYS_RAWIO", "iopl"),
        ("CAP_SYS_TTY_CONFIG", "vhangup"),
        ("CAP_SYS_PTRACE", "userfaultfd"),
        ("CAP_SYS_PTRACE", "kcmp"),
        ("CAP_SYS_PTRACE", "pidfd_getfd"),
        ("CAP_SYS_PTRACE", "process_madvise"),
    ],
)
def test_a_capability_allows_its_calls(cap: str, name: str) -> None:
    assert answer(profile(DEFAULT_CAPABILITIES), name) == "EPERM"
    assert answer(profile((*DEFAULT_CAPABILITIES, cap)), name) == "allow"


def _socket_answer(p: SeccompProfile, family: int) -> str:
    """What ``socket(family, ...)`` gets: the action of the rule whose condition holds."""
    ops = {
        "SCMP_CMP_EQ": lambda a, b: a == b,
        "SCMP_CMP_LT": lambda a, b: a < b,
        "SCMP_CMP_GE": lambda a, b: a >= b,
    }
    matched = [r for r in p.action_for("socket") if all(ops[a.op](family, a.value) for a in r.args)]
    assert len(matched) == 1, (family, matched)
    (rule,) = matched
    return "allow" if rule.action == "SCMP_ACT_ALLOW" else errno.errorcode[rule.errno_ret or 0]


def test_socket_families_docker_refuses_are_refused() -> None:
    """AF_ALG (38), AF_VSOCK (40) and the others docker's profile leaves out get EPERM, so
    do families past AF_MCTP (45); unix, inet, inet6, netlink, packet pass. No rule for a
    capability opens them."""
    for caps in (DEFAULT_CAPABILITIES, ALL_CAPABILITIES):
        p = profile(caps)
        for family in (1, 2, 10, 16, 17, 44, 45):
            assert _socket_answer(p, family) == "allow", family
        for family in (12, 19, 20, 23, 25, 34, 37, 38, 40, 46, 64, 2**32 - 1, 2**63):
            assert _socket_answer(p, family) == "EPERM", family
    assert {38, 40} <= set(SOCKET_FAMILIES_REFUSED)
    assert SOCKET_FAMILY_MAX == 45


def test_chroot_follows_cap_sys_chroot() -> None:
    assert answer(profile(), "chroot") == "allow"  # in docker's default set
    without = tuple(c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT")
    assert answer(profile(without), "chroot") == "EPERM"


def test_ptrace_needs_the_capability_before_linux_4_8() -> None:
    for name in PTRACE_SYSCALLS:
        assert answer(profile(kernel=(4, 8)), name) == "allow"
        assert answer(profile(kernel=(4, 7)), name) == "EPERM"
        assert answer(profile((*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"), kernel=(3, 10)), name) == (
            "allow"
        )


def test_names_the_host_libseccomp_lacks_are_left_out() -> None:
    p = seccomp_profile(
        DEFAULT_CAPABILITIES, machine="x86_64", kernel=(6, 1), known=lambda n: n != "statx"
    )
    assert p is not None
    assert not p.action_for("statx")
    assert answer(p, "openat") == "allow"


def test_every_name_is_a_system_call() -> None:
    """A typo would be a call nobody meant, left out with a warning by crun."""
    named = ALWAYS_ALLOWED | DENIED | PTRACE_SYSCALLS | OMITTED
    for names in CAPABILITY_SYSCALLS.values():
        named |= names
    assert named - LIBSECCOMP_NAMES == NEWER_OR_OTHER_ARCH


def test_every_known_system_call_is_decided() -> None:
    """Each call of libseccomp 2.5.4's tables (x86, arm, riscv) is allowed, conditional,
    refused or deliberately omitted: none is left to the default by oversight."""
    decided = ALWAYS_ALLOWED | DENIED | PTRACE_SYSCALLS | OMITTED
    decided |= {"clone", "personality", "socket"}
    for names in CAPABILITY_SYSCALLS.values():
        decided |= names
    assert LIBSECCOMP_NAMES - decided == set()
    assert not ALWAYS_ALLOWED & (DENIED | OMITTED | PTRACE_SYSCALLS)
    for names in CAPABILITY_SYSCALLS.values():
        assert not ALWAYS_ALLOWED & names


def test_the_host_libseccomp_is_asked() -> None:
    lib = libseccomp()
    assert lib is not None, "libseccomp.so.2 (crun's and runc's) could not be loaded"
    assert lib.knows("openat")
    assert lib.knows("stime")  # i386's, known to the library on any host
    assert not lib.knows("no_such_call")


def test_the_profile_compiles_to_one_program_per_capability_set() -> None:
    caps = frozenset(DEFAULT_CAPABILITIES)
    bpf = host_seccomp_bpf(caps)
    assert bpf is not None
    program = base64.b64decode(bpf)
    assert program
    assert len(program) % 8 == 0
    assert host_seccomp_bpf(caps) is bpf  # cached
    admin = host_seccomp_bpf(caps | {"CAP_SYS_ADMIN"})
    assert admin is not None
    assert admin != bpf


def test_kernel_versions() -> None:
    assert _kernel_version("6.18.44-fc-v669") == (6, 18)
    assert _kernel_version("4.8.0") == (4, 8)
    assert _kernel_version("5.15rc1") == (5, 15)
    assert _kernel_version("junk") == (0, 0)


def test_host_profile_is_cached_and_handed_out_as_copies() -> None:
    first = host_seccomp(DEFAULT_CAPABILITIES)
    assert first is not None
    first["syscalls"].clear()
    second = host_seccomp(list(reversed(DEFAULT_CAPABILITIES)))
    assert second is not None
    assert second["syscalls"]


def _spec(security: SecurityMode, *, precompiled: bool = False) -> dict[str, object]:
    return build_spec(
        process=ProcessSpec(args=("true",), security=security),
        user=ResolvedUser(uid=0, gid=0, additional_gids=(), home="/root"),
        root_path="/rootfs",
        root_readonly=False,
        mounts=[],
        host_capabilities=ALL_CAPABILITIES,
        nofile=None,
        precompiled_seccomp=precompiled,
    )


def test_the_spec_carries_the_filter_unless_insecure() -> None:
    sandbox = _spec(SecurityMode.SANDBOX)["linux"]
    assert isinstance(sandbox, dict)
    assert sandbox["seccomp"] == host_seccomp(DEFAULT_CAPABILITIES)
    insecure = _spec(SecurityMode.INSECURE)["linux"]
    assert isinstance(insecure, dict)
    assert "seccomp" not in insecure


def test_crun_gets_the_program_precompiled() -> None:
    bpf = host_seccomp_bpf(frozenset(DEFAULT_CAPABILITIES))
    spec = _spec(SecurityMode.SANDBOX, precompiled=True)
    assert spec["annotations"] == {"run.oci.seccomp_bpf_data": bpf}
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert "seccomp" not in linux  # the program replaces it
    assert "annotations" not in _spec(SecurityMode.SANDBOX)
    assert "annotations" not in _spec(SecurityMode.INSECURE, precompiled=True)


def test_prepare_compiles_an_ordinary_steps_filter_ahead() -> None:
    """A daemon or the warm server prepares it; the first RUN's spec then finds it."""
    from dockyard.executor import prepare_seccomp
    from dockyard.executor._seccomp import host_seccomp_bpf
    from dockyard.executor._spec import DEFAULT_CAPABILITIES

    host_seccomp_bpf.cache_clear()
    prepare_seccomp()
    assert host_seccomp_bpf.cache_info().currsize == 1
    host_seccomp_bpf(frozenset(DEFAULT_CAPABILITIES))
    assert host_seccomp_bpf.cache_info().hits == 1


def test_only_a_crun_that_knows_the_annotation_gets_the_program_alone(tmp_path: Path) -> None:
    """A crun from before the annotation ignores it: given the program alone it would run
    the step unfiltered, saying nothing. Whether the binary knows it is read from it."""
    from dockyard.executor._runtime import (
        SECCOMP_BPF_ANNOTATION,
        Runtime,
        RuntimeKind,
        knows_annotation,
    )

    new = tmp_path / "crun-new"
    new.write_bytes(b"\x7fELF" + b"x" * (1 << 20) + SECCOMP_BPF_ANNOTATION.encode() + b"\0")
    old = tmp_path / "crun-old"
    old.write_bytes(b"\x7fELF" + b"run.oci.seccomp_fail_unknown_syscall\0")
    split = tmp_path / "crun-split"  # the string across the reader's 1 MiB pieces
    split.write_bytes(b"x" * ((1 << 20) - 5) + SECCOMP_BPF_ANNOTATION.encode())
    assert knows_annotation(str(new), SECCOMP_BPF_ANNOTATION)
    assert knows_annotation(str(split), SECCOMP_BPF_ANNOTATION)
    assert not knows_annotation(str(old), SECCOMP_BPF_ANNOTATION)
    assert not knows_annotation(str(tmp_path / "missing"), SECCOMP_BPF_ANNOTATION)

    def runtime(kind: RuntimeKind, binary: Path) -> Runtime:
        return Runtime(kind=kind, binary=str(binary), state_dir=tmp_path)

    assert runtime(RuntimeKind.CRUN, new).precompiled_seccomp
    assert not runtime(RuntimeKind.CRUN, old).precompiled_seccomp
    assert not runtime(RuntimeKind.RUNC, new).precompiled_seccomp
