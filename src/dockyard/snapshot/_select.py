"""Choosing a snapshotter: overlayfs where it works, the native copier otherwise."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dockyard.core import ConfigError

from .mount import MountError, mount_all, unmount
from .types import Mount

if TYPE_CHECKING:
    from ._native import NativeSnapshotter
    from ._overlay import OverlaySnapshotter

__all__ = ["SnapshotterKind", "new_snapshotter", "overlay_supported"]

SnapshotterKind = Literal["auto", "overlayfs", "native"]
_probed: dict[int, bool] = {}
_MARKER = "snapshotter"


def overlay_supported(directory: Path) -> bool:
    """Whether an overlay with an upperdir on ``directory``'s file system mounts here.

    Probed once per file system per process with a real mount (needs privileges,
    the overlay module, and an upperdir-capable file system).
    """
    directory.mkdir(parents=True, exist_ok=True)
    dev = os.stat(directory).st_dev
    if dev in _probed:
        return _probed[dev]
    ok = False
    probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=directory))
    try:
        for name in ("l1", "l2", "u", "w", "m"):
            (probe / name).mkdir()
        m = Mount(
            type="overlay",
            source="overlay",
            options=(
                f"lowerdir={probe / 'l1'}:{probe / 'l2'}",
                f"upperdir={probe / 'u'}",
                f"workdir={probe / 'w'}",
            ),
        )
        try:
            mount_all([m], probe / "m")
        except MountError:
            ok = False
        else:
            ok = True
            unmount(probe / "m")
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    _probed[dev] = ok
    return ok


def new_snapshotter(
    state_dir: Path, kind: SnapshotterKind = "auto", *, remove_orphans: bool = True
) -> OverlaySnapshotter | NativeSnapshotter:
    """The snapshotter for ``<state_dir>/snapshots``.

    ``auto`` keeps whichever kind the directory was made with, and for a new directory
    picks overlayfs when :func:`overlay_supported`, else native. Asking for a kind other
    than the one the directory holds raises :class:`ConfigError`. ``remove_orphans``:
    see :meth:`BaseSnapshotter.remove_orphans`.
    """
    if kind not in ("auto", "overlayfs", "native"):
        raise ConfigError(f"unknown snapshotter {kind!r}: expected auto, overlayfs or native")
    root = Path(state_dir) / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    marker = root / _MARKER
    recorded = marker.read_text().strip() if marker.exists() else None
    if recorded is not None and kind != "auto" and kind != recorded:
        raise ConfigError(
            f"{root} holds {recorded} snapshots; it cannot be used with the {kind} snapshotter"
        )
    chosen = recorded or kind
    if chosen == "auto":
        chosen = "overlayfs" if overlay_supported(root) else "native"
    if recorded is None:
        tmp = root / f".{_MARKER}.tmp"
        tmp.write_text(chosen + "\n")
        os.replace(tmp, marker)
    if chosen == "overlayfs":
        from ._overlay import OverlaySnapshotter

        return OverlaySnapshotter(root, remove_orphans=remove_orphans)
    from ._native import NativeSnapshotter

    return NativeSnapshotter(root, remove_orphans=remove_orphans)
