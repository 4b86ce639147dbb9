"""The seccomp filter of RUN steps as crun, runc and the kernel apply it: a sandboxed
process runs under it (``Seccomp: 2``) and an ordinary build's work passes while
``unshare``, the keyring and friends are refused; an insecure process has none; an
emulated (QEMU user-mode) process runs under the host's filter too."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.executor import OciExecutor, SecurityMode
from dockyard.executor._seccomp import host_seccomp, host_seccomp_bpf
from dockyard.executor._spec import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from dockyard.snapshot.types import Mount
from tests.integration.conftest import Overlay, need_emulation
from tests.integration.platforms import UNAME, other_platform

from .test_executor import BOTH, run

PROBE = Path(__file__).with_name("seccomp_probe.py")
BPF_MAXINSNS = 4096  # the kernel's limit on one filter program


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    """A one-line HTTP server on 127.0.0.1 (the process shares the host's network)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@BOTH
async def test_a_sandboxed_process_runs_under_the_filter(
    executor: OciExecutor, busybox_overlay: Overlay, http_port: int
) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "grep '^Seccomp:' /proc/self/status;"
        " unshare -U true 2>/tmp/unshare.err; echo unshare=$?; cat /tmp/unshare.err;"
        " unshare -m true 2>/dev/null; echo unshare-m=$?;"
        # an ordinary build's work
        " mkdir -p /work/a && cd /work && echo data > a/f && ln -s f a/l"
        " && tar -cf /tmp/a.tar a && mkdir b && tar -xf /tmp/a.tar -C b && cat b/a/f"
        " && chown 1000:1000 b/a/f && stat -c %u b/a/f"
        " && mknod /tmp/fifo p && mkfifo /tmp/fifo2 && ls -l /tmp/fifo | cut -c1"
        f" && wget -q -O - http://127.0.0.1:{http_port}/"
        " && (sleep 0 & wait) && echo a b | sort | tr a-z A-Z && chroot / true"
        " && linux32 uname -m >/dev/null && echo build-ok",
    )
    assert rc == 0, out.stderr
    lines = out.text.splitlines()
    assert lines[0] == "Seccomp:\t2"
    assert lines[1] == "unshare=1"
    assert "Operation not permitted" in lines[2]  # EPERM, not "not implemented"
    assert lines[3] == "unshare-m=1"
    assert lines[4:] == ["data", "1000", "p", "hello", "A B", "build-ok"]


@BOTH
async def test_an_insecure_process_has_no_filter(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "grep '^Seccomp:' /proc/self/status; unshare -U true && echo unshare-ok",
        security=SecurityMode.INSECURE,
    )
    assert rc == 0, out.stderr
    assert out.text.splitlines() == ["Seccomp:\t0", "unshare-ok"]


async def test_an_emulated_process_runs_under_the_hosts_filter(
    executor: OciExecutor, foreign_busybox_rootfs: Path, tmp_path: Path
) -> None:
    """QEMU is a host binary: the host architecture's rules apply to its calls, and a
    guest's refused call comes back refused (the emulator does not die of the filter)."""
    other = other_platform()
    need_emulation(other)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    root = Mount(
        type="overlay",
        source="overlay",
        options=(f"lowerdir={foreign_busybox_rootfs}", f"upperdir={upper}", f"workdir={work}"),
    )
    rc, out = await run(
        executor,
        [root],
        "uname -m; grep '^Seccomp:' /proc/self/status;"
        " unshare -U true 2>/dev/null; echo unshare=$?;"
        " echo data > /f && tar -cf /t.tar /f 2>/dev/null && mknod /p p && (sleep 0 & wait)"
        " && echo ok",
    )
    assert rc == 0, out.stderr
    assert out.text.splitlines() == [UNAME[other.architecture], "Seccomp:\t2", "unshare=1", "ok"]


def _probe(given: dict[str, object]) -> dict[str, object]:
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 system call numbers")
    proc = subprocess.run(
        [sys.executable, str(PROBE)],
        input=json.dumps(given).encode(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    report: dict[str, object] = json.loads(proc.stdout)
    return report


@pytest.mark.parametrize("form", ["profile", "bpf"])
def test_the_kernel_answers_as_the_profile_says(form: str) -> None:
    """The profile compiled from its JSON by the host's libseccomp (runc's way) or
    Dockyard's precompiled program (crun's annotation), loaded: refusals are EPERM, clone3
    is ENOSYS (libc falls back to clone), plain clone and the plain personalities pass,
    and the program fits the kernel's limit."""
    caps = frozenset(DEFAULT_CAPABILITIES)
    given: dict[str, object] = (
        {"profile": host_seccomp(caps)} if form == "profile" else {"bpf": host_seccomp_bpf(caps)}
    )
    report = _probe(given)
    length = report["instructions"]
    assert isinstance(length, int)
    assert 0 < length < BPF_MAXINSNS
    eperm, enosys = errno.EPERM, errno.ENOSYS
    assert report["errno"] == {
        "getpid": 0,
        "clone_plain": 0,
        "clone_newuser": eperm,
        "clone_newnet": eperm,
        "clone3": enosys,
        "unshare_newuser": eperm,
        "unshare_newns": eperm,
        "setns": eperm,
        "keyctl": eperm,
        "add_key": eperm,
        "request_key": eperm,
        "bpf": eperm,
        "perf_event_open": eperm,
        "userfaultfd": eperm,
        "mount": eperm,
        "io_uring_setup": enosys,
        "personality_query": 0,
        "personality_linux32": 0,
        "personality_no_randomize": enosys,
        "personality_linux": 0,
        "socket_inet": 0,
        "socket_alg": eperm,
        "socket_vsock": eperm,
        "kcmp": eperm,
        # a 32-bit (int 0x80) or x32 caller meets the same rules
        "i386_getpid": 0,
        "i386_unshare_newuser": eperm,
        "i386_keyctl": eperm,
        "i386_socket_alg": eperm,
        "x32_unshare_newuser": eperm,
    }


def test_cap_sys_admin_opens_what_it_gates() -> None:
    """With every capability (as root here) the gated calls reach the kernel: they
    succeed or fail on their arguments (EFAULT, EBADF, EINVAL), never by the filter;
    the keyring stays closed."""
    report = _probe({"profile": host_seccomp(ALL_CAPABILITIES)})
    answers = report["errno"]
    assert isinstance(answers, dict)
    for name in ("clone_newuser", "clone_newnet", "unshare_newuser", "unshare_newns"):
        assert answers[name] == 0, name
    assert answers["clone3"] == errno.EFAULT
    assert answers["mount"] == errno.EFAULT
    assert answers["setns"] == errno.EBADF
    assert answers["keyctl"] == errno.EPERM
    assert answers["io_uring_setup"] == errno.ENOSYS


def test_the_precompiled_program_is_the_profiles() -> None:
    """What crun loads from the annotation is, byte for byte, what libseccomp makes of
    the spec's ``linux.seccomp`` (what runc loads), so the two runtimes apply one filter."""
    caps = frozenset(DEFAULT_CAPABILITIES)
    report = _probe({"profile": host_seccomp(caps)})
    assert report["bpf"] == host_seccomp_bpf(caps)
