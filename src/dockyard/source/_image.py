"""``docker-image://REF``: images from the local image store or a registry.

:meth:`ImageInstance.cache_key` resolves the reference to the image manifest for the
requested platform (a few small documents; never a layer): with resolve mode
``default`` from the local image store if it has the name, else from the registry;
``local`` from the store only; ``pull`` from the registry always. The key is that
manifest's digest, so every reference naming the same image shares its result.
:meth:`ImageInstance.snapshot` then unpacks the layers not unpacked yet (see
:mod:`dockyard.source._layers`): each blob comes from the content store if it is there,
from the registry otherwise (up to three downloads at a time, bottom layer first), with
progress per layer. A layer is unpacked while it downloads: the download writes the blob
into the content store and verifies it there, the unpack follows the bytes as they are
written (:mod:`dockyard.source._follow`) and sees the end of the blob only after the
download verified and committed it.

:meth:`ImageSource.resolve_image_config` is BuildKit's ``ResolveImageConfig`` for
frontends: the canonical reference (with the digest it resolved to) and the config
blob, without pulling layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.content import ContentStore
from dockyard.core import (
    ContentError,
    Digest,
    DockyardError,
    InvalidDefinitionError,
    NotFoundError,
    Platform,
    UsageError,
    host_platform,
)
from dockyard.core.singleflight import SingleFlight
from dockyard.llb import ATTR, ResolveMode
from dockyard.oci import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    parse_manifest,
    select_platform,
)
from dockyard.registry import (
    CredentialsProvider,
    Reference,
    RegistryConfig,
    tag_check,
    tag_unchanged,
)
from dockyard.session import SessionManager
from dockyard.solver import JobValue, VertexContext

from ._follow import DownloadWindow, Follower
from ._layers import BlobStream, LayerProgress, LayerSpec, LayerUnpacker, layer_specs
from ._registry import ClientPool, StoreSink
from .types import LocalImages, SourceOpRequest

if TYPE_CHECKING:
    from dockyard.dockerfile import ResolvedImage as FrontendImage
    from dockyard.registry import ResolvedImage

__all__ = ["FrontendImageResolver", "ImageInstance", "ImageRequest", "ImageSource", "PinnedImage"]

_MAX_INDEX_DEPTH = 4
# manifests and configs an ImageSource keeps in memory (a few KiB each)
_DOCUMENTS_KEPT = 64
_PROGRESS_INTERVAL = 0.1
_DOWNLOADS = 3  # concurrent layer downloads per pull (BuildKit's default) ...
_DOWNLOADS_AHEAD = 4 << 20  # ... the next starting when those have < 4 MiB left


def parse_resolve_mode(
    value: str | ResolveMode | None, what: str = "image.resolvemode"
) -> ResolveMode:
    if value is None or value == "":
        return ResolveMode.DEFAULT
    try:
        return ResolveMode(value)
    except ValueError:
        known = ", ".join(m.value for m in ResolveMode)
        raise UsageError(f"invalid {what} {value!r} (expected {known})") from None


def parse_layer_limit(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise InvalidDefinitionError(f"invalid {what} {value!r}: expected a number of layers")
    return limit


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRequest:
    """A ``docker-image://`` source op, parsed: the normalized ``reference``, the
    ``platform`` wanted, the ``resolve_mode`` and an optional ``layer_limit``."""

    reference: Reference
    platform: Platform
    resolve_mode: ResolveMode = ResolveMode.DEFAULT
    layer_limit: int | None = None

    @classmethod
    def parse(cls, request: SourceOpRequest, *, default_platform: Platform) -> ImageRequest:
        try:
            reference = Reference.parse(request.path)
        except UsageError as exc:
            raise InvalidDefinitionError(
                f"invalid image reference in {request.identifier!r}: {exc.message}"
            ) from exc
        return cls(
            reference=reference,
            platform=request.platform or default_platform,
            resolve_mode=parse_resolve_mode(request.attrs.get(ATTR.IMAGE_RESOLVE_MODE)),
            layer_limit=parse_layer_limit(
                request.attrs.get(ATTR.IMAGE_LAYER_LIMIT), ATTR.IMAGE_LAYER_LIMIT
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PinnedImage:
    """An image reference resolved for one platform.

    ``digest`` is what the reference points at (an index or a manifest; what a pinned
    reference names), ``manifest_digest`` the platform's image manifest. ``from_store``:
    found in the local image store (its layers may still need the registry in
    ``default`` mode).
    """

    reference: Reference
    digest: Digest
    manifest_digest: Digest
    manifest: ImageManifest
    config: ImageConfig
    config_bytes: bytes
    from_store: bool

    @property
    def canonical(self) -> str:
        """``domain/path:tag@digest``: the reference pinned to what it resolved to."""
        return str(self.reference.with_digest(self.digest))


class _Progress(LayerProgress):
    """Per-layer progress of one vertex: download bytes and extraction."""

    def __init__(self, ctx: VertexContext) -> None:
        self._ctx = ctx
        self._started: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def _emit(self, id: str, name: str, current: int, total: int, done: bool) -> None:
        now = time.time()
        if not done and now - self._last.get(id, 0.0) < _PROGRESS_INTERVAL:
            return
        self._last[id] = now
        started = self._started.setdefault(id, now)
        self._ctx.progress(
            id,
            name,
            current,
            total=total,
            started=started,
            completed=now if done else None,
        )

    def downloading(self, layer: LayerSpec, current: int, done: bool = False) -> None:
        digest = str(layer.blob.digest)
        self._emit(digest, digest, current, layer.blob.size, done)

    def extracting(self, layer: LayerSpec) -> None:
        digest = str(layer.blob.digest)
        self._emit("extract " + digest, "extracting " + digest, 0, 0, False)

    def extracted(self, layer: LayerSpec, done: bool, size: int) -> None:
        digest = str(layer.blob.digest)
        self._emit("extract " + digest, "extracting " + digest, size, layer.blob.size, done)


class LayoutConfigs(Protocol):
    """What the frontend resolver needs of an OCI layout source
    (:meth:`dockyard.source.OCILayoutSource.resolve_config`)."""

    async def resolve_config(
        self, ref: str, *, platform: Platform, session_id: str | None = None
    ) -> tuple[Digest, bytes]: ...


class ImageSource:
    """The ``docker-image`` resolver (``Worker.sources["docker-image"]``).

    ``cache`` and ``content`` are the worker's cache manager and content store (layer
    snapshots, blobs). ``registry`` holds per-host settings (plain HTTP, TLS, mirrors).
    Credentials: those of the job's client session when it forwards them (found in
    ``sessions`` by the ids under ``session_key``, the engine's ``SESSION_ID``), else
    ``credentials`` (default: the docker config of the engine's user). ``images`` is the
    local image store (names → manifest descriptors), asked first in the ``default``
    and ``local`` modes. ``platform`` is the platform of ops that name none.
    ``unpacker`` may be shared with other image sources (``oci-layout``) of the same
    cache so that they share layer snapshots. Close with :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        cache: CacheManager,
        content: ContentStore,
        registry: RegistryConfig | None = None,
        credentials: CredentialsProvider | None = None,
        sessions: SessionManager | None = None,
        session_key: JobValue[str] | None = None,
        images: LocalImages | None = None,
        platform: Platform | None = None,
        unpacker: LayerUnpacker | None = None,
    ) -> None:
        self.cache = cache
        self.content = content
        self.images = images
        self.platform = platform if platform is not None else host_platform()
        self.unpacker = unpacker if unpacker is not None else LayerUnpacker(cache, content)
        self._session_key = session_key
        self._registry = registry if registry is not None else RegistryConfig()
        self._clients = ClientPool(config=registry, credentials=credentials, sessions=sessions)
        self._downloads: SingleFlight[str, None] = SingleFlight()
        # manifests and configs read from the content store, by digest (immutable): the
        # frontend and the solver resolve the same images one after the other
        self._documents: dict[str, bytes] = {}
        # documents of just-resolved tags being written to the content store (see
        # _remember): off the resolve's clock, awaited before the store is read
        self._remembering: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Finish remembering resolved tags; close the registry clients."""
        await self.flush()
        await self._clients.aclose()

    async def flush(self) -> None:
        """Wait until the manifests and configs of the tags resolved so far are in the
        content store (:meth:`resolve_image` writes them while its caller goes on)."""
        while self._remembering:
            await asyncio.wait(tuple(self._remembering))

    def session_ids(self, ctx: VertexContext) -> tuple[str, ...]:
        if self._session_key is None:
            return ()
        return ctx.values(self._session_key)

    # -- the SourceResolver ----------------------------------------------------------------
    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> ImageInstance:
        return ImageInstance(self, ImageRequest.parse(request, default_platform=self.platform))

    # -- resolving -------------------------------------------------------------------------
    async def resolve_image(
        self,
        reference: Reference,
        *,
        platform: Platform | None = None,
        mode: ResolveMode = ResolveMode.DEFAULT,
        session_ids: Sequence[str] = (),
    ) -> PinnedImage:
        """``reference`` resolved for ``platform`` following ``mode`` (see the module
        docstring); no layer is fetched. ``NotFoundError("image not found: REF")`` when
        neither the store (as the mode allows) nor the registry has it."""
        wanted = platform if platform is not None else self.platform
        if self._remembering:
            await self.flush()  # the store is read below: a tag resolved just before
        if mode is not ResolveMode.PULL:
            found = await self._from_store(reference, wanted)
            if found is not None:
                return found
            if mode is ResolveMode.LOCAL:
                raise NotFoundError(f"image not found: {reference.familiar()} (in the local store)")
        if reference.digest is None:
            known = await self._revalidated(reference, wanted)
            if known is not None:
                return known
        client = await self._clients.client(session_ids)
        resolved = await client.resolve(reference, platform=wanted)
        manifest = resolved.manifest.manifest
        if not isinstance(manifest, ImageManifest):  # pragma: no cover - resolve ensures
            raise ContentError(f"image {reference.familiar()}: no image manifest")
        # kept in memory now; written to the content store while the caller goes on (two
        # fsynced blobs, ~15 ms on a cold build's critical path otherwise)
        for fetched in (resolved.manifest, resolved.index):
            if fetched is not None:
                self._keep(fetched.descriptor.digest, fetched.data)
        self._keep(resolved.image_manifest.config.digest, resolved.config_bytes)
        task = asyncio.get_running_loop().create_task(self._remember(reference, wanted, resolved))
        self._remembering.add(task)
        task.add_done_callback(self._remembering.discard)
        return PinnedImage(
            reference=reference,
            digest=resolved.digest,
            manifest_digest=resolved.manifest.descriptor.digest,
            manifest=manifest,
            config=resolved.config,
            config_bytes=resolved.config_bytes,
            from_store=False,
        )

    # A tag resolved in a registry is remembered (its documents kept in the content store,
    # its digest under <state>/resolved/); the next resolve asks the registry only
    # whether the tag still points there — one anonymous HEAD with the standard library
    # (dockyard.registry.tag_unchanged) instead of starting the registry client (httpx:
    # ~0.1 s to import) — and answers from the content store if it does. Any doubt
    # (credentials needed, mirrors, an error, a moved tag, a collected blob) takes the
    # registry client's way.
    def _remembered_path(self, reference: Reference, platform: Platform) -> Path:
        key = hashlib.sha256(f"{reference}\0{platform}".encode()).hexdigest()
        return self.cache.state_dir / "resolved" / key

    async def _revalidated(self, reference: Reference, platform: Platform) -> PinnedImage | None:
        try:
            digest = Digest.parse(self._remembered_path(reference, platform).read_text().strip())
        except (OSError, ValueError):
            return None
        check = tag_check(self._registry, reference, str(digest))
        if check is None or not self.content.has(digest):
            return None
        if not await asyncio.to_thread(tag_unchanged, check):
            return None
        try:
            pinned = await self._from_store(reference.with_digest(digest), platform)
        except DockyardError:
            return None
        if pinned is None:
            return None
        return dataclasses.replace(pinned, reference=reference, from_store=False)

    async def _remember(
        self, reference: Reference, platform: Platform, resolved: ResolvedImage
    ) -> None:
        """Keep what :meth:`_revalidated` needs next time (best effort)."""
        try:
            writes = [
                self.content.write_blob(fetched.data, expected_digest=fetched.descriptor.digest)
                for fetched in (resolved.manifest, resolved.index)
                if fetched is not None
            ]
            config_digest = resolved.image_manifest.config.digest
            writes.append(
                self.content.write_blob(resolved.config_bytes, expected_digest=config_digest)
            )
            await asyncio.gather(*writes)
            path = self._remembered_path(reference, platform)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(str(resolved.digest))
            os.replace(tmp, path)
        except (OSError, DockyardError):
            return

    async def _from_store(self, reference: Reference, platform: Platform) -> PinnedImage | None:
        top: Descriptor | None = None
        if self.images is not None:
            with contextlib.suppress(NotFoundError):
                top = (await self.images.get(str(reference))).target
        if top is None and reference.digest is not None and self.content.has(reference.digest):
            top = Descriptor(media_type="", digest=reference.digest, size=0)
        if top is None:
            return None
        name = reference.familiar()
        desc = top
        for _ in range(_MAX_INDEX_DEPTH):
            if not self.content.has(desc.digest):
                return None
            data = await self._document(desc.digest)
            document = parse_manifest(data, desc.media_type)
            if isinstance(document, ImageIndex):
                desc = select_platform(document, platform, name=name)
                continue
            config_desc = document.config
            if not self.content.has(config_desc.digest):
                return None
            config_bytes = await self._document(config_desc.digest)
            if len(config_bytes) != config_desc.size:
                raise ContentError(f"image {name}: config {config_desc.digest} has the wrong size")
            return PinnedImage(
                reference=reference,
                digest=top.digest,
                manifest_digest=desc.digest,
                manifest=document,
                config=ImageConfig.parse(config_bytes),
                config_bytes=config_bytes,
                from_store=True,
            )
        raise ContentError(f"image {name}: indexes nested too deeply")

    async def _document(self, digest: Digest) -> bytes:
        """Blob ``digest`` of the content store (verified), kept for the next resolve; the
        caller has checked that the store still has it."""
        data = self._documents.get(str(digest))
        if data is None:
            data = await self.content.read(digest)
            self._keep(digest, data)
        return data

    def _keep(self, digest: Digest, data: bytes) -> None:
        """Keep ``data``, the verified blob ``digest``, for :meth:`_document`."""
        if len(self._documents) >= _DOCUMENTS_KEPT:
            del self._documents[next(iter(self._documents))]
        self._documents[str(digest)] = data

    async def resolve_image_config(
        self,
        ref: str,
        platform: Platform | None = None,
        resolve_mode: ResolveMode | str = ResolveMode.DEFAULT,
        *,
        session_id: str | None = None,
    ) -> tuple[str, bytes]:
        """BuildKit's ``ResolveImageConfig``: ``(canonical reference with digest, config
        bytes)`` for ``ref`` on ``platform``, without pulling layers."""
        pinned = await self.resolve_text(ref, platform, resolve_mode, session_id=session_id)
        return pinned.canonical, pinned.config_bytes

    async def resolve_text(
        self,
        ref: str,
        platform: Platform | None = None,
        resolve_mode: ResolveMode | str = ResolveMode.DEFAULT,
        *,
        session_id: str | None = None,
    ) -> PinnedImage:
        """:meth:`resolve_image` of a reference as text (a
        :class:`~dockyard.core.UsageError` naming it when it does not parse)."""
        try:
            reference = Reference.parse(ref)
        except UsageError as exc:
            raise UsageError(f"invalid image reference {ref!r}: {exc.message}") from exc
        return await self.resolve_image(
            reference,
            platform=platform,
            mode=parse_resolve_mode(resolve_mode, "resolve mode"),
            session_ids=(session_id,) if session_id else (),
        )

    def meta_resolver(
        self, *, session_id: str | None = None, layouts: LayoutConfigs | None = None
    ) -> FrontendImageResolver:
        """The Dockerfile converter's ``ImageMetaResolver`` over this source (and
        ``layouts``, an :class:`~dockyard.source.OCILayoutSource`, for
        ``oci-layout://`` named contexts), asking with ``session_id``'s credentials."""
        return FrontendImageResolver(self, session_id=session_id, layouts=layouts)

    # -- pulling ---------------------------------------------------------------------------
    async def pull(
        self,
        image: PinnedImage,
        *,
        mode: ResolveMode = ResolveMode.DEFAULT,
        layer_limit: int | None = None,
        session_ids: Sequence[str] = (),
        ctx: VertexContext | None = None,
    ) -> ImmutableRef:
        """The image's tree (its first ``layer_limit`` layers) as a new handle the caller
        owns; see the module docstring."""
        name = image.reference.familiar()
        layers = layer_specs(
            image.manifest.layers, image.config.diff_ids, name=name, limit=layer_limit
        )
        progress = _Progress(ctx) if ctx is not None else None
        downloads: list[asyncio.Task[None]] = []
        window = DownloadWindow(_DOWNLOADS, _DOWNLOADS_AHEAD)  # bottom layer first
        async with self.content.lease() as lease:

            async def fetch(layer: LayerSpec) -> BlobStream:
                digest = layer.blob.digest
                opener = functools.partial(self.content.open, digest)
                self.content.add_to_lease(lease, digest)  # before the check: GC races
                if self.content.has(digest):
                    return BlobStream(open=opener, verified=True)
                if mode is ResolveMode.LOCAL:
                    raise NotFoundError(
                        f"image {name}: layer {digest} is not in the local store "
                        "(resolve mode local never pulls)"
                    )
                client = await self._clients.client(session_ids)
                follower: Follower | None = None
                if not self._downloads.in_flight(str(digest)):
                    follower = Follower(self.content, digest)

                received: list[Callable[[int], None]] = []

                def on_bytes(n: int) -> None:
                    for report in received:
                        report(n)
                    if progress is not None:
                        progress.downloading(layer, n)

                async def download() -> None:
                    if self.content.has(digest):
                        return
                    sink = StoreSink(
                        self.content,
                        digest=digest,
                        size=layer.blob.size,
                        lease=lease,
                        follower=follower,
                    )
                    await client.fetch_blob(image.reference, layer.blob, sink, on_progress=on_bytes)

                async def shared_download() -> None:
                    # one download per blob, whichever images want it at the same time
                    try:
                        async with window.slot(layer.blob.size) as report:
                            received.append(report)
                            await self._downloads.do(str(digest), download)
                    except BaseException as exc:
                        if follower is not None:
                            follower.failed(exc)
                        raise
                    if follower is not None:
                        follower.finished()
                    if progress is not None:
                        progress.downloading(layer, layer.blob.size, done=True)

                if follower is None:  # another pull downloads it: unpack from the store
                    await shared_download()
                    return BlobStream(open=opener, verified=True)
                # unpack while it downloads; the follower ends the blob once it is verified
                downloads.append(asyncio.get_running_loop().create_task(shared_download()))
                return BlobStream(open=follower.open, verified=True, interrupt=follower.interrupt)

            try:
                return await self.unpacker.unpack(
                    layers,
                    fetch,
                    name=name,
                    progress=progress,
                    cancelled=ctx.cancelled if ctx is not None else None,
                )
            finally:
                # all ended unless the unpack failed or found a layer unpacked meanwhile
                for task in downloads:
                    task.cancel()
                if downloads:
                    await asyncio.gather(*downloads, return_exceptions=True)


