"""``oci-layout://STORE[:TAG][@DIGEST]``: an image from an OCI image layout — a directory
or a tarball on the engine's host, or a layout the build's client offers as a content
store through its session.

``STORE`` (or the ``oci.store`` attribute) names the layout: a store id registered with
the source (``stores``), a content store the build's client offers (found in the
session of the op's ``oci.session`` attribute, else in the job's sessions), or — unless
the engine forbids it (a daemon: the path would be one of its own host) — an absolute
path. The image is the index entry with ``DIGEST`` (also a manifest nested in an index)
or tagged ``TAG`` (the ``org.opencontainers.image.ref.name`` annotation; default
``latest``, or the only image); an index is followed to the entry for the op's
platform. A client's store is named by digest only (the client resolves its tags from
its own ``index.json``); every blob read from it is checked against its digest and
size (:class:`~dockyard.session.types.ContentCaller`) and again by the content store
it is copied into before anything uses it.

:meth:`OCILayoutInstance.cache_key` reads only the index, manifest and config (the key is
the image manifest's digest); :meth:`OCILayoutInstance.snapshot` unpacks the layers that
are not unpacked yet, through the same :class:`~dockyard.source._layers.LayerUnpacker`
as registry images (so both share layer snapshots). Blobs are verified while they are
read and kept in the content store.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
from dockyard.solver import JobValue, VertexContext

from ._image import parse_layer_limit
from ._layers import BlobStream, LayerProgress, LayerSpec, LayerUnpacker, layer_specs
from .types import SourceOpRequest

if TYPE_CHECKING:
    from dockyard.session import ContentCaller, SessionManager

__all__ = [
    "ClientStore",
    "LayoutImage",
    "LayoutLocation",
    "LayoutRef",
    "OCILayoutInstance",
    "OCILayoutSource",
    "fetch_client_blob",
]

_MAX_INDEX_DEPTH = 4
_MAX_MANIFEST = 16 << 20
_MAX_CONFIG = 64 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStore:
    """A layout the build's client offers as the content store ``store`` of its
    session (``content``: that session's caller)."""

    store: str
    content: ContentCaller

    def __str__(self) -> str:
        return f"content store {self.store!r} of the client"


LayoutLocation = Path | ClientStore
"""Where a layout is: a path on the engine's host, or a client's content store."""


async def fetch_client_blob(
    where: ClientStore,
    desc: Descriptor,
    content: ContentStore,
    *,
    lease: str | None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Copy the blob ``desc`` of the client's store into ``content`` (held by ``lease``)
    unless it is there: checked against digest and size as it arrives (the session
    caller) and again by the content store's writer, which publishes it only then.
    ``progress`` is told the bytes received so far."""
    if content.has(desc.digest):
        if lease is not None:
            content.add_to_lease(lease, desc.digest)
        return
    writer = content.writer(
        f"client-{desc.digest}-{uuid.uuid4().hex[:12]}",
        expected_digest=desc.digest,
        expected_size=desc.size,
    )
    received = 0

    async def sink(data: bytes) -> None:
        nonlocal received
        await writer.write(data)
        received += len(data)
        if progress is not None:
            progress(received)

    try:
        await where.content.fetch(where.store, desc.digest, desc.size, sink)
    except BaseException:
        await asyncio.shield(writer.abort())
        raise
    await writer.commit(lease=lease)


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
    """An image found in a layout (at ``location``): ``digest`` is the entry asked for
    (index or manifest), ``manifest_digest`` the platform's image manifest."""

    location: LayoutLocation
    digest: Digest
    manifest_digest: Digest
    manifest: ImageManifest
    config: ImageConfig
    config_bytes: bytes


class OCILayoutSource:
    """The ``oci-layout`` resolver (``Worker.sources["oci-layout"]``).

    ``stores`` maps store ids to layout paths; ``sessions`` (with ``session_key``, the
    job value holding the build's session ids) finds the content stores clients offer;
    ``allow_paths`` lets an absolute path stand for itself (the embedded engine reads
    its client's files directly; a daemon serving remote clients passes ``False``).
    ``unpacker``: share the image source's so that both share layer snapshots.
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
        sessions: SessionManager | None = None,
        session_key: JobValue[str] | None = None,
    ) -> None:
        self.cache = cache
        self.content = content
        self.stores = dict(stores or {})
        self.allow_paths = allow_paths
        self.platform = platform if platform is not None else host_platform()
        self.unpacker = unpacker if unpacker is not None else LayerUnpacker(cache, content)
        self.sessions = sessions
        self._session_key = session_key

    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> OCILayoutInstance:
        ref = LayoutRef.parse(request.path)
        store = request.attrs.get(ATTR.OCI_STORE_ID) or ref.store
        limit = parse_layer_limit(request.attrs.get(ATTR.OCI_LAYER_LIMIT), ATTR.OCI_LAYER_LIMIT)
        session = request.attrs.get(ATTR.OCI_SESSION_ID)
        if session:
            ids: Sequence[str] = (session,)
        elif self._session_key is not None:
            ids = ctx.values(self._session_key)
        else:
            ids = ()
        return OCILayoutInstance(
            self,
            ref=ref,
            location=await self.locate(store, ids),
            platform=request.platform or self.platform,
            layer_limit=limit,
        )

    def location(self, store: str) -> Path:
        """The path of layout ``store`` on this host; :class:`NotFoundError` for an
        unknown one."""
        found = self.stores.get(store)
        if found is not None:
            return found
        if self.allow_paths and store.startswith("/"):
            return Path(store)
        raise NotFoundError(_unknown(store, self.allow_paths, ()))

    async def locate(self, store: str, session_ids: Sequence[str] = ()) -> LayoutLocation:
        """Where layout ``store`` is: a configured store, (when allowed) an absolute
        path, or a content store one of the sessions ``session_ids`` offers."""
        found = self.stores.get(store)
        if found is not None:
            return found
        if self.allow_paths and store.startswith("/"):
            return Path(store)  # (a store id never starts with "/")
        offered: list[str] = []
        if self.sessions is not None:
            for sid in session_ids:
                handle = self.sessions.find(sid) or await self.sessions.get(sid)
                if handle.content.has(store):
                    return ClientStore(store=store, content=handle.content)
                offered.extend(handle.info.content_stores)
        raise NotFoundError(_unknown(store, self.allow_paths, offered if session_ids else None))

    async def find(
        self, location: LayoutLocation, ref: LayoutRef, platform: Platform
    ) -> LayoutImage:
        """The image ``ref`` names in the layout at ``location``, for ``platform``."""
        if isinstance(location, ClientStore):
            return await _find_client(location, ref, platform)
        return await asyncio.to_thread(_find, location, ref, platform)

    async def resolve_config(
        self, ref: str, *, platform: Platform, session_id: str | None = None
    ) -> tuple[Digest, bytes]:
        """``(digest of the entry, config bytes)`` for ``STORE[:TAG][@DIGEST]`` (the
        frontend's image metadata for ``oci-layout://`` named contexts; a client's store
        is looked for in session ``session_id``)."""
        parsed = LayoutRef.parse(ref)
        location = await self.locate(parsed.store, (session_id,) if session_id else ())
        image = await self.find(location, parsed, platform)
        return image.digest, image.config_bytes

    async def unpack(
        self,
        image: LayoutImage,
        *,
        layer_limit: int | None = None,
        ctx: VertexContext | None = None,
    ) -> ImmutableRef:
        """The image's tree as a new handle the caller owns."""
        where = image.location
        shown = where.store if isinstance(where, ClientStore) else str(where)
        name = f"oci-layout://{shown}@{image.digest}"
        layers = layer_specs(
            image.manifest.layers, image.config.diff_ids, name=name, limit=layer_limit
        )
        layout: OCILayout | None = None

        def opened(path: Path) -> OCILayout:
            # opened when a layer needs it (none does when all are unpacked already)
            nonlocal layout
            if layout is None:
                layout = OCILayout.open(path)
            return layout

        try:
            async with self.content.lease() as lease:

                async def fetch(layer: LayerSpec) -> BlobStream:
                    digest = layer.blob.digest
                    self.content.add_to_lease(lease, digest)
                    if isinstance(where, ClientStore) and not self.content.has(digest):
                        await fetch_client_blob(
                            where,
                            layer.blob,
                            self.content,
                            lease=lease,
                            progress=_transfer(ctx, layer.blob) if ctx is not None else None,
                        )
                    if self.content.has(digest):
                        return BlobStream(
                            open=functools.partial(self.content.open, digest), verified=True
                        )
                    assert isinstance(where, Path)
                    return BlobStream(open=lambda: opened(where).open_blob(digest), verified=False)

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


def _unknown(store: str, allow_paths: bool, offered: Sequence[str] | None) -> str:
    message = f"OCI layout store {store!r} is not known to this engine"
    if store.startswith("/") and not allow_paths:
        message += (
            " (it reads no OCI layout by the path of its own host: the client offers its "
            "layouts through its session)"
        )
    elif offered is not None:
        names = ", ".join(sorted(set(offered))) or "none"
        message += f" (the client offers the content stores: {names})"
    return message


def _transfer(ctx: VertexContext, blob: Descriptor) -> Callable[[int], None]:
    digest = str(blob.digest)

    def report(received: int) -> None:
        ctx.progress("transfer " + digest, "transferring " + digest, received, total=blob.size)

    return report


async def _find_client(where: ClientStore, ref: LayoutRef, platform: Platform) -> LayoutImage:
    """:func:`_find` in a client's content store: the entry is named by digest."""
    if ref.digest is None:
        raise NotFoundError(
            f"{ref} in {where}: a client's layout is named by digest (the client resolves its tags)"
        )
    content = where.content
    size = await content.info(where.store, ref.digest)
    if size is None:
        raise NotFoundError(f"image {ref.digest} not found in {where}")
    desc = Descriptor(media_type="", digest=ref.digest, size=size)
    listed = False
    for _ in range(_MAX_INDEX_DEPTH):
        data = await content.read(where.store, desc.digest, desc.size, limit=_MAX_MANIFEST)
        document = parse_manifest(data, desc.media_type if listed else "")
        if isinstance(document, ImageIndex):
            desc = select_platform(document, platform, name=f"{ref} in {where}")
            listed = True
            continue
        config_desc: Descriptor = document.config
        config_bytes = await content.read(
            where.store, config_desc.digest, config_desc.size, limit=_MAX_CONFIG
        )
        return LayoutImage(
            location=where,
            digest=ref.digest,
            manifest_digest=desc.digest,
            manifest=document,
            config=ImageConfig.parse(config_bytes),
            config_bytes=config_bytes,
        )
    raise ContentError(f"{ref} in {where}: indexes nested too deeply")


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
                location=path,
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
        location: LayoutLocation,
        platform: Platform,
        layer_limit: int | None,
    ) -> None:
        self.source = source
        self.ref = ref
        self.location = location
        self.platform = platform
        self.layer_limit = layer_limit
        self.image: LayoutImage | None = None

    async def _image(self) -> LayoutImage:
        if self.image is None:
            self.image = await self.source.find(self.location, self.ref, self.platform)
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
