"""Device access control of sandboxed processes: BuildKit's device cgroup policy.

A build step has docker's ``CAP_MKNOD``: it can make a node for any device, and device
nodes also arrive in an image's layers, a build context (a remote client chooses their
numbers) and bind or cache mounts. What it may *open* is the device cgroup's decision:
docker's BuildKit runs runc with the spec's deny-all rule, to which runc appends its
default rules (:data:`DEFAULT_RULES`: make any node, open ``/dev/null``, ``zero``,
``full``, ``random``, ``urandom``, ``tty``, ``ptmx``, the pseudo-terminals and
``/dev/net/tun``); a granted CDI device adds its own rule; ``security=insecure`` allows
every device.

runc enforces the spec's ``linux.resources.devices`` itself. crun runs with
``--cgroup-manager=disabled`` (see the package docstring), so Dockyard enforces them for
it, with the kernel's device cgroup, per container:

- **cgroup v1** (a ``devices`` hierarchy, pure v1 or hybrid hosts): a child cgroup
  ``dockyard/<key>-<container id>`` under the cgroup this process lives in, with
  ``devices.deny`` ``a`` and then the allow rules written (an allow the parent's policy
  refuses is skipped: the device stays denied);
- **cgroup v2** (the unified hierarchy and no v1 ``devices``): the same child cgroup
  there, with a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program compiled from the rules and
  attached with ``BPF_F_ALLOW_MULTI`` (an ancestor's programs, e.g. systemd's device
  policy, still apply). crun's own BPF filter is not used: crun 1.8 raises
  ``RLIMIT_MEMLOCK`` to infinity before loading it and fails without
  ``CAP_SYS_RESOURCE``, and on a hybrid host crun cannot manage cgroups at all;
- the runtime is started *inside* that cgroup: the command is wrapped in ``sh -c`` that
  writes its own pid to ``cgroup.procs`` and then execs the runtime, whose
  container init inherits the cgroup (:func:`join_argv`; no ``preexec_fn``, this
  process never enters it) — or a spare ``sh`` that entered it ahead of time does
  (:func:`spare_argv`, :mod:`dockyard.executor._spares`: entering a cgroup waits for an
  RCU grace period, 5-12 ms). The cgroup is removed after the container is gone, and
  leftovers of a process that died are removed when the executor reaps its state.

``<key>`` is derived from the executor's state directory, so that reaping touches only
the cgroups of the executor holding that directory's lock.

When neither mechanism is usable (no ``devices`` controller, a read-only cgroupfs, no
BPF), :attr:`DeviceMode.NODEV` (a warning is logged once): under runc a sandboxed step
gets no ``CAP_MKNOD`` and its root and every mount the executor gives it are ``nodev``,
so a node in the image, the context or a mount cannot be opened (``Permission
denied``) and ``mknod`` fails, while the runtime's ``/dev`` keeps its nodes. Under crun
a sandboxed step is refused: crun 1.8 remounts the root it binds with no flags, which
clears ``nodev`` (seen in its system calls), so device nodes in the image would stay
openable. ``security=insecure`` runs either way.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import logging
import os
import platform
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.core import ExecError
from dockyard.snapshot.mount import MountInfo, parse_mountinfo

__all__ = [
    "ALLOW_ALL",
    "DEFAULT_RULES",
    "DENY_ALL",
    "SPARE_SCRIPT_NAME",
    "DeviceCgroups",
    "DeviceMode",
    "DeviceRule",
    "HostLayout",
    "allows_everything",
    "compile_device_filter",
    "join_argv",
    "rules_from_spec",
    "sandbox_rules",
    "spare_argv",
    "spare_script",
    "v1_writes",
]

_log = logging.getLogger("dockyard.executor")

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRule:
    """One device cgroup rule (an entry of the OCI spec's ``linux.resources.devices``):
    ``type`` ``a`` (all), ``b`` or ``c``; ``major``/``minor`` ``None`` for any;
    ``access`` a combination of ``r``, ``w`` and ``m``."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    @property
    def matches_all(self) -> bool:
        """Whether the rule covers every device and every access."""
        return (
            self.type == "a"
            and self.major is None
            and self.minor is None
            and set(self.access) >= set("rwm")
        )

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow": self.allow}
        if self.type != "a":
            out["type"] = self.type
        if self.major is not None:
            out["major"] = self.major
        if self.minor is not None:
            out["minor"] = self.minor
        out["access"] = self.access
        return out

    @classmethod
    def from_oci(cls, value: Mapping[str, Any]) -> DeviceRule:
        kind = value.get("type") or "a"
        access = value.get("access") or "rwm"
        if kind not in ("a", "b", "c") or not set(access) <= set("rwm"):
            raise ExecError(f"invalid device cgroup rule {dict(value)!r}")
        major, minor = value.get("major"), value.get("minor")
        if kind == "a":
            major = minor = None
        return cls(
            allow=bool(value.get("allow")),
            type=kind,
            major=None if major is None or major < 0 else int(major),
            minor=None if minor is None or minor < 0 else int(minor),
            access="".join(c for c in "rwm" if c in access),
        )

    def v1_line(self) -> str:
        """The rule as ``devices.allow``/``devices.deny`` take it (``c 1:3 rwm``)."""
        if self.type == "a" and self.major is None and self.minor is None:
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


DENY_ALL = DeviceRule(allow=False)
ALLOW_ALL = DeviceRule(allow=True)


def _char(major: int, minor: int | None) -> DeviceRule:
    return DeviceRule(allow=True, type="c", major=major, minor=minor)


DEFAULT_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(allow=True, type="c", access="m"),  # mknod of any device
    DeviceRule(allow=True, type="b", access="m"),
    _char(1, 3),  # /dev/null
    _char(1, 8),  # /dev/random
    _char(1, 7),  # /dev/full
    _char(5, 0),  # /dev/tty
    _char(1, 5),  # /dev/zero
    _char(1, 9),  # /dev/urandom
    _char(136, None),  # /dev/pts/*
    _char(5, 2),  # /dev/ptmx
    _char(10, 200),  # /dev/net/tun
)
"""What a sandboxed step may do with devices besides its CDI devices: runc 1.1's
``AllowedDevices`` (``libcontainer/specconv``), which it appends to every container's
rules; docker's BuildKit gets exactly these."""


