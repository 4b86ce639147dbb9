"""Plugins by key, wired in one place: sources by scheme, frontends by name, the image
metadata resolver of the Dockerfile frontend, and the roots of blob garbage collection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.cache import CacheManager
    from dockyard.content import ContentStore
    from dockyard.core import Digest
    from dockyard.dockerfile import ImageMetaResolver
    from dockyard.frontend import Frontends
    from dockyard.llbsolver import SourceResolver
    from dockyard.session import SessionManager

    from ._config import EngineConfig
    from ._engine import Engine

__all__ = ["blob_roots", "frontends", "image_resolver", "sources"]


def frontends() -> Frontends:
    """``dockerfile.v0`` and ``python``."""
    from dockyard.frontend import (
        DOCKERFILE_FRONTEND,
        PYTHON_FRONTEND,
        DockerfileFrontend,
        Frontends,
        PythonFrontend,
    )

    registry = Frontends()
    registry.register(DOCKERFILE_FRONTEND, DockerfileFrontend())
    registry.register(PYTHON_FRONTEND, PythonFrontend())
    return registry


def sources(
    config: EngineConfig,
    *,
    cache: CacheManager,
    content: ContentStore,
    sessions: SessionManager,
) -> Mapping[str, SourceResolver]:
    """Source resolvers by scheme."""
    return {}


def image_resolver(
    config: EngineConfig,
    *,
    cache: CacheManager,
    content: ContentStore,
    sessions: SessionManager,
) -> ImageMetaResolver:
    """Base-image metadata for the Dockerfile frontend."""
    from dockyard.dockerfile import UnresolvedImages

    return UnresolvedImages()


def blob_roots(engine: Engine) -> set[Digest]:
    """Blobs garbage collection keeps besides leased ones: every cache record's layer
    blobs."""
    from dockyard.core import Digest

    return {Digest.parse(d) for d in engine.cache.blob_digests()}