class ImageInstance:
    """One ``docker-image://`` op (a :class:`~dockyard.llbsolver.SourceInstance`)."""

    def __init__(self, source: ImageSource, request: ImageRequest) -> None:
        self.source = source
        self.request = request
        self.pinned: PinnedImage | None = None

    async def _pinned(self, ctx: VertexContext) -> PinnedImage:
        if self.pinned is None:
            what = f"resolve {self.request.reference}"
            started = time.time()
            ctx.progress(what, what, 0, started=started)
            self.pinned = await self.source.resolve_image(
                self.request.reference,
                platform=self.request.platform,
                mode=self.request.resolve_mode,
                session_ids=self.source.session_ids(ctx),
            )
            ctx.progress(what, what, 0, started=started, completed=time.time())
        return self.pinned

    async def cache_key(self, ctx: VertexContext) -> str:
        pinned = await self._pinned(ctx)
        key = str(pinned.manifest_digest)
        if self.request.layer_limit is not None:
            key += f"+layers={self.request.layer_limit}"
        return key

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        pinned = await self._pinned(ctx)
        return await self.source.pull(
            pinned,
            mode=self.request.resolve_mode,
            layer_limit=self.request.layer_limit,
            session_ids=self.source.session_ids(ctx),
            ctx=ctx,
        )