def sandbox_rules() -> list[dict[str, Any]]:
    """``linux.resources.devices`` of a sandboxed step: deny all, then the defaults."""
    return [DENY_ALL.to_oci(), *(r.to_oci() for r in DEFAULT_RULES)]


def rules_from_spec(spec: Mapping[str, Any]) -> tuple[DeviceRule, ...]:
    """The spec's ``linux.resources.devices`` (empty when it has none)."""
    raw = spec.get("linux", {}).get("resources", {}).get("devices", [])
    return tuple(DeviceRule.from_oci(r) for r in raw)


def _effective(rules: Sequence[DeviceRule]) -> tuple[bool, list[DeviceRule]]:
    """(default allow, the rules after the last rule covering everything). Without
    such a rule the default is to deny (what a runtime's first ``deny a`` gives)."""
    default = False
    start = 0
    for i, rule in enumerate(rules):
        if rule.matches_all:
            default, start = rule.allow, i + 1
    return default, list(rules[start:])


def allows_everything(rules: Sequence[DeviceRule]) -> bool:
    """Whether the rules leave every device open (``insecure``): no cgroup needed."""
    default, rest = _effective(rules)
    return default and all(r.allow for r in rest)


def v1_writes(rules: Sequence[DeviceRule]) -> list[tuple[str, str]]:
    """(file, line) writes that give a fresh v1 devices cgroup these rules: the default
    first (``a`` to ``devices.deny`` or ``devices.allow``), then each later rule."""
    default, rest = _effective(rules)
    out = [("devices.allow" if default else "devices.deny", "a")]
    for rule in rest:
        out.append(("devices.allow" if rule.allow else "devices.deny", rule.v1_line()))
    return out


# -- cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program -------------------------------------

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: access_type is
# (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
_ACC = {"m": 1, "r": 2, "w": 4}
_DEV = {"b": 1, "c": 2}
# registers after the prologue: r2 access, r3 device type, r4 major, r5 minor
_LDX_W, _MOV32_X, _AND32_K, _RSH32_K, _MOV64_K, _JNE_K, _EXIT = (
    0x61,
    0xBC,
    0x54,
    0x74,
    0xB7,
    0x55,
    0x95,
)


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


_JEQ_K = 0x15


