"""Content-addressed blobs: the store (atomic, verified writes; leases; GC), OCI image
layouts (directories and tarballs) read and written, and the local image store (names →
manifest descriptors, :class:`ImageStore`)."""

from ._images import DANGLING_PREFIX, Image, ImageStore, LocalImage, dangling_name
from ._layout import LAYOUT_VERSION, REF_NAME_ANNOTATION, OCILayout, children, write_oci_layout
from ._store import CHUNK, BlobInfo, ContentStore, GCResult, Writer

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
