"""Content-addressed blobs: the store (atomic, verified writes; leases; GC), OCI image
layouts (directories and tarballs) read and written, and the local image store (names →
manifest descriptors, :class:`ImageStore`)."""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._images import DANGLING_PREFIX, Image, ImageStore, LocalImage, dangling_name
from ._store import CHUNK, BlobInfo, ContentStore, GCResult, Writer

if TYPE_CHECKING:
    from ._layout import LAYOUT_VERSION, REF_NAME_ANNOTATION, OCILayout, children, write_oci_layout

# OCI layouts (and tarfile) load when a build reads or writes one
_LAZY = dict.fromkeys(
    ("LAYOUT_VERSION", "REF_NAME_ANNOTATION", "OCILayout", "children", "write_oci_layout"),
    "._layout",
)

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CHUNK",
    "DANGLING_PREFIX",
    "LAYOUT_VERSION",
    "REF_NAME_ANNOTATION",
    "BlobInfo",
    "ContentStore",
    "GCResult",
    "Image",
    "ImageStore",
    "LocalImage",
    "OCILayout",
    "Writer",
    "children",
    "dangling_name",
    "write_oci_layout",
]