class FrontendImageResolver:
    """The Dockerfile converter's ``ImageMetaResolver`` (``dockyard.dockerfile``) over an
    :class:`ImageSource` and optionally an OCI layout source.

    What a finished build read, for ``dockyard build``'s replay of a no-op
    (``SolveResponse.replayable``): :attr:`remote` has the images it resolved in a
    registry (a replay asks the registry again whether their tags moved); :attr:`outside`
    the references it answered from elsewhere (an OCI layout: never replayed). Names
    answered from the local image store are tracked by the state directory's generation
    (:mod:`dockyard.core.statedir`)."""

    def __init__(
        self, images: ImageSource, *, session_id: str | None, layouts: LayoutConfigs | None
    ) -> None:
        self.images = images
        self.session_id = session_id
        self.layouts = layouts
        self.remote: list[PinnedImage] = []
        self.outside: list[str] = []

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: ResolveMode
    ) -> FrontendImage:
        from dockyard.dockerfile import ResolvedImage as FrontendImage

        if ref.startswith("oci-layout://"):
            if self.layouts is None:
                raise NotFoundError(f"image not found: {ref} (no OCI layout source)")
            digest, config = await self.layouts.resolve_config(
                ref.removeprefix("oci-layout://"), platform=platform, session_id=self.session_id
            )
            self.outside.append(ref)
            return FrontendImage(ref=ref, digest=str(digest), config=config)
        pinned = await self.images.resolve_text(
            ref, platform, resolve_mode, session_id=self.session_id
        )
        if not pinned.from_store:
            self.remote.append(pinned)
        return FrontendImage(ref=ref, digest=str(pinned.digest), config=pinned.config_bytes)
