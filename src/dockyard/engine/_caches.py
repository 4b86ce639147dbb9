"""A build's remote caches: ``--cache-from`` read before the solve, ``--cache-to``
written after it (an inline one through the image exporters)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from dockyard.core import BuildWarning, DockyardError

if TYPE_CHECKING:
    from dockyard.cache import CacheManager, LayerBlob
    from dockyard.content import ContentStore
    from dockyard.core import Reporter
    from dockyard.exporter import CompressionOptions, ExportOptions, InlineCache
    from dockyard.registry import CredentialsProvider
    from dockyard.remotecache import CacheExport, CacheImport, ImportedCache
    from dockyard.session import SessionHandle
    from dockyard.solver import CacheChainRecord, Edge, Job
    from dockyard.source import LayerUnpacker

    from ._config import EngineConfig

__all__ = ["CacheExports", "imported_caches"]


def _credentials(session: SessionHandle | None) -> CredentialsProvider | None:
    if session is None or not session.info.credentials:
        return None
    from dockyard.source import SessionCredentials

    return SessionCredentials(session.credentials)


@contextlib.asynccontextmanager
async def imported_caches(
    imports: Sequence[CacheImport],
    *,
    config: EngineConfig,
    content: ContentStore,
    unpacker: LayerUnpacker,
    session: SessionHandle | None,
    reporter: Reporter,
) -> AsyncIterator[tuple[ImportedCache, ...]]:
    """The readable ones of ``imports`` for the block (unreadable ones are warnings)."""
    if not imports:
        yield ()
        return
    from dockyard.remotecache import each_cache_import, import_cache

    caches: list[ImportedCache] = []
    try:
        for spec in each_cache_import(imports):
            cache = await import_cache(
                spec,
                content=content,
                unpacker=unpacker,
                registry=config.registry,
                credentials=_credentials(session),
                platform=config.platform,
                reporter=reporter,
                client=session.content if session is not None else None,
            )
            if cache is not None:
                caches.append(cache)
        yield tuple(caches)
    finally:
        for cache in caches:
            with contextlib.suppress(Exception):
                await cache.aclose()


class CacheExports:
    """The ``--cache-to`` of one build: :meth:`inline_cache` for the image exporters,
    :meth:`run` for the others once the image exports are done."""

    def __init__(
        self,
        exports: Sequence[CacheExport],
        *,
        config: EngineConfig,
        cache: CacheManager,
        content: ContentStore,
        session: SessionHandle | None,
        reporter: Reporter,
    ) -> None:
        self._exports = tuple(exports)
        self._config = config
        self._cache = cache
        self._content = content
        self._session = session
        self._reporter = reporter
        self._chains: dict[bool, list[CacheChainRecord]] = {}

    async def _chain(
        self, job: Job, edges: Sequence[Edge], all_results: bool
    ) -> list[CacheChainRecord]:
        chain = self._chains.get(all_results)
        if chain is None:
            from dockyard.solver import cache_chain

            chain = await cache_chain(job, list(edges), all_results=all_results)
            self._chains[all_results] = chain
        return chain

    def inline_cache(
        self, job: Job, edge: Edge | None, image_exports: Sequence[ExportOptions], lease: str
    ) -> InlineCache | None:
        """What the image exporters embed for ``--cache-to type=inline`` (``None``: no
        inline export asked). Layers are made with the first image export's compression,
        so that the cache's blobs are the image's."""
        if edge is None or not self._exports:
            return None
        from dockyard.remotecache import InlineCacheExport

        if not any(isinstance(e, InlineCacheExport) for e in self._exports):
            return None
        compression = _image_compression(image_exports)
        if compression is None:
            self._reporter.emit(
                BuildWarning(short="--cache-to type=inline needs an image export; nothing exported")
            )
            return None

        async def make(blobs: Sequence[LayerBlob]) -> bytes | None:
            from dockyard.remotecache import collect_cache

            chain = await self._chain(job, [edge], False)
            collected = await collect_cache(
                chain,
                cache=self._cache,
                content=self._content,
                compression=compression,
                lease=lease,
                skip_empty=True,
            )
            inline = collected.restricted(blobs)
            if inline.empty:
                return None
            # BuildKit's inline form: the records over the image's own layers
            return inline.config.inline_bytes([b.digest for b in blobs])

        return make

    async def run(self, job: Job, edges: Sequence[Edge | None]) -> None:
        """Every local and registry export, in order, recording the chains of the
        results of ``edges`` (one, or one per platform); a failure fails the build
        unless the export says ``ignore-error=true`` (then it is a warning)."""
        wanted = [e for e in edges if e is not None]
        if not wanted or not self._exports:
            return  # nothing to export: no need to load the exporters' compressors
        from dockyard.remotecache import CacheMode, InlineCacheExport, export_cache

        for spec in self._exports:
            if isinstance(spec, InlineCacheExport):
                continue
            try:
                chain = await self._chain(job, wanted, spec.mode is CacheMode.MAX)
                await export_cache(
                    chain,
                    spec,
                    cache=self._cache,
                    content=self._content,
                    registry=self._config.registry,
                    credentials=_credentials(self._session),
                    reporter=self._reporter,
                    client=self._session.content if self._session is not None else None,
                )
            except DockyardError as exc:
                if not spec.ignore_error:
                    raise
                self._reporter.emit(BuildWarning(short=f"exporting cache failed: {exc}"))


def _image_compression(exports: Sequence[ExportOptions]) -> CompressionOptions | None:
    from dockyard.exporter import DockerExport, ImageExport, OciExport

    for export in exports:
        if isinstance(export, ImageExport | OciExport | DockerExport):
            return export.image.compression
    return None
