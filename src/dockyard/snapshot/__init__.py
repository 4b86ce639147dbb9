"""Copy-on-write snapshots: the Snapshotter seam, overlayfs and native backends, mounts,
layer diff and apply.

``dockyard.snapshot.mount`` holds the in-process mount helper (``mount_all``,
``unmount``, ``mounted``).
"""

from ._base import BaseSnapshotter, LayerResult, disk_usage
from ._native import NativeSnapshotter
from ._overlay import OverlaySnapshotter
from ._select import SnapshotterKind, new_snapshotter, overlay_supported
from .types import Info, Kind, Mount, Snapshotter, Usage

__all__ = [
    "BaseSnapshotter",
    "Info",
    "Kind",
    "LayerResult",
    "Mount",
    "NativeSnapshotter",
    "OverlaySnapshotter",
    "Snapshotter",
    "SnapshotterKind",
    "Usage",
    "disk_usage",
    "new_snapshotter",
    "overlay_supported",
]
