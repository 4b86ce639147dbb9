"""Layer 4: an OCI distribution (registry) client.

Every name loads with its module on first use: parsing a reference costs no HTTP stack,
and ``dockyard build``'s replay of a no-op (which asks a registry whether a tag moved
with :func:`tag_unchanged`, standard library only) loads nothing else of the package.

Errors: :class:`~dockyard.core.NotFoundError` (``image not found: <ref>``),
:class:`~dockyard.core.AuthError` naming the registry, :class:`~dockyard.core.ContentError`
for digest/size mismatches, :class:`~dockyard.core.RegistryError` for the rest
(:class:`TransientRegistryError` when it may pass), :class:`InvalidReferenceError` for
references that do not parse.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

if TYPE_CHECKING:
    from ._blobs import BytesReader, BytesSink, FileReader, FileSink
    from ._challenge import Challenge, merge_scopes, parse_challenges, repository_scope
    from ._client import FetchedManifest, PushOutcome, RegistryClient, ResolvedImage
    from ._config import Endpoint, HostConfig, RegistryConfig, is_loopback, normalize_host
    from ._dockerconfig import DockerConfigCredentials, StaticCredentials, docker_config_path
    from ._proxy import ProxyRouter
    from ._proxyenv import ProxyConfig
    from ._reference import DOCKER_HUB, InvalidReferenceError, Reference
    from ._retry import RegistryStatistics, RetryPolicy, TransientRegistryError
    from ._tagcheck import TagCheck, tag_check, tag_unchanged
    from .types import BlobReader, BlobSink, Credentials, CredentialsProvider

_LAZY = {
    "Challenge": "._challenge",
    "merge_scopes": "._challenge",
    "parse_challenges": "._challenge",
    "repository_scope": "._challenge",
    "Endpoint": "._config",
    "HostConfig": "._config",
    "RegistryConfig": "._config",
    "is_loopback": "._config",
    "normalize_host": "._config",
    "DOCKER_HUB": "._reference",
    "InvalidReferenceError": "._reference",
    "Reference": "._reference",
    "RegistryStatistics": "._retry",
    "RetryPolicy": "._retry",
    "TransientRegistryError": "._retry",
    "TagCheck": "._tagcheck",
    "tag_check": "._tagcheck",
    "tag_unchanged": "._tagcheck",
    "BlobReader": ".types",
    "BlobSink": ".types",
    "Credentials": ".types",
    "CredentialsProvider": ".types",
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
    "ProxyRouter": "._proxy",
    "ProxyConfig": "._proxyenv",
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
    "ProxyConfig",
    "ProxyRouter",
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
