"""``oci-layout://STORE[:TAG][@DIGEST]``: an image from an OCI image layout (a directory
or a tarball) on the engine's host.

``STORE`` (or the ``oci.store`` attribute) names the layout: a store id registered with
the source (``stores``), or — unless the engine forbids it — an absolute path. The image
is the index entry with ``DIGEST`` (also a manifest nested in an index) or tagged
``TAG`` (the ``org.opencontainers.image.ref.name`` annotation; default ``latest``, or the
only image); an index is followed to the entry for the op's platform.

:meth:`OCILayoutInstance.cache_key` reads only the index, manifest and config (the key is
the image manifest's digest); :meth:`OCILayoutInstance.snapshot` unpacks the layers that
are not unpacked yet, through the same :class:`~dockyard.source._layers.LayerUnpacker`
as registry images (so both share layer snapshots). Blobs are verified while they are
read and kept in the content store.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import ContentStore, OCILayout
from dockyard.core import (
    ContentError,
    Digest,
    InvalidDefinitionError,
    NotFoundError,
    Platform,
    host_platform,
)
from dockyard.llb import ATTR
from dockyard.oci import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    parse_manifest,
    select_platform,
)
from dockyard.solver import VertexContext

from ._image import parse_layer_limit
from ._layers import BlobStream, LayerProgress, LayerSpec, LayerUnpacker, layer_specs
from .types import SourceOpRequest

__all__ = ["LayoutImage", "LayoutRef", "OCILayoutInstance", "OCILayoutSource"]

_MAX_INDEX_DEPTH = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutRef:
    """``STORE[:TAG][@DIGEST]`` parsed."""

    store: str
    tag: str = ""
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> LayoutRef:
        store, at, digest_text = text.partition("@")
        digest: Digest | None = None
        if at:
            try:
                digest = Digest.parse(digest_text)
            except ValueError as exc:
                raise InvalidDefinitionError(
                    f"invalid OCI layout reference {text!r}: {exc}"
                ) from exc
        tag = ""
        head, colon, tail = store.rpartition(":")
        if colon and "/" not in tail:
            store, tag = head, tail
        if not store:
            raise InvalidDefinitionError(f"invalid OCI layout reference {text!r}: no store")
        return cls(store=store, tag=tag, digest=digest)

    def __str__(self) -> str:
        out = self.store
        if self.tag:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutImage:
    """An image found in a layout: ``digest`` is the entry asked for (index or
    manifest), ``manifest_digest`` the platform's image manifest."""

    path: Path
    digest: Digest
    manifest_digest: Digest
    manifest: ImageManifest
    config: ImageConfig
    config_bytes: bytes


class OCILayoutSource:
    """The ``oci-layout`` resolver (``Worker.sources["oci-layout"]``).

    ``stores`` maps store ids to layout paths; ``allow_paths`` lets an absolute path
    stand for itself (the embedded engine reads the client's files directly; a daemon
    serving remote clients should pass ``False``). ``unpacker``: share the image
    source's so that both share layer snapshots.
    """

    def __init__(
        self,
        *,
        cache: CacheManager,
        content: ContentStore,
        stores: Mapping[str, Path] | None = None,
        allow_paths: bool = True,
        platform: Platform | None = None,
        unpacker: LayerUnpacker | None = None,
    ) -> None:
        self.cache = cache
        self.content = content
        self.stores = dict(stores or {})
        self.allow_paths = allow_paths
        self.platform = platform if platform is not None else host_platform()
        self.unpacker = unpacker if unpacker is not None else LayerUnpacker(cache, content)

    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> OCILayoutInstance:
        ref = LayoutRef.parse(request.path)
        store = request.attrs.get(ATTR.OCI_STORE_ID) or ref.store
        limit = parse_layer_limit(request.attrs.get(ATTR.OCI_LAYER_LIMIT), ATTR.OCI_LAYER_LIMIT)
        return OCILayoutInstance(
            self,
            ref=ref,
            path=self.location(store),
            platform=request.platform or self.platform,
            layer_limit=limit,
        )

    def location(self, store: str) -> Path:
        """The path of layout ``store``; :class:`NotFoundError` for an unknown one."""
        found = self.stores.get(store)
        if found is not None:
            return found
        if self.allow_paths and store.startswith("/"):
            return Path(store)
        raise NotFoundError(f"OCI layout store {store!r} is not known to this engine")

    async def find(self, path: Path, ref: LayoutRef, platform: Platform) -> LayoutImage:
        """The image ``ref`` names in the layout at ``path``, for ``platform``."""
        return await asyncio.to_thread(_find, path, ref, platform)

    async def resolve_config(self, ref: str, *, platform: Platform) -> tuple[Digest, bytes]:
        """``(digest of the entry, config bytes)`` for ``STORE[:TAG][@DIGEST]`` (the
        frontend's image metadata for ``oci-layout://`` named contexts)."""
        parsed = LayoutRef.parse(ref)
        image = await self.find(self.location(parsed.store), parsed, platform)
        return image.digest, image.config_bytes

    async def unpack(
        self,
        image: LayoutImage,
        *,
        layer_limit: int | None = None,
        ctx: VertexContext | None = None,
    ) -> ImmutableRef:
        """The image's tree as a new handle the caller owns."""
        name = f"oci-layout://{image.path}@{image.digest}"
        layers = layer_specs(
            image.manifest.layers, image.config.diff_ids, name=name, limit=layer_limit
        )
        layout: OCILayout | None = None

        def opened() -> OCILayout:
            # opened when a layer needs it (none does when all are unpacked already)
            nonlocal layout
            if layout is None:
                layout = OCILayout.open(image.path)
            return layout

        try:
            async with self.content.lease() as lease:

                async def fetch(layer: LayerSpec) -> BlobStream:
                    digest = layer.blob.digest
                    self.content.add_to_lease(lease, digest)
                    if self.content.has(digest):
                        return BlobStream(
                            open=functools.partial(self.content.open, digest), verified=True
                        )
                    return BlobStream(open=lambda: opened().open_blob(digest), verified=False)

                return await self.unpacker.unpack(
                    layers,
                    fetch,
                    name=name,
                    progress=_Progress(ctx) if ctx is not None else None,
                    cancelled=ctx.cancelled if ctx is not None else None,
                )
        finally:
            if layout is not None:
                await asyncio.to_thread(layout.close)