def _rule_block(rule: DeviceRule) -> list[bytes]:
    """Instructions returning the rule's verdict when it matches the request and
    falling through to the next block otherwise."""
    # (jump opcode, register, immediate) tests that each skip the block, or instructions
    steps: list[tuple[int, int, int] | bytes] = []
    if rule.type in _DEV:
        steps.append((_JNE_K, 3, _DEV[rule.type]))
    bits = sum(_ACC[c] for c in rule.access)
    if bits != 7:
        steps.append(_insn(_MOV32_X, dst=0, src=2))
        if rule.allow:
            # an allow matches a request for nothing beyond its access
            steps.append(_insn(_AND32_K, dst=0, imm=~bits & 7))
            steps.append((_JNE_K, 0, 0))
        else:
            # a deny matches a request for any of its access
            steps.append(_insn(_AND32_K, dst=0, imm=bits))
            steps.append((_JEQ_K, 0, 0))
    if rule.major is not None:
        steps.append((_JNE_K, 4, rule.major))
    if rule.minor is not None:
        steps.append((_JNE_K, 5, rule.minor))
    steps.append(_insn(_MOV64_K, dst=0, imm=int(rule.allow)))
    steps.append(_insn(_EXIT))
    out: list[bytes] = []
    for i, step in enumerate(steps):
        if isinstance(step, bytes):
            out.append(step)
        else:
            op, dst, imm = step
            out.append(_insn(op, dst=dst, off=len(steps) - i - 1, imm=imm))
    return out


def compile_device_filter(rules: Sequence[DeviceRule]) -> bytes:
    """A ``BPF_PROG_TYPE_CGROUP_DEVICE`` program (raw instructions) for ``rules``: the
    last rule matching a request decides (as the runtimes apply the spec's list);
    nothing matching is denied."""
    default, rest = _effective(rules)
    prog = [
        _insn(_LDX_W, dst=2, src=1, off=0),
        _insn(_MOV32_X, dst=3, src=2),
        _insn(_AND32_K, dst=3, imm=0xFFFF),
        _insn(_RSH32_K, dst=2, imm=16),
        _insn(_LDX_W, dst=4, src=1, off=4),
        _insn(_LDX_W, dst=5, src=1, off=8),
    ]
    for rule in reversed(rest):
        prog += _rule_block(rule)
    prog += [_insn(_MOV64_K, dst=0, imm=int(default)), _insn(_EXIT)]
    return b"".join(prog)


_BPF_SYSCALL = {
    "x86_64": 321,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
    "i686": 357,
    "i386": 357,
    "armv7l": 386,
}
_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2


class _Bpf:
    """The ``bpf`` system call through ctypes (loaded only on a cgroup v2 host). Loaded
    programs are kept (one per distinct rule list) for the life of the process."""

    def __init__(self) -> None:
        import ctypes

        number = _BPF_SYSCALL.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, f"no bpf system call number for {platform.machine()}")
        self._ctypes = ctypes
        self._number = number
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._programs: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def _call(self, cmd: int, attr: bytes) -> int:
        ctypes = self._ctypes
        buf = ctypes.create_string_buffer(attr, 144)
        rc = int(self._syscall(ctypes.c_long(self._number), ctypes.c_int(cmd), buf, 144))
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return rc

    def program(self, code: bytes) -> int:
        """A file descriptor of ``code`` loaded as a device cgroup program."""
        with self._lock:
            fd = self._programs.get(code)
            if fd is None:
                fd = self._programs[code] = self._load(code)
            return fd

    def _load(self, code: bytes) -> int:
        ctypes = self._ctypes
        insns = ctypes.create_string_buffer(code, len(code))
        license_ = ctypes.create_string_buffer(b"Apache-2.0")

        def load(log_size: int) -> tuple[int, str]:
            log = ctypes.create_string_buffer(max(log_size, 1))
            attr = struct.pack(
                "<IIQQIIQ",
                _BPF_PROG_TYPE_CGROUP_DEVICE,
                len(code) // 8,
                ctypes.addressof(insns),
                ctypes.addressof(license_),
                1 if log_size else 0,
                log_size,
                ctypes.addressof(log) if log_size else 0,
            )
            try:
                return self._call(_BPF_PROG_LOAD, attr), ""
            except OSError as exc:
                if not log_size:
                    raise
                return -1, f"{exc.strerror}: {log.value.decode(errors='replace').strip()}"

        try:
            # no verifier log: a log that fills its buffer fails the load (ENOSPC)
            fd, _ = load(0)
        except OSError as exc:
            # again with a log, for the verifier's reason
            fd, detail = load(1 << 16)
            if fd < 0:
                raise OSError(exc.errno, detail or exc.strerror) from None
        return fd  # (the kernel makes it close-on-exec)

    def attach(self, program: int, cgroup: Path) -> None:
        dfd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = struct.pack("<IIII", dfd, program, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI)
            self._call(_BPF_PROG_ATTACH, attr)
        finally:
            os.close(dfd)


