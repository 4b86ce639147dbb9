"""Plugins by key, wired in one place: sources by scheme, frontends by name, the image
metadata resolver of the Dockerfile frontend, and the roots of blob garbage collection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.cache import CacheManager
    from dockyard.content import ContentStore, ImageStore
    from dockyard.core import Digest, Platform
    from dockyard.frontend import Frontends
    from dockyard.llbsolver import SourceInstance, SourceRequest, SourceResolver
    from dockyard.session import SessionManager
    from dockyard.solver import VertexContext
    from dockyard.source import (
        FrontendImageResolver,
        ImageSource,
        LayerUnpacker,
        OCILayoutSource,
    )

    from ._config import EngineConfig

__all__ = ["LazyLayouts", "Sources", "blob_roots", "frontends", "sources"]


def frontends() -> Frontends:
    """``dockerfile.v0`` and ``python`` (each loaded when a build first uses it)."""
    from dockyard.frontend import DOCKERFILE_FRONTEND, PYTHON_FRONTEND, Frontend, Frontends
    from dockyard.frontend import LazyFrontend as Lazy

    def dockerfile() -> Frontend:
        from dockyard.frontend import DockerfileFrontend

        return DockerfileFrontend()

    def python() -> Frontend:
        from dockyard.frontend import PythonFrontend

        return PythonFrontend()

    registry = Frontends()
    registry.register(DOCKERFILE_FRONTEND, Lazy(dockerfile))
    registry.register(PYTHON_FRONTEND, Lazy(python))
    return registry


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Sources:
    """The source resolvers of one engine, by scheme, the image sources behind the
    Dockerfile frontend's base-image lookups, and the layer unpacker they share (cache
    imports unpack through it too)."""

    resolvers: Mapping[str, SourceResolver]
    images: ImageSource
    layouts: LazyLayouts
    unpacker: LayerUnpacker

    def meta_resolver(self, session_id: str | None) -> FrontendImageResolver:
        """Base-image metadata for one build (credentials of its session)."""
        return self.images.meta_resolver(session_id=session_id, layouts=self.layouts)

    async def aclose(self) -> None:
        await self.images.aclose()


class LazyLayouts:
    """The ``oci-layout`` source, made (its module loaded) when a build first uses an
    OCI layout: as a source, or for a named context's image metadata."""

    def __init__(self, make: Callable[[], OCILayoutSource]) -> None:
        self._make = make
        self._made: OCILayoutSource | None = None

    @property
    def source(self) -> OCILayoutSource:
        if self._made is None:
            self._made = self._make()
        return self._made

    async def resolve(self, request: SourceRequest, ctx: VertexContext) -> SourceInstance:
        return await self.source.resolve(request, ctx)

    async def resolve_config(
        self, ref: str, *, platform: Platform, session_id: str | None = None
    ) -> tuple[Digest, bytes]:
        return await self.source.resolve_config(ref, platform=platform, session_id=session_id)


def sources(
    config: EngineConfig,
    *,
    cache: CacheManager,
    content: ContentStore,
    images: ImageStore,
    sessions: SessionManager,
) -> Sources:
    """``local``, ``docker-image``, ``oci-layout``, ``git`` and ``http(s)``; the image
    sources share one layer unpacker, so that they share layer snapshots."""
    from dockyard.llbsolver import SECRETS, SESSION_ID, SSH_AGENTS
    from dockyard.source import ImageSource, LayerUnpacker, LocalSource, remote_sources

    unpacker = LayerUnpacker(cache, content)
    image_source = ImageSource(
        cache=cache,
        content=content,
        registry=config.registry,
        sessions=sessions,
        session_key=SESSION_ID,
        images=images,
        platform=config.platform,
        unpacker=unpacker,
    )

    def layout_source() -> OCILayoutSource:
        from dockyard.source import OCILayoutSource

        return OCILayoutSource(
            cache=cache,
            content=content,
            platform=config.platform,
            unpacker=unpacker,
            sessions=sessions,
            session_key=SESSION_ID,
            allow_paths=config.host_paths,
        )

    layouts = LazyLayouts(layout_source)
    resolvers: dict[str, SourceResolver] = {
        "local": LocalSource(cache=cache, sessions=sessions, session_key=SESSION_ID),
        "docker-image": image_source,
        "oci-layout": layouts,
        **remote_sources(cache, secrets_key=SECRETS, ssh_key=SSH_AGENTS),  # git, http, https
    }
    return Sources(resolvers=resolvers, images=image_source, layouts=layouts, unpacker=unpacker)


def blob_roots(cache: CacheManager, images: ImageStore) -> set[Digest]:
    """Blobs garbage collection keeps besides leased ones: every cache record's layer
    blobs and every stored image."""
    from dockyard.core import Digest

    return {Digest.parse(d) for d in cache.blob_digests()} | images.roots()
