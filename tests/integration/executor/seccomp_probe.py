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
import mmap
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
    "socket": 41,
    "kcmp": 312,
}

# i386 numbers, called through ``int 0x80`` (the compat entry a 32-bit binary uses)
_NR_I386 = {"getpid": 20, "keyctl": 288, "unshare": 310, "socket": 359}
_X32_SYSCALL_BIT = 0x40000000
_AF_INET, _AF_ALG, _AF_VSOCK = 2, 38, 40
_SOCK_STREAM, _SOCK_SEQPACKET = 1, 5
# machine code (x86_64), called through ctypes as f(nr, a1, a2, a3):
# push rbx; mov eax, edi; mov ebx, esi; xchg ecx, edx; int 0x80; pop rbx; ret
_I386_CALL = bytes([0x53, 0x89, 0xF8, 0x89, 0xF3, 0x87, 0xD1, 0xCD, 0x80, 0x5B, 0xC3])
# mov eax, edi; or eax, 0x40000000; mov rdi, rsi; mov rsi, rdx; mov rdx, rcx; syscall; ret
_X32_CALL = bytes.fromhex("89f8 0d00000040 4889f7 4889d6 4889ca 0f05 c3")

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
    if name == "socket":
        os.close(rc)
    return 0


class _Compat:
    """Calls through the i386 (``int 0x80``) and x32 entries of an amd64 kernel: a 32-bit
    binary's calls must meet the filter as a 64-bit one's do."""

    def __init__(self) -> None:
        self._page = mmap.mmap(
            -1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        )
        self._page.write(_I386_CALL.ljust(32, b"\x90") + _X32_CALL)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        args = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)
        self._i386 = ctypes.CFUNCTYPE(ctypes.c_int, *args)(base)
        self._x32 = ctypes.CFUNCTYPE(ctypes.c_long, *args)(base + 32)

    def i386(self, name: str, *args: int) -> int:
        rc = int(self._i386(_NR_I386[name], *(*args, 0, 0, 0)[:3]))
        return _answer(name, rc)

    def x32(self, name: str, *args: int) -> int:
        rc = int(self._x32(_NR[name], *(*args, 0, 0, 0)[:3]))
        return _answer(name, rc)


def _answer(name: str, rc: int) -> int:
    """A raw call's result as the probes report it (the errno, 0 on success)."""
    if -4096 < rc < 0:
        return -rc
    if name == "socket":
        os.close(rc)
    return 0


def _socket(family: int, kind: int) -> int:
    return _call("socket", family, kind, 0)


def probes() -> dict[str, int]:
    compat = _Compat()
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
        "socket_inet": _socket(_AF_INET, _SOCK_STREAM),
        "socket_alg": _socket(_AF_ALG, _SOCK_SEQPACKET),
        "socket_vsock": _socket(_AF_VSOCK, _SOCK_STREAM),
        "kcmp": _call("kcmp", os.getpid(), os.getpid(), 0, 0, 0),
        "i386_getpid": compat.i386("getpid"),
        "i386_unshare_newuser": compat.i386("unshare", _CLONE_NEWUSER),
        "i386_keyctl": compat.i386("keyctl", 0, -3, 0),
        "i386_socket_alg": compat.i386("socket", _AF_ALG, _SOCK_SEQPACKET, 0),
        "x32_unshare_newuser": compat.x32("unshare", _CLONE_NEWUSER),
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