# -- the host's cgroup layout ------------------------------------------------------------


class DeviceMode(enum.Enum):
    """How device rules are enforced for the executor's containers."""

    CGROUP_V1 = "cgroup v1 devices controller"
    CGROUP_V2 = "cgroup v2 BPF device program"
    RUNTIME = "the runtime's own device cgroup"
    NODEV = "no device cgroup: nodev mounts and no CAP_MKNOD"


def _own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """Controller (``""`` for the unified hierarchy) -> this process's cgroup path."""
    out: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def _inside(mount: MountInfo, path: str) -> Path:
    """Where the cgroup ``path`` (as /proc/self/cgroup names it) is under ``mount``."""
    root = mount.root.rstrip("/")
    rel = path
    if root and (path == root or path.startswith(root + "/")):
        rel = path[len(root) :]
    return Path(mount.point) / rel.lstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLayout:
    """Where device control can happen on this host: the v1 ``devices`` cgroup and the
    unified (v2) cgroup this process lives in (``None`` when absent), and whether the
    unified hierarchy is the only one (``/sys/fs/cgroup`` itself is cgroup2)."""

    devices_v1: Path | None = None
    unified: Path | None = None
    pure_v2: bool = False

    @classmethod
    def read(cls, mountinfo: str, proc_cgroup: str) -> HostLayout:
        """From the text of ``/proc/self/mountinfo`` and ``/proc/self/cgroup``."""
        own = _own_cgroups(proc_cgroup)
        devices_v1: Path | None = None
        unified: Path | None = None
        pure_v2 = False
        for mount in parse_mountinfo(mountinfo):
            if mount.fstype == "cgroup" and "devices" in mount.super_options:
                if "devices" in own:
                    devices_v1 = _inside(mount, own["devices"])
            elif mount.fstype == "cgroup2":
                if mount.point == str(_CGROUP_ROOT):
                    pure_v2 = True
                if "" in own and (unified is None or mount.point == str(_CGROUP_ROOT)):
                    unified = _inside(mount, own[""])
        return cls(devices_v1=devices_v1, unified=unified, pure_v2=pure_v2)

    @classmethod
    def current(cls) -> HostLayout:
        """This process's view. Blocking (reads two small proc files)."""
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                mountinfo = f.read()
            with open("/proc/self/cgroup", encoding="utf-8", errors="surrogateescape") as f:
                proc_cgroup = f.read()
        except OSError:
            return cls()
        return cls.read(mountinfo, proc_cgroup)

    def runtime_enforces(self) -> bool:
        """Whether a runtime managing cgroups (runc) has a device cgroup to use: a v1
        ``devices`` hierarchy, or a pure v2 host."""
        return self.devices_v1 is not None or self.pure_v2


_RMDIR_TRIES = 40
_RMDIR_PAUSE = 0.005  # seconds between tries: exiting tasks leave the cgroup quickly


