"""Mounting :class:`~dockyard.snapshot.types.Mount` specs with mount(2), in-process.

A ``mount`` process costs ~3 ms; the system call ~0.3 ms, so everything here calls the
kernel directly through ctypes (the C library's ``mount``/``umount2`` and, for the new
mount API, ``syscall``).

Overlay mounts whose option string does not fit in one page (the limit of mount(2)'s
``data``) go through the new mount API instead: ``fsopen("overlay")`` and one
``fsconfig(lowerdir+)`` per layer (Linux ≥ 6.8). On older kernels the layers are given as
short paths relative to their common parent directory by a ``mount`` process started in
that directory (containerd's trick). The kernel limits an overlay to 500 lower layers
whatever the API; snapshotters flatten deeper chains before they get here.

Every failure raises :class:`MountError` naming the target and the mount.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError

from .types import Mount

__all__ = [
    "MAX_OVERLAY_LOWERS",
    "MountError",
    "MountInfo",
    "is_mountpoint",
    "mount_all",
    "mounted",
    "mountpoints_under",
    "parse_mountinfo",
    "readable",
    "readonly_mounts",
    "unmount",
]

MAX_OVERLAY_LOWERS = 500
"""The kernel's limit on overlay lower layers (``OVL_MAX_STACK``)."""

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# mount(2) flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# new mount API (linux/mount.h); the syscall numbers are the same on every architecture
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_MOUNT_SETATTR = 442
AT_RECURSIVE = 0x8000
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_NODIRATIME = 0x80
MOVE_MOUNT_F_EMPTY_PATH = 0x4

# option -> (clear?, flag); clear=True means the option removes the flag
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}
_PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
_ATTR_OF_FLAG = {
    MS_RDONLY: MOUNT_ATTR_RDONLY,
    MS_NOSUID: MOUNT_ATTR_NOSUID,
    MS_NODEV: MOUNT_ATTR_NODEV,
    MS_NOEXEC: MOUNT_ATTR_NOEXEC,
    MS_NOATIME: MOUNT_ATTR_NOATIME,
    MS_NODIRATIME: MOUNT_ATTR_NODIRATIME,
}


class MountError(DockyardError):
    """A mount or unmount failed; the message names the target and the mount."""

    def __init__(self, message: str, *, errno_: int = 0) -> None:
        super().__init__(message)
        self.errno = errno_


@dataclass(frozen=True, slots=True)
class _Parsed:
    flags: int
    propagation: int
    data: tuple[str, ...]


def _parse(options: Sequence[str]) -> _Parsed:
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return _Parsed(flags, propagation, tuple(data))


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.mount = libc.mount
        self.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        self.mount.restype = ctypes.c_int
        self.umount2 = libc.umount2
        self.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.umount2.restype = ctypes.c_int
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long


_libc_cache: list[_Libc] = []


def _libc() -> _Libc:
    if not _libc_cache:
        _libc_cache.append(_Libc())
    return _libc_cache[0]


def _describe(m: Mount) -> str:
    opts = ",".join(m.options)
    if len(opts) > 300:
        opts = opts[:300] + f"...({len(opts)} chars)"
    return f"{m.type} {m.source} ({opts})" if opts else f"{m.type} {m.source}"


def _fail(what: str, target: Path, m: Mount | None, err: int, detail: str = "") -> MountError:
    msg = f"{what} {target}"
    if m is not None:
        msg += f" [{_describe(m)}]"
    msg += f": {os.strerror(err)}"
    if detail:
        msg += f" ({detail})"
    return MountError(msg, errno_=err)


