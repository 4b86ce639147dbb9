"""Layer 1: OCI / Docker image-spec values.

Frozen values with ``to_json``/``to_bytes``/``from_json`` for descriptors, image
manifests, indexes (manifest lists) and image configs; media-type constants; choosing an
index entry for a platform. ``to_bytes`` is the canonical encoding (Go-compatible
:func:`canonical_json`); bytes received from elsewhere are kept and re-published as they
are, never re-encoded, because digests are over exact bytes.

Malformed documents raise :class:`dockyard.core.ContentError`.
"""

from ._config import ContainerConfig, Healthcheck, History, ImageConfig, format_timestamp
from ._descriptor import Descriptor, platform_from_json, platform_to_json
from ._json import canonical_json
from ._manifest import ImageIndex, ImageManifest, Manifest, manifest_media_type, parse_manifest
from ._mediatypes import MediaType
from ._platforms import platform_candidates, select_platform

__all__ = [
    "ContainerConfig",
    "Descriptor",
    "Healthcheck",
    "History",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "Manifest",
    "MediaType",
    "canonical_json",
    "format_timestamp",
    "manifest_media_type",
    "parse_manifest",
    "platform_candidates",
    "platform_from_json",
    "platform_to_json",
    "select_platform",
]
