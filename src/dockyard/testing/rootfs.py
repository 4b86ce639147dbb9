"""A minimal busybox root filesystem for tests, made from Debian's ``busybox-static``.

No registry, no download: the host's static ``/bin/busybox`` is copied in, every applet
gets a symlink (``/bin/sh``, ``/bin/ls``, ``/sbin/ip`` ...), and ``/etc/passwd`` and
``/etc/group`` list a few users and groups tests can rely on:

====== ===== ===== ===================================================
user   uid   gid   supplementary groups (by membership in /etc/group)
====== ===== ===== ===================================================
root   0     0     —
daemon 1     1     —
app    1000  1000  wheel (10), staff (50)
nobody 65534 65534 —
====== ===== ===== ===================================================

Every file gets the same mtime (``epoch``), so two trees made from the same busybox are
identical in content, modes and times.

For another architecture (multi-platform tests under QEMU emulation) the busybox is
Debian's ``busybox-static`` of that architecture, which ``scripts/setup`` fetches with
``apt-get download busybox-static:arm64`` and unpacks into :data:`FOREIGN_BUSYBOX_DIR`
(``<dir>/<arch>/busybox``; see :func:`busybox_for`). The package cannot be installed
beside the host's (both own ``/bin/busybox``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dockyard.core import NotFoundError, Platform, host_platform

__all__ = [
    "BUSYBOX",
    "FOREIGN_BUSYBOX_DIR",
    "GROUP",
    "PASSWD",
    "busybox_for",
    "make_busybox_rootfs",
]

BUSYBOX = Path("/bin/busybox")
"""Debian's ``busybox-static`` binary (``apt-get install busybox-static``)."""

FOREIGN_BUSYBOX_DIR = Path(
    os.environ.get("DOCKYARD_FOREIGN_BUSYBOX_DIR") or "/usr/local/lib/dockyard/busybox-static"
)
"""Where ``scripts/setup`` unpacks ``busybox-static`` of other architectures
(``<dir>/arm64/busybox``); ``$DOCKYARD_FOREIGN_BUSYBOX_DIR`` overrides it."""


def busybox_for(platform: Platform) -> Path:
    """The static busybox binary for ``platform``: the host's :data:`BUSYBOX` for its own
    architecture, ``FOREIGN_BUSYBOX_DIR/<arch>/busybox`` for another (it may be missing)."""
    if platform.architecture == host_platform().architecture:
        return BUSYBOX
    return FOREIGN_BUSYBOX_DIR / platform.architecture / "busybox"


PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app user:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
tty:x:5:
wheel:x:10:app
staff:x:50:app,daemon
app:x:1000:
nogroup:x:65534:
"""

_DIRS = (
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "usr/local/bin",
    "etc",
    "root",
    "home/app",
    "var/tmp",
    "tmp",
    "proc",
    "sys",
    "dev",
    "run",
)


def make_busybox_rootfs(dest: Path, *, busybox: Path = BUSYBOX, epoch: int = 1704067200) -> Path:
    """Fill ``dest`` (made if missing; must be empty) with a busybox system; returns it.

    Raises :class:`NotFoundError` when ``busybox`` is missing (install
    ``busybox-static``; the test suite needs it and must not skip without it). The
    applets are those ``busybox --list-full`` names; a busybox of another architecture
    runs through binfmt_misc emulation, or, when the host has none, the host's busybox
    (the same Debian release) lists them.
    """
    if not busybox.is_file():
        raise NotFoundError(f"{busybox} not found: install Debian's busybox-static package")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    for d in _DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    try:
        listing = subprocess.run(
            [str(busybox), "--list-full"], check=True, capture_output=True, text=True
        )
    except OSError:  # ENOEXEC: another architecture and no emulator registered
        listing = subprocess.run(
            [str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
        )
    applets = listing.stdout.split()
    for applet in applets:
        if applet == "bin/busybox":
            continue
        link = dest / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() and not link.exists():
            link.symlink_to("/bin/busybox")
    if not (dest / "bin/sh").is_symlink():
        raise NotFoundError(f"{busybox} has no sh applet")
    etc = dest / "etc"
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(etc / "shadow", 0o600)
    for name in ("hosts", "resolv.conf", "hostname"):
        (etc / name).write_text("")
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "var/tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    if os.geteuid() == 0:
        os.chown(dest / "home/app", 1000, 1000)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(dest, (epoch, epoch))
    return dest
