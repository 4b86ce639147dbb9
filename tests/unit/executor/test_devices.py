"""Device rules: the spec's list, its v1 writes, the BPF program (run by a small
interpreter here), the host's cgroup layout, the join wrapper and the executor's
cgroup bookkeeping (on plain directories)."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
from pathlib import Path

import pytest

from dockyard.core import ExecError
from dockyard.executor import ProcessSpec, SecurityMode
from dockyard.executor._devices import (
    ALLOW_ALL,
    DEFAULT_RULES,
    DENY_ALL,
    SPARE_SCRIPT_NAME,
    DeviceCgroups,
    DeviceMode,
    DeviceRule,
    HostLayout,
    allows_everything,
    compile_device_filter,
    join_argv,
    rules_from_spec,
    sandbox_rules,
    spare_argv,
    spare_script,
    v1_writes,
)
from dockyard.executor._spares import Spare
from dockyard.executor._spec import build_spec
from dockyard.executor._users import ResolvedUser
from dockyard.executor.cdi import apply_edits
from dockyard.executor.cdi.types import ContainerEdits, DeviceNode

# runc 1.1's AllowedDevices as its cgroup shows them (devices.list of a runc container
# on this project's CI host, which docker's BuildKit gets)
RUNC_DEVICES_LIST = """\
b *:* m
c *:* m
c 1:3 rwm
c 1:5 rwm
c 1:7 rwm
c 1:8 rwm
c 1:9 rwm
c 5:0 rwm
c 5:2 rwm
c 10:200 rwm
c 136:* rwm
"""


def _spec(security: SecurityMode = SecurityMode.SANDBOX) -> dict[str, object]:
    return build_spec(
        process=ProcessSpec(args=("x",), security=security),
        user=ResolvedUser(uid=0, gid=0, additional_gids=(), home="/root"),
        root_path="/rootfs",
        root_readonly=False,
        mounts=[],
        host_capabilities=["CAP_MKNOD"],
        nofile=None,
    )


def test_the_sandbox_rules_are_runcs_defaults_after_a_deny_all() -> None:
    rules = rules_from_spec(_spec())
    assert rules[0] == DENY_ALL
    assert rules[1:] == DEFAULT_RULES
    lines = sorted(line for _, line in v1_writes(rules)[1:])
    assert lines == sorted(RUNC_DEVICES_LIST.splitlines())
    assert not allows_everything(rules)


def test_insecure_allows_every_device() -> None:
    rules = rules_from_spec(_spec(SecurityMode.INSECURE))
    assert rules == (ALLOW_ALL,)
    assert allows_everything(rules)
    assert v1_writes(rules) == [("devices.allow", "a")]


def test_rules_round_trip_through_oci() -> None:
    for rule in (DENY_ALL, ALLOW_ALL, *DEFAULT_RULES):
        assert DeviceRule.from_oci(rule.to_oci()) == rule
    assert sandbox_rules()[0] == {"allow": False, "access": "rwm"}
    assert DeviceRule.from_oci({"allow": True, "type": "c", "major": -1, "access": "mwr"}) == (
        DeviceRule(allow=True, type="c", access="rwm")
    )
    with pytest.raises(ExecError, match="invalid device cgroup rule"):
        DeviceRule.from_oci({"allow": True, "type": "x"})
    with pytest.raises(ExecError, match="invalid device cgroup rule"):
        DeviceRule.from_oci({"allow": True, "access": "rwx"})


def test_v1_writes_follow_the_last_rule_covering_everything() -> None:
    rules = (
        ALLOW_ALL,
        DENY_ALL,
        DeviceRule(allow=True, type="b", major=7, minor=None, access="r"),
        DeviceRule(allow=False, type="c", major=1, minor=3, access="w"),
    )
    assert v1_writes(rules) == [
        ("devices.deny", "a"),
        ("devices.allow", "b 7:* r"),
        ("devices.deny", "c 1:3 w"),
    ]
    # no rule covering everything: deny by default (the runtimes' first step)
    assert v1_writes([DeviceRule(allow=True, type="c", major=1, minor=3)]) == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
    ]


def test_a_cdi_device_adds_its_rule() -> None:
    spec = _spec()
    node = DeviceNode(path="/dev/loop0", type="b", major=7, minor=0, permissions="rw")
    apply_edits(spec, [ContainerEdits(origin="t", device_nodes=(node,))])
    rules = rules_from_spec(spec)
    assert rules[-1] == DeviceRule(allow=True, type="b", major=7, minor=0, access="rw")
    assert v1_writes(rules)[-1] == ("devices.allow", "b 7:0 rw")


# -- the BPF program -----------------------------------------------------------------------

_ACC = {"m": 1, "r": 2, "w": 4}
_DEV = {"b": 1, "c": 2}


def _run_bpf(code: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the instructions the compiler emits, on one request."""
    assert len(code) % 8 == 0
    ctx = struct.pack("<III", (sum(_ACC[c] for c in access) << 16) | _DEV[kind], major, minor)
    regs = [0] * 11
    pc = 0
    steps = 0
    while True:
        steps += 1
        assert steps < 10_000, "the program loops"
        op, regs_byte, off, imm = struct.unpack_from("<BBhi", code, pc * 8)
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if op == 0x61:  # r_dst = *(u32 *)(r_src + off); r1 is the context
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == 0xBC:  # w_dst = w_src
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == 0x54:  # w_dst &= imm
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif op == 0x74:  # w_dst >>= imm
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == 0xB7:  # r_dst = imm
            regs[dst] = imm
        elif op == 0x55:  # if r_dst != imm goto +off
            if regs[dst] != imm:
                pc += off
        elif op == 0x15:  # if r_dst == imm goto +off
            if regs[dst] == imm:
                pc += off
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
        assert 0 <= pc < len(code) // 8


