"""A build's exporters: resolved before the build (bad options fail before any work),
run in order on its result after it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard import oci
    from dockyard.content import ContentStore, ImageStore
    from dockyard.core import Reporter
    from dockyard.exporter import (
        Attestation,
        ExporterInstance,
        ExportOptions,
        ExportResponse,
        InlineCache,
    )
    from dockyard.session import SessionHandle
    from dockyard.solver import ResultRef

    from ._config import EngineConfig

__all__ = ["resolve_exports", "run_exports"]


def resolve_exports(
    exports: Sequence[ExportOptions],
    *,
    config: EngineConfig,
    content: ContentStore,
    images: ImageStore,
    session: SessionHandle | None,
) -> list[ExporterInstance]:
    """An exporter instance per export request (:mod:`dockyard.exporter` options)."""
    if not exports:
        return []
    from dockyard.exporter import ExportServices, resolve

    credentials = None
    if session is not None and session.info.credentials:
        from dockyard.source import SessionCredentials

        credentials = SessionCredentials(session.credentials)
    services = ExportServices(
        content=content,
        images=images,
        registry_config=config.registry,
        credentials=credentials,
        platform=config.platform,
    )
    return [resolve(export, services) for export in exports]


async def run_exports(
    instances: Sequence[ExporterInstance],
    *,
    ref: ResultRef | None,
    image_config: oci.ImageConfig | None,
    epoch: int | None,
    session: SessionHandle | None,
    reporter: Reporter,
    inline_cache: InlineCache | None = None,
    attestations: tuple[Attestation, ...] = (),
) -> list[ExportResponse]:
    """Export the result with each instance in turn (image exporters embed
    ``inline_cache``'s config, and every exporter stores ``attestations``)."""
    from dockyard.cache import ImmutableRef
    from dockyard.core import InternalError
    from dockyard.exporter import ExportRequest

    value: ImmutableRef | None = None
    if ref is not None:
        if not isinstance(ref.value, ImmutableRef):
            raise InternalError(f"the build's result {ref.value!r} is not a cache ref")
        value = ref.value
    responses: list[ExportResponse] = []
    for instance in instances:
        request = ExportRequest(
            ref=value,
            image_config=image_config,
            epoch=epoch,
            client=session.exports if session is not None else None,
            reporter=reporter,
            inline_cache=inline_cache,
            attestations=attestations,
        )
        responses.append(await instance.export(request))
    return responses