class DeviceCgroups:
    """The device control of one executor (see the module docstring).

    ``key_source`` (the executor's state directory) gives the prefix of its cgroups'
    names (``<key>-<container id>``), so that :meth:`reap` touches only its own.
    ``runtime_managed``: the runtime enforces the spec's rules itself (runc); only
    whether it can is checked. ``mode`` forces a mechanism and ``layout`` a host view
    (tests); by default the host's mechanism is found, and tried, on first use."""

    def __init__(
        self,
        key_source: Path,
        *,
        runtime_managed: bool = False,
        mode: DeviceMode | None = None,
        layout: HostLayout | None = None,
    ) -> None:
        digest = hashlib.sha256(os.fsencode(os.path.abspath(key_source))).hexdigest()
        self._key = digest[:16]
        self._runtime_managed = runtime_managed
        self._forced = mode
        self._layout = layout
        self._mode: DeviceMode | None = None
        self._base: Path | None = None
        self._bpf: _Bpf | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return self._key

    def mode(self) -> DeviceMode:
        """The mechanism in use, found (and checked to work) once. Blocking."""
        with self._lock:
            if self._mode is None:
                self._mode, self._base = self._detect()
            return self._mode

    @property
    def base(self) -> Path | None:
        """The parent of the executor's cgroups (``None`` unless Dockyard makes them)."""
        self.mode()
        return self._base

    def _detect(self) -> tuple[DeviceMode, Path | None]:
        layout = self._layout or HostLayout.current()
        if self._forced in (DeviceMode.NODEV, DeviceMode.RUNTIME):
            return self._forced, None
        if self._runtime_managed and self._forced is None:
            if layout.runtime_enforces():
                return DeviceMode.RUNTIME, None
            _warn_nodev("neither a cgroup v1 devices controller nor a cgroup v2 host")
            return DeviceMode.NODEV, None
        candidates: list[tuple[DeviceMode, Path]] = []
        if layout.devices_v1 is not None:
            candidates.append((DeviceMode.CGROUP_V1, layout.devices_v1))
        if layout.unified is not None:
            candidates.append((DeviceMode.CGROUP_V2, layout.unified))
        if self._forced is not None:
            candidates = [c for c in candidates if c[0] is self._forced]
        problems: list[str] = []
        for mode, parent in candidates:
            base = parent / "dockyard"
            try:
                base.mkdir(parents=True, exist_ok=True)
                if mode is DeviceMode.CGROUP_V2:
                    self._probe_bpf(base)
            except OSError as exc:
                problems.append(f"{mode.value} at {base}: {exc.strerror or exc}")
                continue
            return mode, base
        if self._forced is not None:
            raise ExecError(
                f"device control by {self._forced.value} is not usable on this host"
                + (f" ({'; '.join(problems)})" if problems else "")
            )
        _warn_nodev("; ".join(problems) or "no cgroup v1 devices controller and no cgroup v2")
        return DeviceMode.NODEV, None

    def _probe_bpf(self, base: Path) -> None:
        """Load the default program and attach it to a probe cgroup (removed again):
        raises OSError when this host cannot."""
        probe = base / f"{self._key}-probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        try:
            self._attach(probe, (DENY_ALL, *DEFAULT_RULES))
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()

    def _attach(self, cgroup: Path, rules: Sequence[DeviceRule]) -> None:
        if self._bpf is None:
            self._bpf = _Bpf()
        program = self._bpf.program(compile_device_filter(rules))
        self._bpf.attach(program, cgroup)

    def create(self, container_id: str, rules: Sequence[DeviceRule]) -> Path | None:
        """The container's cgroup with ``rules`` in force, for the runtime to be started
        in (:func:`join_argv`); ``None`` when Dockyard makes none (the rules allow
        everything; the runtime's own cgroup; :attr:`DeviceMode.NODEV`). An
        :class:`~dockyard.core.ExecError` when it cannot be made (nothing is left
        then). Blocking."""
        mode = self.mode()
        if mode not in (DeviceMode.CGROUP_V1, DeviceMode.CGROUP_V2) or allows_everything(rules):
            return None
        assert self._base is not None
        path = self._base / f"{self._key}-{container_id}"
        try:
            path.mkdir()
        except OSError as exc:
            raise ExecError(f"cannot create device cgroup {path}: {exc.strerror}") from exc
        try:
            if mode is DeviceMode.CGROUP_V1:
                _write_v1(path, rules)
            else:
                self._attach(path, rules)
        except OSError as exc:
            self.remove(path)
            raise ExecError(
                f"cannot set the device rules of cgroup {path}: {exc.strerror or exc}"
            ) from exc
        return path

    def remove(self, path: Path) -> None:
        """Remove a container's cgroup once its processes are gone (they leave it as they
        finish exiting: a few short retries). One still busy is logged and left for
        :meth:`reap`. Blocking."""
        for attempt in range(_RMDIR_TRIES):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or attempt == _RMDIR_TRIES - 1:
                    _log.warning("removing device cgroup %s: %s", path, exc.strerror)
                    return
                time.sleep(_RMDIR_PAUSE)

    def reap(self) -> int:
        """Remove the container cgroups an earlier process left (only empty ones: a
        cgroup with a process in it cannot be removed). Returns how many. Blocking."""
        base = self.base
        if base is None:
            return 0
        removed = 0
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                if entry.name.startswith(f"{self._key}-") and entry.is_dir():
                    with contextlib.suppress(OSError):
                        entry.rmdir()
                        removed += 1
        return removed


