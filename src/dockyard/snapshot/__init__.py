"""Copy-on-write snapshots: the Snapshotter seam, overlayfs and native backends, mounts,
layer diff and apply.

``dockyard.snapshot.mount`` holds the in-process mount helper (``mount_all``,
``unmount``, ``mounted``).
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from .types import Info, Kind, LayerDiffer, LayerResult, Mount, Snapshotter, Usage

if TYPE_CHECKING:
    from ._base import BaseSnapshotter, disk_usage
    from ._copy import copy_tree, mirror_tree
    from ._native import NativeSnapshotter
    from ._overlay import OverlaySnapshotter
    from ._select import SnapshotterKind, new_snapshotter, overlay_supported

# The backends load on first use: the seam's values (Mount, Kind ...) stay cheap for the
# executor and the LLB solver, and a process that opens an overlayfs cache never loads
# the native backend (nor tar code until a layer is diffed or applied).
_LAZY = {
    "BaseSnapshotter": "._base",
    "disk_usage": "._base",
    "copy_tree": "._copy",
    "mirror_tree": "._copy",
    "NativeSnapshotter": "._native",
    "OverlaySnapshotter": "._overlay",
    "SnapshotterKind": "._select",
    "new_snapshotter": "._select",
    "overlay_supported": "._select",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


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