def _sys_mount(source: str, target: Path, fstype: str | None, flags: int, data: str | None) -> int:
    rc = _libc().mount(
        os.fsencode(source),
        os.fsencode(target),
        fstype.encode() if fstype else None,
        flags,
        os.fsencode(data) if data else None,
    )
    return 0 if rc == 0 else ctypes.get_errno()


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    """Mount each spec onto ``target`` in order (later mounts stack on earlier ones).

    On failure, whatever this call mounted is unmounted again before :class:`MountError`
    is raised.
    """
    done = 0
    try:
        for m in mounts:
            _mount_one(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            with contextlib.suppress(MountError):
                _umount_once(target, detach=True)
        raise


def _mount_one(m: Mount, target: Path) -> None:
    parsed = _parse(m.options)
    if m.type == "overlay":
        _mount_overlay(m, parsed, target)
    elif m.type == "bind" or parsed.flags & MS_BIND:
        _mount_bind(m, parsed, target)
    else:
        err = _sys_mount(m.source, target, m.type, parsed.flags, ",".join(parsed.data) or None)
        if err:
            raise _fail("mount", target, m, err)
    if parsed.propagation:
        err = _sys_mount("", target, None, parsed.propagation, None)
        if err:
            _umount_once(target, detach=True)
            raise _fail("set propagation of", target, m, err)


def _mount_bind(m: Mount, parsed: _Parsed, target: Path) -> None:
    flags = parsed.flags | MS_BIND
    err = _sys_mount(m.source, target, None, flags & (MS_BIND | MS_REC), None)
    if err:
        raise _fail("bind mount", target, m, err)
    # A bind mount ignores every other flag; they take effect on a remount.
    extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if extra and flags & MS_REC and _setattr_recursive(target, extra):
        return  # every sub-mount got the flags too (``ro`` on an ``rbind`` is recursive)
    if extra:
        err = _sys_mount("", target, None, MS_REMOUNT | MS_BIND | extra, None)
        if err:
            _umount_once(target, detach=True)
            raise _fail("remount", target, m, err)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _setattr_recursive(target: Path, flags: int) -> bool:
    """mount_setattr(2) with AT_RECURSIVE; False where the kernel lacks it."""
    attrs = 0
    for flag, attr in _ATTR_OF_FLAG.items():
        if flags & flag:
            attrs |= attr
    if flags & ~sum(_ATTR_OF_FLAG) or not attrs:
        return False  # a flag mount_setattr cannot set: use a remount
    mattr = _MountAttr(attrs, 0, 0, 0)
    rc: int = _libc().syscall(
        _SYS_MOUNT_SETATTR,
        -100,  # AT_FDCWD
        os.fsencode(target),
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(mattr),
        ctypes.c_size_t(ctypes.sizeof(mattr)),
    )
    return rc == 0


def _split_lowers(value: str) -> list[str]:
    """Split an overlay ``lowerdir`` list on ``:`` that are not escaped with ``\\``."""
    out: list[str] = []
    cur: list[str] = []
    it = iter(value)
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p for p in out if p]


def _mount_overlay(m: Mount, parsed: _Parsed, target: Path) -> None:
    lowers: list[str] = []
    rest: list[str] = []
    for opt in parsed.data:
        if opt.startswith("lowerdir="):
            lowers.extend(_split_lowers(opt[len("lowerdir=") :]))
        else:
            rest.append(opt)
    has_upper = any(o.startswith("upperdir=") for o in rest)
    if len(lowers) == 1 and not has_upper:
        # overlayfs needs two lowers without an upper: a read-only bind is the same tree.
        _mount_bind(
            Mount(type="bind", source=lowers[0], options=("rbind", "ro")),
            _parse(("rbind", "ro")),
            target,
        )
        return
    if len(lowers) > MAX_OVERLAY_LOWERS:
        raise MountError(
            f"mount overlay on {target}: {len(lowers)} lower layers exceed the kernel's "
            f"limit of {MAX_OVERLAY_LOWERS}"
        )
    data = ",".join(([f"lowerdir={':'.join(_escape(p) for p in lowers)}"] if lowers else []) + rest)
    if len(os.fsencode(data)) < _PAGE:
        err = _sys_mount(m.source or "overlay", target, "overlay", parsed.flags, data)
        if err:
            raise _fail("mount", target, m, err)
        return
    try:
        _overlay_new_api(m, parsed.flags, lowers, rest, target)
    except _NewApiUnsupported:
        _overlay_relative(m, lowers, target)


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