@pytest.mark.parametrize(
    ("kind", "major", "minor", "access", "allowed"),
    [
        ("c", 1, 3, "rw", True),  # /dev/null
        ("c", 1, 5, "r", True),
        ("c", 1, 9, "rwm", True),
        ("c", 136, 7, "rw", True),  # a pty
        ("c", 5, 2, "rw", True),  # ptmx
        ("c", 10, 200, "rw", True),  # tun
        ("b", 7, 0, "m", True),  # mknod of anything
        ("c", 10, 229, "m", True),
        ("b", 7, 0, "r", False),
        ("b", 254, 0, "rw", False),
        ("c", 10, 229, "r", False),  # fuse
        ("c", 1, 1, "r", False),  # /dev/mem
        ("c", 5, 1, "rw", False),  # /dev/console (runc 1.1 does not list it)
        ("c", 4, 1, "w", False),
    ],
)
def test_the_bpf_program_decides_as_the_sandbox_rules(
    kind: str, major: int, minor: int, access: str, allowed: bool
) -> None:
    code = compile_device_filter(rules_from_spec(_spec()))
    assert _run_bpf(code, kind, major, minor, access) == int(allowed)


def test_the_bpf_program_of_partial_access_and_later_denies() -> None:
    rules = [
        DENY_ALL,
        DeviceRule(allow=True, type="b", major=7, minor=None, access="r"),
        DeviceRule(allow=False, type="b", major=7, minor=3, access="r"),
        DeviceRule(allow=True, type="c", major=None, minor=None, access="rw"),
        DeviceRule(allow=False, type="c", major=1, minor=None, access="w"),
    ]
    code = compile_device_filter(rules)
    assert _run_bpf(code, "b", 7, 0, "r") == 1
    assert _run_bpf(code, "b", 7, 0, "rw") == 0  # beyond the rule's access
    assert _run_bpf(code, "b", 7, 3, "r") == 0  # a later deny wins
    assert _run_bpf(code, "c", 4, 4, "rw") == 1
    assert _run_bpf(code, "c", 4, 4, "m") == 0
    assert _run_bpf(code, "c", 1, 3, "r") == 1  # the deny is about writing
    assert _run_bpf(code, "c", 1, 3, "rw") == 0
    # allow everything, then deny one major
    code = compile_device_filter([ALLOW_ALL, DeviceRule(allow=False, type="b", major=8)])
    assert _run_bpf(code, "b", 8, 1, "r") == 0
    assert _run_bpf(code, "b", 9, 1, "r") == 1


# -- the host's layout -----------------------------------------------------------------------

_HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
_HYBRID_CGROUP = """\
5:devices:/system.slice/dockyardd.service
4:memory:/
1:name=systemd:/system.slice/dockyardd.service
0::/system.slice/dockyardd.service
"""


def test_layout_of_a_hybrid_host() -> None:
    layout = HostLayout.read(_HYBRID_MOUNTS, _HYBRID_CGROUP)
    assert layout.devices_v1 == Path("/sys/fs/cgroup/devices/system.slice/dockyardd.service")
    assert layout.unified == Path("/sys/fs/cgroup/unified/system.slice/dockyardd.service")
    assert not layout.pure_v2
    assert layout.runtime_enforces()


