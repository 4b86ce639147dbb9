"""The exporter seam (BuildKit's shape): options → ``resolve(options, services)`` → an
:class:`ExporterInstance` whose one method, :meth:`~ExporterInstance.export`, turns a
result ref into an output and answers with an :class:`ExportResponse`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.core import Digest, Platform, Reporter, host_platform

if TYPE_CHECKING:
    from dockyard.cache import ImmutableRef, LayerBlob
    from dockyard.content import ContentStore, ImageStore
    from dockyard.oci import Descriptor, ImageConfig
    from dockyard.registry import CredentialsProvider, RegistryClient, RegistryConfig
    from dockyard.session.types import ExportCaller

    from ._attest import Attestation
    from ._options import ExportOptions

__all__ = [
    "INLINE_CACHE_KEY",
    "MULTI_PLATFORM_DOCKER",
    "ExportRequest",
    "ExportResponse",
    "ExportServices",
    "ExporterInstance",
    "InlineCache",
    "PlatformExport",
    "platform_dir",
]

INLINE_CACHE_KEY = "moby.buildkit.cache.v0"
"""The image config key holding an inline build cache (base64 of its cache config)."""

MULTI_PLATFORM_DOCKER = (
    "the docker exporter cannot export a multi-platform image (docker load takes one "
    "platform): build one --platform, or use type=oci or type=image"
)
"""Why ``type=docker`` (and ``--load``) refuses a multi-platform build."""

InlineCache = Callable[["Sequence[LayerBlob]"], Awaitable[bytes | None]]
"""Makes an inline cache config for an image from the image's layers (bottom first, the
ones in the manifest): JSON bytes to embed, or ``None`` for none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportServices:
    """What exporters use, bundled once by the engine.

    ``content`` holds the blobs made; ``images`` is the local image store (the ``image``
    exporter stores there; ``None``: it cannot store). Pushes use ``registry`` when
    given, else a client made per push from ``registry_config`` and ``credentials``
    (also when an export asks for ``registry.insecure``). ``platform`` is what images
    are made for when the frontend gives no config.
    """

    content: ContentStore
    images: ImageStore | None = None
    registry: RegistryClient | None = None
    registry_config: RegistryConfig | None = None
    credentials: CredentialsProvider | None = None
    platform: Platform = field(default_factory=host_platform)


def platform_dir(platform: Platform) -> str:
    """The sub-directory of ``platform`` in a multi-platform ``local``/``tar`` export
    (BuildKit's platform split): ``linux_amd64``, ``linux_arm_v7``."""
    return str(platform).replace("/", "_")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformExport:
    """One platform's result in a multi-platform export: the result (``None``: the
    empty tree), the frontend's config for it, its inline cache maker and its
    attestations (:mod:`dockyard.exporter._attest`)."""

    platform: Platform
    ref: ImmutableRef | None
    image_config: ImageConfig | None = None
    inline_cache: InlineCache | None = None
    attestations: tuple[Attestation, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    """One export of one result.

    ``ref``: the result (``None``: the empty tree, e.g. ``FROM scratch`` with nothing
    added); the exporter neither keeps nor releases it. ``image_config``: what the
    frontend made (history, container config, platform); ``None`` gives a minimal one.
    ``epoch``: the build's ``SOURCE_DATE_EPOCH`` (an exporter's ``source-date-epoch``
    option wins). ``client``: the session's export caller, for outputs addressed to a
    :class:`~dockyard.exporter.ClientTarget`. ``reporter``: progress. ``inline_cache``:
    image exporters embed what it makes under :data:`INLINE_CACHE_KEY` in the config
    (``--cache-to type=inline``).

    ``platforms``: empty for a single-platform export; a multi-platform build's
    results, two or more in the order asked (``ref``, ``image_config`` and
    ``inline_cache`` are then unused). Image exporters make an index of a manifest per
    platform, ``local`` and ``tar`` a sub-directory per platform
    (:func:`platform_dir`), ``docker`` refuses.

    ``attestations`` (each platform's in ``platforms``): in-toto predicates the
    exporter states about what it exported — image exporters then make an index with an
    attestation manifest per platform (even for one platform), ``local`` and ``tar``
    add a file per attestation (``provenance.json``).
    """

    ref: ImmutableRef | None
    image_config: ImageConfig | None = None
    epoch: int | None = None
    client: ExportCaller | None = None
    reporter: Reporter | None = None
    inline_cache: InlineCache | None = None
    platforms: tuple[PlatformExport, ...] = ()
    attestations: tuple[Attestation, ...] = ()

    @property
    def multi_platform(self) -> bool:
        return len(self.platforms) > 1

    @property
    def attested(self) -> bool:
        """Whether any attestation is asked for (of the result or of a platform's)."""
        return bool(self.attestations) or any(p.attestations for p in self.platforms)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportResponse:
    """What an export made; :meth:`metadata` is the ``--metadata-file`` JSON object as
    buildx writes it (empty for ``local``/``tar``).

    ``descriptor``: the image manifest's descriptor (with ``config.digest`` among its
    annotations, and its platform), or for a multi-platform image the index's (no
    config digest then: the index digest is the image ID). ``names``: the canonical
    names given.
    """

    descriptor: Descriptor | None = None
    config_digest: Digest | None = None
    names: tuple[str, ...] = ()
    pushed: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_digest(self) -> Digest | None:
        return self.descriptor.digest if self.descriptor is not None else None

    @property
    def image_id(self) -> Digest | None:
        """What ``--iidfile`` gets: the config digest when there is one (buildx), else
        the manifest digest."""
        return self.config_digest if self.config_digest is not None else self.image_digest

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.config_digest is not None:
            out["containerimage.config.digest"] = str(self.config_digest)
        if self.descriptor is not None:
            out["containerimage.descriptor"] = self.descriptor.to_json()
            out["containerimage.digest"] = str(self.descriptor.digest)
        if self.names:
            out["image.name"] = ",".join(self.names)
        out.update(self.extra)
        return out


class ExporterInstance(Protocol):
    """A resolved exporter: options checked, services bound.

    :meth:`export` may run concurrently for different requests. Errors are
    :class:`~dockyard.core.DockyardError` subclasses naming the destination; a file
    destination is either complete or absent afterwards (written to a temporary name and
    renamed), never half written.
    """

    @property
    def options(self) -> ExportOptions: ...

    async def export(self, request: ExportRequest) -> ExportResponse: ...
