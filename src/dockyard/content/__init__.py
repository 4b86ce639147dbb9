"""Content-addressed blobs: the store (atomic, verified writes; leases; GC) and OCI image
layouts (directories and tarballs) read and written."""

from ._layout import LAYOUT_VERSION, REF_NAME_ANNOTATION, OCILayout, children, write_oci_layout
from ._store import CHUNK, BlobInfo, ContentStore, GCResult, Writer

__all__ = [
    "CHUNK",
    "LAYOUT_VERSION",
    "REF_NAME_ANNOTATION",
    "BlobInfo",
    "ContentStore",
    "GCResult",
    "OCILayout",
    "Writer",
    "children",
    "write_oci_layout",
]