def test_layout_of_a_pure_v2_host() -> None:
    layout = HostLayout.read(
        "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        "0::/user.slice/session-1.scope\n",
    )
    assert layout.devices_v1 is None
    assert layout.unified == Path("/sys/fs/cgroup/user.slice/session-1.scope")
    assert layout.pure_v2
    assert layout.runtime_enforces()


def test_layout_of_a_container_with_a_bound_subtree() -> None:
    # a v1 hierarchy whose mount shows only the container's own subtree
    layout = HostLayout.read(
        "50 40 0:33 /docker/abc /sys/fs/cgroup/devices ro,nosuid - cgroup cgroup rw,devices\n",
        "5:devices:/docker/abc/inner\n",
    )
    assert layout.devices_v1 == Path("/sys/fs/cgroup/devices/inner")
    assert layout.unified is None


def test_layout_without_device_control() -> None:
    layout = HostLayout.read(
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "4:memory:/\n"
    )
    assert layout == HostLayout()
    assert not layout.runtime_enforces()
    assert HostLayout.read("", "") == HostLayout()


# -- the executor's cgroups (on plain directories) ---------------------------------------------


def test_mechanism_is_found_once_and_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = HostLayout(devices_v1=tmp_path / "v1")
    (tmp_path / "v1").mkdir()
    devices = DeviceCgroups(tmp_path / "state", layout=layout)
    assert devices.mode() is DeviceMode.CGROUP_V1
    assert devices.base == tmp_path / "v1" / "dockyard"
    assert devices.base.is_dir()

    runc = DeviceCgroups(tmp_path / "state", runtime_managed=True, layout=layout)
    assert runc.mode() is DeviceMode.RUNTIME
    assert runc.base is None

    # nothing usable: a directory that cannot hold the cgroup (a file is in the way)
    (tmp_path / "file").write_text("")
    blocked = HostLayout(devices_v1=tmp_path / "file")
    from dockyard.executor import _devices

    _devices._warned.clear()
    with caplog.at_level(logging.WARNING, logger="dockyard.executor"):
        assert DeviceCgroups(tmp_path / "s", layout=blocked).mode() is DeviceMode.NODEV
        assert DeviceCgroups(tmp_path / "s", layout=HostLayout()).mode() is DeviceMode.NODEV
        none = DeviceCgroups(tmp_path / "s", runtime_managed=True, layout=HostLayout())
        assert none.mode() is DeviceMode.NODEV
    warnings = [r for r in caplog.records if "no device cgroup" in r.getMessage()]
    assert len(warnings) == 1  # once per process
    assert "CAP_MKNOD" in warnings[0].getMessage()


def test_a_forced_mechanism_that_is_missing_is_an_error(tmp_path: Path) -> None:
    devices = DeviceCgroups(tmp_path, mode=DeviceMode.CGROUP_V2, layout=HostLayout())
    with pytest.raises(ExecError, match="cgroup v2 BPF device program is not usable"):
        devices.mode()