class _NewApiUnsupported(Exception):
    pass


def _fs_log(fd: int) -> str:
    """Messages the kernel left in an fs context (read(2) on the fsopen fd)."""
    lines: list[str] = []
    os.set_blocking(fd, False)
    for _ in range(16):
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        lines.append(chunk.decode(errors="replace").strip())
    return "; ".join(lines)


def _overlay_new_api(
    m: Mount, flags: int, lowers: list[str], rest: list[str], target: Path
) -> None:
    libc = _libc()
    sc = libc.syscall
    fsfd = sc(_SYS_FSOPEN, b"overlay", ctypes.c_uint(FSOPEN_CLOEXEC))
    if fsfd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM):
            raise _NewApiUnsupported
        raise _fail("fsopen overlay for", target, m, err)
    try:

        def config(key: str, value: str | None) -> int:
            if value is None:
                rc = sc(_SYS_FSCONFIG, fsfd, FSCONFIG_SET_FLAG, key.encode(), None, 0)
            else:
                rc = sc(
                    _SYS_FSCONFIG,
                    fsfd,
                    FSCONFIG_SET_STRING,
                    key.encode(),
                    os.fsencode(value),
                    0,
                )
            return 0 if rc == 0 else ctypes.get_errno()

        for i, lower in enumerate(lowers):
            err = config("lowerdir+", lower)
            if err:
                if i == 0 and err == errno.EINVAL:
                    # kernels before 6.8 do not know lowerdir+
                    raise _NewApiUnsupported
                raise _fail("fsconfig lowerdir+ " + lower + " for", target, m, err, _fs_log(fsfd))
        for opt in rest:
            key, eq, value = opt.partition("=")
            err = config(key, value if eq else None)
            if err:
                raise _fail(f"fsconfig {opt} for", target, m, err, _fs_log(fsfd))
        if sc(_SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0) != 0:
            err = ctypes.get_errno()
            raise _fail("create overlay for", target, m, err, _fs_log(fsfd))
        attrs = 0
        for flag, attr in _ATTR_OF_FLAG.items():
            if flags & flag:
                attrs |= attr
        mfd = sc(_SYS_FSMOUNT, fsfd, ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attrs))
        if mfd < 0:
            raise _fail("fsmount overlay for", target, m, ctypes.get_errno(), _fs_log(fsfd))
        try:
            rc = sc(
                _SYS_MOVE_MOUNT,
                mfd,
                b"",
                -100,  # AT_FDCWD
                os.fsencode(target),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            )
            if rc != 0:
                raise _fail("move_mount overlay to", target, m, ctypes.get_errno())
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


def _overlay_relative(m: Mount, lowers: list[str], target: Path) -> None:
    """Old kernels: lower paths relative to their common parent, mounted from there."""
    common = os.path.commonpath([os.path.abspath(p) for p in lowers])
    if os.path.isdir(common) and common in lowers:
        common = os.path.dirname(common)
    rel = [os.path.relpath(os.path.abspath(p), common) for p in lowers]
    opts = [f"lowerdir={':'.join(_escape(p) for p in rel)}"]
    opts += [o for o in m.options if not o.startswith("lowerdir=")]
    data = ",".join(opts)
    if len(data.encode()) >= _PAGE:
        raise MountError(
            f"mount overlay on {target}: the lower layer list ({len(lowers)} layers) does not "
            "fit in one page even as relative paths, and this kernel lacks fsconfig lowerdir+"
        )
    import subprocess  # old kernels only

    proc = subprocess.run(
        ["mount", "-t", "overlay", m.source or "overlay", "-o", data, os.fspath(target)],
        cwd=common,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise MountError(
            f"mount {target} [{_describe(m)}]: {proc.stderr.strip() or 'mount failed'}"
        )


def _umount_once(target: Path, *, detach: bool) -> int:
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if detach else 0)
    rc = _libc().umount2(os.fsencode(target), flags)
    return 0 if rc == 0 else ctypes.get_errno()


