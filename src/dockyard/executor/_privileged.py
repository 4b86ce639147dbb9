"""The device nodes an insecure step finds in its ``/dev``.

``security=insecure`` is the counterpart of ``docker run --privileged``: every device is
allowed (the spec's rules), and, as BuildKit's insecure spec does, the runtime also
makes nodes for the devices that privileged build steps commonly need: ``/dev/kmsg``,
``/dev/cuse``, ``/dev/fuse``, ``/dev/kvm``, ``/dev/net/tun``, ``/dev/loop-control`` and
the loop devices ``/dev/loop0`` up to seven past the first free one. ``losetup``, FUSE
mounts, nested virtual machines and TUN devices then work without a ``mknod`` of the
step's own. A node for a device this host lacks opens with ``ENXIO``/``ENODEV``, as it
would on the host.

There are none when this process runs in a user namespace, where a runtime cannot make
device nodes (BuildKit skips them there too). The first free loop device is asked of
``/dev/loop-control`` (``LOOP_CTL_GET_FREE``, which makes one when none is free); when
that fails the nodes stop at ``/dev/loop7``. Nodes are ``0666`` and root's, runc's
default for a spec device without a mode, given explicitly so that every runtime makes
them alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["PRIVILEGED_NODES", "in_user_namespace", "privileged_devices"]

#: (path, major, minor) of the character devices an insecure step gets.
PRIVILEGED_NODES: tuple[tuple[str, int, int], ...] = (
    ("/dev/kmsg", 1, 11),
    ("/dev/cuse", 10, 203),
    ("/dev/fuse", 10, 229),
    ("/dev/kvm", 10, 232),
    ("/dev/net/tun", 10, 200),
    ("/dev/loop-control", 10, 237),
)

_LOOP_MAJOR = 7
_EXTRA_LOOPS = 7
_LOOP_CTL_GET_FREE = 0x4C82
_MODE = 0o666


def in_user_namespace(uid_map: str | None = None) -> bool:
    """Whether this process runs in a user namespace: its ``uid_map`` is not the whole
    identity mapping of the initial namespace (``uid_map``: the file's text, for tests)."""
    if uid_map is None:
        try:
            with open("/proc/self/uid_map", encoding="ascii") as f:
                uid_map = f.read()
        except OSError:
            return False
    return uid_map.split() != ["0", "0", "4294967295"]


def first_free_loop() -> int | None:
    """The number of the first free loop device (the kernel makes one when none is
    free), or ``None`` when ``/dev/loop-control`` cannot tell."""
    import fcntl

    try:
        fd = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        number = fcntl.ioctl(fd, _LOOP_CTL_GET_FREE)
    except OSError:
        return None
    finally:
        os.close(fd)
    return number if number >= 0 else None


def privileged_devices(
    *,
    userns: Callable[[], bool] = in_user_namespace,
    free_loop: Callable[[], int | None] = first_free_loop,
) -> list[dict[str, Any]]:
    """The spec's ``linux.devices`` entries for an insecure step (blocking: asks
    ``/dev/loop-control``). ``userns`` and ``free_loop`` are seams for tests."""
    if userns():
        return []
    devices = [_node(path, "c", major, minor) for path, major, minor in PRIVILEGED_NODES]
    last = (free_loop() or 0) + _EXTRA_LOOPS
    devices += [_node(f"/dev/loop{i}", "b", _LOOP_MAJOR, i) for i in range(last + 1)]
    return devices


def _node(path: str, kind: str, major: int, minor: int) -> dict[str, Any]:
    return {
        "path": path,
        "type": kind,
        "major": major,
        "minor": minor,
        "fileMode": _MODE,
        "uid": 0,
        "gid": 0,
    }