def test_no_cgroup_for_rules_allowing_everything(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    devices = DeviceCgroups(tmp_path, layout=HostLayout(devices_v1=tmp_path / "v1"))
    assert devices.create("dy-1", [ALLOW_ALL]) is None
    nodev = DeviceCgroups(tmp_path, mode=DeviceMode.NODEV)
    assert nodev.create("dy-1", [DENY_ALL]) is None
    assert nodev.base is None
    assert nodev.reap() == 0


def test_a_cgroup_that_cannot_be_set_up_is_removed_again(tmp_path: Path) -> None:
    # a plain directory has no devices.deny to write: the error names the cgroup
    (tmp_path / "v1").mkdir()
    devices = DeviceCgroups(tmp_path, layout=HostLayout(devices_v1=tmp_path / "v1"))
    with pytest.raises(ExecError, match="cannot set the device rules of cgroup"):
        devices.create("dy-1", [DENY_ALL])
    assert devices.base is not None
    assert list(devices.base.iterdir()) == []


def test_reap_removes_only_this_executors_cgroups(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    devices = DeviceCgroups(tmp_path / "state", layout=HostLayout(devices_v1=tmp_path / "v1"))
    base = devices.base
    assert base is not None
    ours = base / f"{devices.key}-dy-1"
    busy = base / f"{devices.key}-dy-2"
    theirs = base / "0123456789abcdef-dy-3"
    for d in (ours, busy, theirs):
        d.mkdir()
    (busy / "cgroup.procs").write_text("")  # not empty: rmdir fails, as for a busy cgroup
    assert devices.reap() == 1
    assert not ours.exists()
    assert busy.exists()
    assert theirs.exists()
    # the key depends on the state directory only
    assert DeviceCgroups(tmp_path / "state").key == devices.key
    assert DeviceCgroups(tmp_path / "other").key != devices.key


def test_remove_gives_up_on_a_busy_cgroup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("")
    devices = DeviceCgroups(tmp_path, mode=DeviceMode.NODEV)
    with caplog.at_level(logging.WARNING, logger="dockyard.executor"):
        devices.remove(busy)  # ENOTEMPTY is not EBUSY: logged at once
        devices.remove(tmp_path / "gone")
    assert busy.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"removing device cgroup {busy}: Directory not empty"
    ]


# -- the join wrapper ----------------------------------------------------------------------------


def test_join_argv_writes_its_pid_and_execs(tmp_path: Path) -> None:
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")
    log = tmp_path / "log"
    argv = join_argv("/bin/sh", cgroup, log, ["/bin/sh", "-c", 'echo $$; echo "$1"', "-", "a b"])
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    pid, arg = proc.stdout.splitlines()
    # the same process: the command runs with the pid written to the cgroup
    assert (cgroup / "cgroup.procs").read_text().strip() == pid
    assert arg == "a b"
    assert not log.exists()


def test_join_argv_failure_is_a_runtime_error_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    argv = join_argv("/bin/sh", tmp_path / "missing", log, ["/bin/echo", "ran"])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == ""
    entry = json.loads(log.read_text())
    assert entry == {
        "level": "error",
        "msg": f"cannot enter the device cgroup {tmp_path / 'missing'}",
    }


# -- spares ----------------------------------------------------------------------------------


def _spare(cgroup: Path) -> subprocess.Popen[bytes]:
    pipe = subprocess.PIPE
    return subprocess.Popen(spare_argv("/bin/sh", cgroup), stdin=pipe, stdout=pipe, stderr=pipe)


def test_a_spare_enters_its_cgroup_then_runs_the_bundles_script(tmp_path: Path) -> None:
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")
    bundle = tmp_path / "bundle dir"
    bundle.mkdir()
    argv = ["/bin/sh", "-c", 'echo $$; echo "$1"; cat', "-", 'it\'s "quoted" $HOME']
    (bundle / SPARE_SCRIPT_NAME).write_text(spare_script(argv))
    proc = _spare(cgroup)
    out, err = proc.communicate(os.fsencode(bundle) + b"\nnot for the command\n")
    assert proc.returncode == 0, err
    pid, arg = out.decode().splitlines()  # (its stdin is /dev/null: cat reads nothing)
    assert int(pid) == proc.pid  # the same process: born where the spare was
    assert (cgroup / "cgroup.procs").read_text().strip() == pid
    assert arg == 'it\'s "quoted" $HOME'
    assert not (bundle / "runtime.log").exists()


def test_a_spare_at_end_of_file_runs_nothing(tmp_path: Path) -> None:
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")
    (tmp_path / "cgroup.procs").write_text("")
    proc = _spare(cgroup)
    out, err = proc.communicate(b"")
    assert (proc.returncode, out, err) == (0, b"", b"")
    # it left for the parent (a plain directory here cannot be removed: not empty)
    assert (tmp_path / "cgroup.procs").read_text().strip() == str(proc.pid)


def test_a_spare_that_could_not_enter_reports_in_the_runtimes_log(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / SPARE_SCRIPT_NAME).write_text(spare_script(["/bin/echo", "ran"]))
    proc = _spare(tmp_path / "missing")
    out, err = proc.communicate(os.fsencode(bundle) + b"\n")
    assert (proc.returncode, out, err) == (1, b"", b"")
    assert json.loads((bundle / "runtime.log").read_text()) == {
        "level": "error",
        "msg": f"cannot enter the device cgroup {tmp_path / 'missing'}",
    }


def test_starting_a_spare_that_is_gone(tmp_path: Path) -> None:
    proc = subprocess.Popen(["/bin/true"], stdin=subprocess.PIPE)
    proc.wait()
    spare = Spare(id="dy-1", cgroup=tmp_path, popen=proc, owner=os.getpid())
    # a pipe whose reader is gone: the write (or its flush) fails
    assert spare.start(tmp_path) is False
    assert spare.started  # (it cannot be started again)
