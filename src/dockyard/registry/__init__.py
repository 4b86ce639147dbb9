"""Layer 4: an OCI distribution (registry) client.

Light parts load eagerly: image references (:class:`Reference`), registry settings
(:class:`RegistryConfig`), credentials values and the seams in :mod:`.types`. The client
itself (:class:`RegistryClient`, built on httpx) and the docker-config credentials
provider load on first use, so that parsing a reference costs no HTTP stack.

Errors: :class:`~dockyard.core.NotFoundError` (``image not found: <ref>``),
:class:`~dockyard.core.AuthError` naming the registry, :class:`~dockyard.core.ContentError`
for digest/size mismatches, :class:`~dockyard.core.RegistryError` for the rest
(:class:`TransientRegistryError` when it may pass), :class:`InvalidReferenceError` for
references that do not parse.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._challenge import Challenge, merge_scopes, parse_challenges, repository_scope
from ._config import Endpoint, HostConfig, RegistryConfig, is_loopback, normalize_host
from ._reference import DOCKER_HUB, InvalidReferenceError, Reference
from ._retry import RegistryStatistics, RetryPolicy, TransientRegistryError
from ._tagcheck import TagCheck, tag_check, tag_unchanged
from .types import BlobReader, BlobSink, Credentials, CredentialsProvider

if TYPE_CHECKING:
    from ._blobs import BytesReader, BytesSink, FileReader, FileSink
    from ._client import FetchedManifest, PushOutcome, RegistryClient, ResolvedImage
    from ._dockerconfig import DockerConfigCredentials, StaticCredentials, docker_config_path

_LAZY = {
    "BytesReader": "._blobs",
    "BytesSink": "._blobs",
    "FileReader": "._blobs",
    "FileSink": "._blobs",
    "FetchedManifest": "._client",
    "PushOutcome": "._client",
    "RegistryClient": "._client",
    "ResolvedImage": "._client",
    "DockerConfigCredentials": "._dockerconfig",
    "StaticCredentials": "._dockerconfig",
    "docker_config_path": "._dockerconfig",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "DOCKER_HUB",
    "BlobReader",
    "BlobSink",
    "BytesReader",
    "BytesSink",
    "Challenge",
    "Credentials",
    "CredentialsProvider",
    "DockerConfigCredentials",
    "Endpoint",
    "FetchedManifest",
    "FileReader",
    "FileSink",
    "HostConfig",
    "InvalidReferenceError",
    "PushOutcome",
    "Reference",
    "RegistryClient",
    "RegistryConfig",
    "RegistryStatistics",
    "ResolvedImage",
    "RetryPolicy",
    "StaticCredentials",
    "TagCheck",
    "TransientRegistryError",
    "docker_config_path",
    "is_loopback",
    "merge_scopes",
    "normalize_host",
    "parse_challenges",
    "repository_scope",
    "tag_check",
    "tag_unchanged",
]
