"""Load a seccomp filter into this process and report what system calls answer under it
(run as a script: JSON on stdin, a JSON report on stdout).

The input is ``{"profile": <OCI linux.seccomp>}``, compiled here with the host's
libseccomp the way crun and runc compile it (rules equal to the default action skipped,
names the library does not know left out), or ``{"bpf": <base64>}``, a compiled program
loaded as it is (crun's ``run.oci.seccomp_bpf_data``), or ``{}`` for no filter. The report
holds the program (base64) and its length, and the kernel's answers: probes that could
succeed make a child or nothing at all, and each reports ``0`` or the errno it got.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import json
import os
import sys
import tempfile
from typing import Any

_ACT_ALLOW = 0x7FFF0000
_OPS = {"NE": 1, "LT": 2, "LE": 3, "EQ": 4, "GE": 5, "GT": 6, "MASKED_EQ": 7}
_NR_SCMP_ERROR = -1
_PR_SET_NO_NEW_PRIVS = 38
_NR_SECCOMP = 317  # x86_64

# x86_64 system call numbers (the probe runs on amd64 hosts only)
_NR = {
    "clone": 56,
    "personality": 135,
    "unshare": 272,
    "setns": 308,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "clone3": 435,
    "mount": 165,
    "io_uring_setup": 425,
    "getpid": 39,
}

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_SIGCHLD = 17


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _action(name: str, errno_ret: int) -> int:
    if name == "SCMP_ACT_ALLOW":
        return _ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | (errno_ret & 0xFFFF)
    raise SystemExit(f"unexpected action {name}")


def compile_profile(profile: dict[str, Any]) -> bytes:
    """The BPF program of ``profile``, compiled as crun compiles it."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]

    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet", errno.EPERM))
    ctx = lib.seccomp_init(default)
    for arch in profile.get("architectures", []):
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        rc = lib.seccomp_arch_add(ctx, token)
        if rc < 0 and rc != -errno.EEXIST:
            raise SystemExit(f"seccomp_arch_add {arch}: {rc}")
    for rule in profile["syscalls"]:
        action = _action(rule["action"], rule.get("errnoRet", errno.EPERM))
        if action == default:
            continue
        args = rule.get("args", [])
        cmps = (_ArgCmp * max(len(args), 1))()
        for i, a in enumerate(args):
            op = _OPS[a["op"].removeprefix("SCMP_CMP_")]
            cmps[i] = _ArgCmp(a["index"], op, a["value"], a.get("valueTwo", 0))
        for name in rule["names"]:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue
            rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), cmps)
            if rc < 0:
                raise SystemExit(f"seccomp_rule_add {name}: {rc}")
    with tempfile.TemporaryFile() as f:
        if lib.seccomp_export_bpf(ctx, f.fileno()) < 0:
            raise SystemExit("seccomp_export_bpf failed")
        f.seek(0)
        return f.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Load a BPF program as a runtime does (no_new_privs first)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_NO_NEW_PRIVS) failed")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(
        ctypes.c_long(_NR_SECCOMP), ctypes.c_long(1), ctypes.c_long(0), ctypes.byref(prog)
    )
    if rc != 0:
        raise SystemExit(f"seccomp(SECCOMP_SET_MODE_FILTER): errno {ctypes.get_errno()}")


def _call(name: str, *args: int) -> int:
    """The raw system call's errno, 0 on success (a child it made exits at once)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctypes.set_errno(0)
    rc = libc.syscall(_NR[name], *[ctypes.c_long(a) for a in args])
    if rc < 0:
        return ctypes.get_errno()
    if name == "clone":
        if rc == 0:
            os._exit(0)
        os.waitpid(rc, 0)
    return 0


def probes() -> dict[str, int]:
    return {
        "getpid": _call("getpid"),
        "clone_plain": _call("clone", _SIGCHLD, 0, 0, 0, 0),
        "clone_newuser": _call("clone", _CLONE_NEWUSER | _SIGCHLD, 0, 0, 0, 0),
        "clone_newnet": _call("clone", _CLONE_NEWNET | _SIGCHLD, 0, 0, 0, 0),
        "clone3": _call("clone3", 0, 88),
        "unshare_newuser": _call("unshare", _CLONE_NEWUSER),
        "unshare_newns": _call("unshare", _CLONE_NEWNS),
        "setns": _call("setns", -1, 0),
        "keyctl": _call("keyctl", 0, -3, 0),
        "add_key": _call("add_key", 0, 0, 0, 0, 0),
        "request_key": _call("request_key", 0, 0, 0, 0),
        "bpf": _call("bpf", 0, 0, 0),
        "perf_event_open": _call("perf_event_open", 0, 0, -1, -1, 0),
        "userfaultfd": _call("userfaultfd", 0),
        "mount": _call("mount", 0, 0, 0, 0, 0),
        "io_uring_setup": _call("io_uring_setup", 0, 0),
        "personality_query": _call("personality", 0xFFFFFFFF),
        "personality_linux32": _call("personality", 0x8),
        "personality_no_randomize": _call("personality", 0x0040000),
        "personality_linux": _call("personality", 0x0),
    }


def main() -> int:
    given = json.load(sys.stdin)
    if "profile" in given:
        program = compile_profile(given["profile"])
    else:
        program = base64.b64decode(given.get("bpf", ""))
    if program:
        load(program)
    report = {
        "bpf": base64.b64encode(program).decode(),
        "instructions": len(program) // 8,
        "errno": probes(),
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