class _Progress(LayerProgress):
    def __init__(self, ctx: VertexContext) -> None:
        self._ctx = ctx

    def extracting(self, layer: LayerSpec) -> None:
        digest = str(layer.blob.digest)
        self._ctx.progress("extract " + digest, "extracting " + digest, 0, total=layer.blob.size)

    def extracted(self, layer: LayerSpec, done: bool, size: int) -> None:
        if done:
            digest = str(layer.blob.digest)
            self._ctx.progress(
                "extract " + digest, "extracting " + digest, size, total=layer.blob.size
            )


def _find(path: Path, ref: LayoutRef, platform: Platform) -> LayoutImage:
    with OCILayout.open(path) as layout:
        where = f"OCI layout {path}"
        if ref.digest is not None:
            top = layout.resolve(ref.digest)
        elif ref.tag:
            top = layout.resolve(ref.tag)
        else:
            try:
                top = layout.resolve("latest")
            except NotFoundError:
                top = layout.resolve(None)
        listed = top in layout.index.manifests
        desc = top
        for _ in range(_MAX_INDEX_DEPTH):
            data = layout.read_blob(desc)
            document = parse_manifest(data, desc.media_type if listed else "")
            if isinstance(document, ImageIndex):
                desc = select_platform(document, platform, name=f"{ref} in {where}")
                listed = True
                continue
            config_desc: Descriptor = document.config
            config_bytes = layout.read_blob(config_desc)
            return LayoutImage(
                path=path,
                digest=top.digest,
                manifest_digest=desc.digest,
                manifest=document,
                config=ImageConfig.parse(config_bytes),
                config_bytes=config_bytes,
            )
    raise ContentError(f"{ref} in {where}: indexes nested too deeply")


class OCILayoutInstance:
    """One ``oci-layout://`` op (a :class:`~dockyard.llbsolver.SourceInstance`)."""

    def __init__(
        self,
        source: OCILayoutSource,
        *,
        ref: LayoutRef,
        path: Path,
        platform: Platform,
        layer_limit: int | None,
    ) -> None:
        self.source = source
        self.ref = ref
        self.path = path
        self.platform = platform
        self.layer_limit = layer_limit
        self.image: LayoutImage | None = None

    async def _image(self) -> LayoutImage:
        if self.image is None:
            self.image = await self.source.find(self.path, self.ref, self.platform)
        return self.image

    async def cache_key(self, ctx: VertexContext) -> str:
        image = await self._image()
        key = str(image.manifest_digest)
        if self.layer_limit is not None:
            key += f"+layers={self.layer_limit}"
        return key

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        image = await self._image()
        return await self.source.unpack(image, layer_limit=self.layer_limit, ctx=ctx)
