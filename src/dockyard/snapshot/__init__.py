"""Copy-on-write snapshots: the Snapshotter seam, overlayfs and native backends, mounts,
layer diff and apply.

``dockyard.snapshot.mount`` (ctypes) is imported on its own by whoever mounts.
"""

from .types import Info, Kind, Mount, Snapshotter, Usage

__all__ = ["Info", "Kind", "Mount", "Snapshotter", "Usage"]