_warned: list[bool] = []


def _warn_nodev(why: str) -> None:
    if not _warned:
        _warned.append(True)
        _log.warning(
            "no device cgroup (%s): build steps run without CAP_MKNOD, and their root"
            " and mounts are nodev, so that they cannot open device nodes",
            why,
        )


def _write_v1(path: Path, rules: Sequence[DeviceRule]) -> None:
    """Write the rules: the default must take (an error otherwise); an allow the
    parent's policy refuses is skipped (the device stays denied)."""
    files: dict[str, int] = {}
    try:
        for i, (name, line) in enumerate(v1_writes(rules)):
            fd = files.get(name)
            if fd is None:
                fd = files[name] = os.open(path / name, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            except OSError as exc:
                if i == 0 or name != "devices.allow" or exc.errno not in (errno.EPERM,):
                    raise
                _log.debug("device cgroup %s: %r not allowed by the parent", path, line)
    finally:
        for fd in files.values():
            os.close(fd)


_JOIN_SCRIPT = (
    '{ echo $$ > "$0/cgroup.procs"; } 2>/dev/null'
    ' || { printf \'{"level":"error","msg":"cannot enter the device cgroup %s"}\\n\' "$0"'
    ' >> "$1"; exit 1; }; shift; exec "$@"'
)


def join_argv(sh: str, cgroup: Path, log: Path, argv: Iterable[str]) -> list[str]:
    """``argv`` started inside ``cgroup``: ``sh`` writes its own pid to the cgroup's
    ``cgroup.procs`` and execs the command (same pid, so the runtime and its
    container init are in the cgroup from their first instruction). Should the write
    fail, the command does not run and the reason is appended to ``log`` as a runtime
    error in the runtimes' JSON log format."""
    return [sh, "-c", _JOIN_SCRIPT, str(cgroup), str(log), *argv]


# A process entering a cgroup waits for an RCU grace period (the kernel's
# cgroup_threadgroup_rwsem is taken for writing): ~5-12 ms on a 2-core VM, as long as
# crun itself takes to run a container. A spare joins its cgroup ahead of time, while
# the step before it runs, and waits for the bundle of the next container; the
# runtime it then execs is born in the cgroup. On end of file (its executor closed or
# its process gone) it leaves the cgroup and removes it.
_SPARE_SCRIPT = (
    '{ echo $$ > "$0/cgroup.procs"; } 2>/dev/null; joined=$?\n'
    "if ! IFS= read -r bundle; then\n"
    '  [ $joined = 0 ] && { echo $$ > "$0/../cgroup.procs"; } 2>/dev/null\n'
    '  rmdir "$0" 2>/dev/null; exit 0\n'
    "fi\n"
    '[ $joined = 0 ] || { printf \'{"level":"error","msg":"cannot enter the device cgroup %s"}\\n\''
    ' "$0" >> "$bundle/runtime.log"; exit 1; }\n'
    '. "$bundle/run.sh"\n'
)
SPARE_SCRIPT_NAME = "run.sh"
"""The file in a bundle that a spare sources (:func:`spare_script`)."""


def spare_argv(sh: str, cgroup: Path) -> list[str]:
    """A spare for ``cgroup``: ``sh`` enters it at once, then reads a bundle directory
    (one line) on its standard input and sources ``<bundle>/run.sh``
    (:func:`spare_script`), which execs the runtime. Should entering have
    failed, nothing runs and the reason goes to ``<bundle>/runtime.log`` as a runtime
    error. At end of file instead it leaves the cgroup, removes it and exits."""
    return [sh, "-c", _SPARE_SCRIPT, str(cgroup)]


def spare_script(argv: Sequence[str]) -> str:
    """The ``run.sh`` that makes a spare ``exec`` ``argv`` with its standard input from
    ``/dev/null`` (as a runtime started directly gets it)."""
    import shlex

    return f"exec {shlex.join(argv)} </dev/null\n"