def _unescape_mountinfo(field: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class MountInfo:
    """One line of ``/proc/self/mountinfo``: the mounted file system's ``root``, the
    mount ``point`` (both unescaped), its ``fstype`` and its super block's options."""

    root: str
    point: str
    fstype: str
    super_options: tuple[str, ...]


def parse_mountinfo(text: str) -> list[MountInfo]:
    """The entries of ``text`` (a ``/proc/<pid>/mountinfo``), in mount order; malformed
    lines are skipped."""
    out: list[MountInfo] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split(" ")
        rest = right.split(" ")
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        out.append(
            MountInfo(
                root=_unescape_mountinfo(fields[3]),
                point=_unescape_mountinfo(fields[4]),
                fstype=rest[0],
                super_options=tuple(rest[2].split(",")),
            )
        )
    return out


def mountpoints_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` in this mount namespace, in mount order."""
    prefix = os.path.abspath(root)
    out: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if len(fields) < 5:
                continue
            mp = _unescape_mountinfo(fields[4])
            if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                out.append(Path(mp))
    return out


def is_mountpoint(path: Path) -> bool:
    """Whether something is mounted exactly at ``path``."""
    return Path(os.path.abspath(path)) in mountpoints_under(path)


def unmount(target: Path, *, detach: bool = False) -> None:
    """Unmount everything mounted at or below ``target`` (stacked mounts included).

    Sub-mounts (from ``rbind`` or mounts made inside) go first, deepest first. A busy
    mount is retried for a short while; ``detach`` makes it a lazy unmount instead
    (``MNT_DETACH``). Unmounting a path where nothing is mounted is not an error.
    """
    deadline = time.monotonic() + 2.0
    while True:
        err = _umount_once(target, detach=detach)
        if err == 0:
            continue  # maybe another mount is stacked on the same target
        if err in (errno.EINVAL, errno.ENOENT):
            return
        if err == errno.EBUSY:
            subs = [p for p in mountpoints_under(target) if p != Path(os.path.abspath(target))]
            if subs:
                for sub in reversed(subs):
                    unmount(sub, detach=detach)
                continue
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
        raise _fail("unmount", target, None, err)


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], *, parent: Path | None = None) -> Iterator[Path]:
    """Mount ``mounts`` on a fresh temporary directory; unmount and remove it on exit."""
    target = Path(tempfile.mkdtemp(prefix="dockyard-mnt-", dir=parent))
    try:
        mount_all(mounts, target)
        try:
            yield target
        finally:
            unmount(target)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)


def readonly_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """Read-only versions of snapshot mounts: binds get ``ro``; a writable overlay
    becomes a read-only one whose top lower layer is the upperdir (no workdir), which
    may be mounted while the writable one is in use elsewhere."""
    out: list[Mount] = []
    for m in mounts:
        if m.type == "overlay":
            lowers: list[str] = []
            rest: list[str] = []
            upper = None
            for opt in m.options:
                if opt.startswith("lowerdir="):
                    lowers = _split_lowers(opt[len("lowerdir=") :])
                elif opt.startswith("upperdir="):
                    upper = opt[len("upperdir=") :]
                elif opt.startswith("workdir=") or opt in ("rw", "ro"):
                    continue
                else:
                    rest.append(opt)
            if upper is not None:
                lowers.insert(0, upper)
            lowerdir = "lowerdir=" + ":".join(_escape(d) for d in lowers)
            out.append(Mount(type="overlay", source=m.source, options=(lowerdir, *rest, "ro")))
        else:
            opts = tuple(o for o in m.options if o not in ("rw", "ro"))
            out.append(Mount(type=m.type, source=m.source, options=(*opts, "ro")))
    return out


@contextlib.contextmanager
def readable(mounts: Sequence[Mount]) -> Iterator[Path]:
    """The tree of read-only ``mounts`` for reading from this process: a single bind is
    read in place (no mount at all), anything else is mounted on a temporary directory
    for the duration. Blocking: call from a thread."""
    if len(mounts) == 1 and mounts[0].type == "bind":
        yield Path(mounts[0].source)
        return
    with mounted(mounts) as root:
        yield root
