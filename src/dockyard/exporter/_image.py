"""Image assembly: layers + the frontend's config → config and manifest blobs.

Pure functions first (tested without a snapshotter), then :func:`commit_image`, which
makes the layers, writes config and manifest into the content store and returns what
an exporter needs next.

History and layers are reconciled as BuildKit does: each history entry without
``empty_layer`` stands for the next layer; missing entries are added for extra layers
(``created_by`` the record's description); entries beyond the layers become empty.
An empty layer (no tar entries) is left out of the image and its entry marked
``empty_layer``. Entries without a time get the time of their layer's record, then of
the nearest entry before them. ``SOURCE_DATE_EPOCH`` caps every history time and the
config's ``created`` at the epoch.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.cache import ImmutableRef
from dockyard.content import ContentStore
from dockyard.core import ContentError, Digest, Platform, UsageError
from dockyard.oci import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
    canonical_json,
    format_timestamp,
)

from ._attest import AttestationManifest, make_attestation_manifest
from ._layers import ExportedLayer, export_layers
from ._options import AnnotationKind, ImageOptions
from ._progress import Progress
from ._upload import LayerPusher
from .types import INLINE_CACHE_KEY, ExportRequest, InlineCache, PlatformExport

__all__ = [
    "EXPORTER_HISTORY_COMMENT",
    "CommittedImage",
    "CommittedIndex",
    "commit_image",
    "commit_index",
    "default_config",
    "normalize_history",
    "oci_manifest",
    "parse_timestamp",
    "patch_config",
    "single_platform_request",
]

EXPORTER_HISTORY_COMMENT = "buildkit.exporter.image.v0"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)


def parse_timestamp(text: str) -> int:
    """RFC 3339 (as Go writes it, nanoseconds allowed) → epoch nanoseconds;
    :class:`ContentError` if malformed."""
    match = _RFC3339.match(text)
    if match is None:
        raise ContentError(f"invalid timestamp {text!r} in image config")
    year, month, day, hour, minute, second, frac, zone = match.groups()
    offset = 0
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    when = _dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=_dt.UTC
    )
    seconds = int(when.timestamp()) - offset
    nanos = int((frac or "0").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def default_config(platform: Platform) -> ImageConfig:
    """The config of a result exported without one (BuildKit's default): the platform,
    ``PATH`` and working directory ``/``."""
    return ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        config=ContainerConfig(env=(f"PATH={DEFAULT_PATH}",), working_dir="/"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerMeta:
    """What history normalization needs to know of a layer."""

    empty: bool
    created: str
    description: str


def normalize_history(
    history: Sequence[History], layers: Sequence[LayerMeta]
) -> tuple[list[History], list[int]]:
    """The history matched to ``layers`` (see the module docstring) and the indexes of
    the layers that go into the image (the non-empty ones), in order."""
    entries = list(history)
    n = len(layers)
    counted = sum(1 for h in entries if not h.empty_layer)
    if counted > n:
        seen = 0
        for i, h in enumerate(entries):
            if h.empty_layer:
                continue
            if seen >= n:
                entries[i] = dataclasses.replace(h, empty_layer=True)
            else:
                seen += 1
        counted = n
    for layer in layers[counted:]:
        entries.append(
            History(
                created=layer.created,
                created_by=layer.description or "created by dockyard",
                comment=EXPORTER_HISTORY_COMMENT,
            )
        )
    kept: list[int] = []
    j = 0
    for i, h in enumerate(entries):
        if h.empty_layer:
            continue
        layer = layers[j]
        if h.created is None:
            h = dataclasses.replace(h, created=layer.created)
        if layer.empty:
            h = dataclasses.replace(h, empty_layer=True)
        else:
            kept.append(j)
        entries[i] = h
        j += 1
    # times for entries that still have none: the first entry after a gap gives the
    # time of the gap, later gaps take the entry before them (BuildKit's rule)
    created: str | None = None
    gap = False
    for h in entries:
        if h.created is not None:
            created = h.created
            if gap:
                break
        else:
            gap = True
    gap = False
    for i, h in enumerate(entries):
        if h.created is not None:
            if gap:
                created = h.created
        else:
            gap = True
            entries[i] = dataclasses.replace(h, created=created)
    return entries, kept


def patch_config(
    config: ImageConfig,
    diff_ids: Sequence[Digest],
    history: Sequence[History],
    epoch: int | None,
) -> ImageConfig:
    """``config`` with the exported ``diff_ids`` and ``history``; with ``epoch`` every
    time after it is set to it; a missing ``created`` becomes the last history time."""
    entries = list(history)
    created = config.created
    if epoch is not None:
        epoch_ns = epoch * 1_000_000_000
        stamp = format_timestamp(epoch_ns)
        for i, h in enumerate(entries):
            if h.created is None or parse_timestamp(h.created) > epoch_ns:
                entries[i] = dataclasses.replace(h, created=stamp)
        if created is not None and parse_timestamp(created) > epoch_ns:
            created = stamp
    if created is None:
        for h in entries:
            if h.created is not None:
                created = h.created
    return dataclasses.replace(
        config,
        diff_ids=tuple(diff_ids),
        rootfs_type="layers",
        history=tuple(entries),
        created=created,
    )


def layer_descriptor(layer: ExportedLayer, oci: bool) -> Descriptor:
    """The manifest entry of ``layer`` in the OCI or Docker media type family (the
    blob's annotations, an eStargz layer's, only in OCI's: BuildKit drops them from
    Docker manifests)."""
    kind = MediaType.layer_compression(layer.blob.media_type)
    return Descriptor(
        media_type=MediaType.layer(kind, oci=oci),
        digest=layer.blob.digest,
        size=layer.blob.size,
        annotations=dict(layer.blob.annotations) if oci else {},
    )


def oci_manifest(manifest: ImageManifest) -> ImageManifest:
    """``manifest`` in OCI media types (a Docker one converted as ``skopeo``/``podman``
    do for OCI archives: same config and layer blobs, new manifest bytes)."""
    if manifest.media_type == MediaType.OCI_MANIFEST:
        return manifest
    layers = []
    for layer in manifest.layers:
        if layer.media_type == MediaType.DOCKER_FOREIGN_LAYER:
            kind = MediaType.OCI_LAYER_NONDISTRIBUTABLE_GZIP
        else:
            kind = MediaType.layer(MediaType.layer_compression(layer.media_type), oci=True)
        layers.append(dataclasses.replace(layer, media_type=kind))
    return dataclasses.replace(
        manifest,
        media_type=MediaType.OCI_MANIFEST,
        config=dataclasses.replace(manifest.config, media_type=MediaType.OCI_CONFIG),
        layers=tuple(layers),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedImage:
    """An image written to the content store: its manifest (bytes and descriptor, with
    ``config.digest`` and platform, as BuildKit describes it), config and layers."""

    manifest: ImageManifest
    manifest_bytes: bytes
    descriptor: Descriptor
    config: ImageConfig
    config_descriptor: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def platform(self) -> Platform:
        return self.config.platform


async def commit_image(
    ref: ImmutableRef | None,
    config: ImageConfig | None,
    options: ImageOptions,
    content: ContentStore,
    *,
    oci: bool,
    epoch: int | None,
    lease: str,
    platform: Platform,
    progress: Progress | None = None,
    inline_cache: InlineCache | None = None,
    pusher: LayerPusher | None = None,
    layers_step: bool = True,
) -> CommittedImage:
    """Make the layers of ``ref``, then config and manifest blobs, all held by
    ``lease``. ``inline_cache`` makes a cache config embedded in the image config;
    ``pusher`` streams the layers made to a registry while they are made;
    ``layers_step=False``: the caller reports "exporting layers" (one step for the
    images of several platforms)."""
    base = config if config is not None else default_config(platform)
    clamp = epoch if options.rewrite_timestamp else None
    step = (
        progress.step("layers", "exporting layers")
        if progress is not None and layers_step
        else None
    )
    layers = await export_layers(
        ref,
        content,
        options.compression,
        lease=lease,
        clamp=clamp,
        base_diff_ids=base.diff_ids,
        progress=progress,
        pusher=pusher,
    )
    if step is not None:
        step.done()
    metas = [LayerMeta(empty=x.empty, created=x.created, description=x.description) for x in layers]
    history, kept = normalize_history(base.history, metas)
    chosen = [layers[i] for i in kept]
    final = patch_config(base, [x.blob.diff_id for x in chosen], history, epoch)
    config_bytes = final.to_bytes()
    if inline_cache is not None:
        cache = await inline_cache([x.blob for x in chosen])
        if cache is not None:
            obj = final.to_json()
            obj[INLINE_CACHE_KEY] = base64.b64encode(cache).decode("ascii")
            config_bytes = canonical_json(obj)
    config_type = MediaType.OCI_CONFIG if oci else MediaType.DOCKER_CONFIG
    config_desc = Descriptor.of(config_type, config_bytes)
    image_platform = final.platform
    manifest = ImageManifest(
        config=config_desc,
        layers=tuple(layer_descriptor(x, oci) for x in chosen),
        media_type=MediaType.OCI_MANIFEST if oci else MediaType.DOCKER_MANIFEST,
        annotations=options.annotations_for(AnnotationKind.MANIFEST, image_platform),
    )
    manifest_bytes = manifest.to_bytes(indent=3)
    # side by side: each is made durable (fsyncs of the blob and its directory) on its
    # own, and nothing refers to either before both are
    written = await asyncio.gather(
        content.write_blob(config_bytes, lease=lease),
        content.write_blob(manifest_bytes, lease=lease),
        return_exceptions=True,
    )
    for outcome in written:
        if isinstance(outcome, BaseException):
            raise outcome
    annotations = dict(options.annotations_for(AnnotationKind.MANIFEST_DESCRIPTOR, image_platform))
    annotations["config.digest"] = str(config_desc.digest)
    descriptor = Descriptor.of(
        manifest.media_type,
        manifest_bytes,
        annotations=annotations,
        platform=Platform(
            os=image_platform.os,
            architecture=image_platform.architecture,
            variant=image_platform.variant,
        ),
    )
    return CommittedImage(
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        descriptor=descriptor,
        config=final,
        config_descriptor=config_desc,
        layers=manifest.layers,
    )


def _platform_key(platform: Platform) -> tuple[str, str, str]:
    return (platform.os, platform.architecture, platform.variant)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedIndex:
    """A multi-platform image written to the content store: the index (bytes and
    descriptor) and its images, one per platform in the order built."""

    index: ImageIndex
    index_bytes: bytes
    descriptor: Descriptor
    images: tuple[CommittedImage, ...]
    attestations: tuple[AttestationManifest, ...] = ()


def single_platform_request(request: ExportRequest, platform: Platform) -> ExportRequest:
    """A single-platform request with attestations as the one-platform request
    :func:`commit_index` takes (an attested image is an index, as BuildKit makes it);
    ``platform`` is the image's when the frontend gave no config."""
    config = request.image_config
    return dataclasses.replace(
        request,
        platforms=(
            PlatformExport(
                platform=config.platform if config is not None else platform,
                ref=request.ref,
                image_config=config,
                inline_cache=request.inline_cache,
                attestations=request.attestations,
            ),
        ),
    )


async def commit_index(
    request: ExportRequest,
    options: ImageOptions,
    content: ContentStore,
    *,
    lease: str,
    progress: Progress | None = None,
    pusher: LayerPusher | None = None,
) -> CommittedIndex:
    """Commit an image for each of ``request.platforms`` (each config says its
    platform, each index entry carries it), then the index over them: an OCI image
    index, or a Docker manifest list when ``oci-mediatypes=false`` (OCI media types are
    the default for a multi-platform image, whatever the exporter). Index annotations
    go on the index, index-descriptor ones on its descriptor; manifest and
    manifest-descriptor ones qualified by a platform (``annotation[linux/arm64].k``) go
    to that platform's only, and one naming a platform not built is refused."""
    for annotation in options.annotations:
        if annotation.platform is not None and not any(
            _platform_key(annotation.platform) == _platform_key(part.platform)
            for part in request.platforms
        ):
            raise UsageError(
                f"invalid annotation: no platform {annotation.platform} found in source "
                f"(the build's platforms: {', '.join(str(p.platform) for p in request.platforms)})"
            )
    oci = True if request.attested else options.use_oci(True)
    epoch = options.source_date_epoch if options.source_date_epoch is not None else request.epoch
    # the platforms' images side by side (as BuildKit's exporter does): their layers
    # compress on every core; a layer two platforms share is made once (_layers)
    step = progress.step("layers", "exporting layers") if progress is not None else None
    outcomes = await asyncio.gather(
        *(
            commit_image(
                part.ref,
                part.image_config,
                options,
                content,
                oci=oci,
                epoch=epoch,
                lease=lease,
                platform=part.platform,
                progress=progress,
                inline_cache=part.inline_cache,
                pusher=pusher,
                layers_step=False,
            )
            for part in request.platforms
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    images = [o for o in outcomes if not isinstance(o, BaseException)]
    if step is not None:
        step.done()
    if progress is not None:
        for image in images:
            digest = image.descriptor.digest
            progress.step(f"manifest-{digest}", f"exporting manifest {digest}").done()
    manifests = tuple(
        Descriptor(
            media_type=image.descriptor.media_type,
            digest=image.descriptor.digest,
            size=image.descriptor.size,
            annotations={
                k: v for k, v in image.descriptor.annotations.items() if k != "config.digest"
            },
            platform=image.descriptor.platform,
        )
        for image in images
    )
    attestations: list[AttestationManifest] = []
    for part, entry in zip(request.platforms, manifests, strict=True):
        if part.attestations:
            attestations.append(
                await make_attestation_manifest(
                    part.attestations,
                    target=entry,
                    names=options.names,
                    content=content,
                    lease=lease,
                    oci=oci,
                )
            )
    index = ImageIndex(
        manifests=manifests + tuple(a.descriptor for a in attestations),
        media_type=MediaType.OCI_INDEX if oci else MediaType.DOCKER_MANIFEST_LIST,
        annotations=options.annotations_for(AnnotationKind.INDEX),
    )
    index_bytes = index.to_bytes(indent=3)
    await content.write_blob(index_bytes, lease=lease)
    descriptor = Descriptor.of(
        index.media_type,
        index_bytes,
        annotations=options.annotations_for(AnnotationKind.INDEX_DESCRIPTOR),
    )
    if progress is not None:
        progress.step("index", f"exporting manifest list {descriptor.digest}").done()
    return CommittedIndex(
        index=index,
        index_bytes=index_bytes,
        descriptor=descriptor,
        images=tuple(images),
        attestations=tuple(attestations),
    )
