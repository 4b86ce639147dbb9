"""Copy-on-write snapshots: the Snapshotter seam, overlayfs and native backends, mounts,
layer diff and apply.

``dockyard.snapshot.mount`` holds the in-process mount helper (``mount_all``,
``unmount``, ``mounted``).
"""

from ._base import BaseSnapshotter, disk_usage
from ._copy import copy_tree, mirror_tree
from ._native import NativeSnapshotter
from ._overlay import OverlaySnapshotter
from ._select import SnapshotterKind, new_snapshotter, overlay_supported
from .types import Info, Kind, LayerDiffer, LayerResult, Mount, Snapshotter, Usage

__all__ = [
    "BaseSnapshotter",
    "Info",
    "Kind",
    "LayerDiffer",
    "LayerResult",
    "Mount",
    "NativeSnapshotter",
    "OverlaySnapshotter",
    "Snapshotter",
    "SnapshotterKind",
    "Usage",
    "copy_tree",
    "disk_usage",
    "mirror_tree",
    "new_snapshotter",
    "overlay_supported",
]
