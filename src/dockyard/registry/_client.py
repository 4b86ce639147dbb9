"""The OCI distribution client: resolve and pull images, push blobs and manifests.

Everything fetched is verified against its digest and size before anyone sees it:
manifests and configs are read into memory (with size limits), blobs stream into a
caller's :class:`~dockyard.registry.BlobSink`, hashed on the way, and are committed only
after the digest matched. Pulls go to configured mirrors first and fall back to the
registry; pushes go to the registry.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from dockyard import __version__
from dockyard.core import (
    ContentError,
    Digest,
    DockyardError,
    NotFoundError,
    Platform,
    first_error,
    host_platform,
)
from dockyard.core.headers import header_int
from dockyard.oci import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    Manifest,
    MediaType,
    manifest_media_type,
    parse_manifest,
    select_platform,
)

from ._blobs import BytesReader
from ._challenge import repository_scope
from ._config import Endpoint, RegistryConfig, normalize_host
from ._download import blob_get, download, verify_blob
from ._http import AnonymousDeniedError, HttpSession, error_detail, iter_raw, status_error
from ._reference import Reference
from ._retry import RegistryStatistics, RetryPolicy, TransientRegistryError
from ._upload import BlobUpload, stream_upload
from .types import BlobReader, BlobSink, CredentialsProvider

if TYPE_CHECKING:
    import httpx

__all__ = ["FetchedManifest", "PushOutcome", "RegistryClient", "ResolvedImage"]

T = TypeVar("T")

MANIFEST_LIMIT = 4 << 20
CONFIG_LIMIT = 16 << 20
_MAX_INDEX_DEPTH = 4
_CACHE_BYTES = 32 << 20
_CACHE_ITEM = 4 << 20
_ACCEPT = ", ".join(MediaType.ACCEPT_MANIFESTS)
_DEFAULT_USER_AGENT = f"dockyard/{__version__}"

PushOutcome = Literal["exists", "mounted", "uploaded"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedManifest:
    """A manifest or index as received: its descriptor, exact bytes and parsed value."""

    descriptor: Descriptor
    data: bytes
    manifest: Manifest


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedImage:
    """An image reference resolved for one platform.

    ``descriptor`` is what the reference points at (an index or a manifest);
    ``manifest`` is the platform's image manifest (the same document when the reference
    points at a single manifest) and ``index`` the index it was chosen from. ``source``
    is the host the documents came from (a mirror or the registry).
    """

    reference: Reference
    descriptor: Descriptor
    manifest: FetchedManifest
    index: FetchedManifest | None
    config: ImageConfig
    config_bytes: bytes
    source: str

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def image_manifest(self) -> ImageManifest:
        assert isinstance(self.manifest.manifest, ImageManifest)
        return self.manifest.manifest

    @property
    def pinned(self) -> Reference:
        """The reference with the digest it resolved to."""
        return self.reference.with_digest(self.descriptor.digest)

    @property
    def platform(self) -> Platform:
        """The platform the image's config declares."""
        return self.config.platform


def _pull_scope(ref: Reference) -> tuple[str, ...]:
    return (repository_scope(ref.path, ["pull"]),)


def _push_scope(ref: Reference) -> tuple[str, ...]:
    return (repository_scope(ref.path, ["pull", "push"]),)


def _is_digest(text: str) -> bool:
    try:
        Digest.parse(text)
    except ValueError:
        return False
    return True


class RegistryClient:
    """An OCI distribution API client (async; use ``async with`` or :meth:`aclose`).

    ``config`` holds per-host TLS/plain-HTTP/mirror settings; ``credentials`` answers
    for each registry host (anonymous when ``None`` or when it has nothing);
    ``retry`` governs backoff for transient failures; ``transport`` replaces the network
    (tests pass an ``httpx.MockTransport``). One client may serve many concurrent
    operations; tokens and endpoint discovery are shared between them.
    """

    def __init__(
        self,
        *,
        config: RegistryConfig | None = None,
        credentials: CredentialsProvider | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = _DEFAULT_USER_AGENT,
        timeout: float = 60.0,
    ) -> None:
        self.config = config if config is not None else RegistryConfig()
        self.retry = retry if retry is not None else RetryPolicy()
        self._session = HttpSession(
            config=self.config,
            credentials=credentials,
            retry=self.retry,
            transport=transport,
            user_agent=user_agent,
            timeout=timeout,
        )
        # Manifests and configs by digest: immutable, so cached without revalidation.
        self._documents: OrderedDict[Digest, tuple[str, bytes]] = OrderedDict()
        self._documents_size = 0

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    def statistics(self) -> RegistryStatistics:
        return self._session.counters.snapshot()

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _ref(ref: Reference | str) -> Reference:
        return ref if isinstance(ref, Reference) else Reference.parse(ref)

    async def _on_pull_endpoints(
        self,
        ref: Reference,
        op: Callable[[Endpoint], Awaitable[T]],
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        endpoints = self.config.endpoints(ref.domain)
        for mirror in endpoints[:-1]:
            try:
                return await op(mirror)
            except DockyardError:
                # A mirror that lacks the content, refuses us or is down: the registry
                # itself is the authority, try it next.
                if between is not None:
                    await between()
        return await op(endpoints[-1])

    def _push_endpoint(self, ref: Reference) -> Endpoint:
        return self.config.endpoints(ref.domain, push=True)[-1]

    def _remember(self, digest: Digest, media_type: str, data: bytes) -> None:
        if len(data) > _CACHE_ITEM or digest in self._documents:
            return
        self._documents[digest] = (media_type, data)
        self._documents_size += len(data)
        while self._documents_size > _CACHE_BYTES:
            _, (_, dropped) = self._documents.popitem(last=False)
            self._documents_size -= len(dropped)

    async def _read_limited(
        self, response: httpx.Response, limit: int, what: str, endpoint: Endpoint
    ) -> bytes:
        import httpx

        declared = header_int(response.headers.get("content-length"))
        if declared is not None and declared > limit:
            await response.aclose()
            raise ContentError(f"{what} is {declared} bytes, more than the {limit} allowed")
        parts: list[bytes] = []
        total = 0
        try:
            async for chunk in iter_raw(response):
                total += len(chunk)
                if total > limit:
                    raise ContentError(f"{what} is larger than the {limit} bytes allowed")
                parts.append(chunk)
        except httpx.TransportError as exc:
            raise TransientRegistryError(
                f"{what}: the connection to registry {endpoint.host} broke: {exc}"
            ) from exc
        finally:
            await response.aclose()
        self._session.counters.bytes_received += total
        return b"".join(parts)

    async def _small_retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        """Retry a small read whose body broke off (the request itself already retried)."""
        for attempt in range(self.retry.attempts):
            try:
                return await op()
            except TransientRegistryError as exc:
                if attempt == self.retry.attempts - 1 or not _broke_mid_body(exc):
                    raise
                self._session.counters.retries += 1
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- manifests ----------------------------------------------------------------------

    async def get_manifest(
        self, ref: Reference | str, *, expected: Descriptor | None = None
    ) -> FetchedManifest:
        """Fetch the manifest or index ``ref`` names (or ``expected``, a child of an index),
        verified against the digest asked for and the ``Docker-Content-Digest`` header.

        Raises ``NotFoundError("image not found: <ref>")`` when the registry has no such
        repository, tag or digest.
        """
        ref = self._ref(ref)
        return await self._on_pull_endpoints(
            ref, lambda ep: self._small_retrying(lambda: self._get_manifest_at(ep, ref, expected))
        )

    async def _get_manifest_at(
        self, endpoint: Endpoint, ref: Reference, expected: Descriptor | None
    ) -> FetchedManifest:
        obj = str(expected.digest) if expected is not None else ref.object
        if _is_digest(obj):
            cached = self._documents.get(Digest.parse(obj))
            if cached is not None:
                return self._fetched(ref, cached[1], cached[0], expected, obj)
        try:
            response = await self._session.request(
                endpoint,
                "GET",
                f"/v2/{ref.path}/manifests/{obj}",
                scopes=_pull_scope(ref),
                headers={"Accept": _ACCEPT},
                stream=True,
            )
        except AnonymousDeniedError as exc:
            raise _not_found_or_private(ref, endpoint) from exc
        if response.status_code == 404:
            detail = await error_detail(response)
            if expected is not None:
                raise NotFoundError(
                    f"manifest {expected.digest} of image {ref.familiar()} not found on "
                    f"registry {endpoint.host} ({detail})"
                )
            raise NotFoundError(f"image not found: {ref.familiar()}")
        if response.status_code != 200:
            raise await status_error(response, endpoint.host, f"manifest of {ref.familiar()}")
        header_digest = response.headers.get("docker-content-digest", "")
        content_type = response.headers.get("content-type", "")
        data = await self._read_limited(
            response, MANIFEST_LIMIT, f"manifest of {ref.familiar()}", endpoint
        )
        actual = Digest.from_bytes(data)
        if header_digest and header_digest.startswith("sha256:") and header_digest != actual:
            raise ContentError(
                f"manifest of {ref.familiar()} from {endpoint.host} does not match its "
                f"Docker-Content-Digest ({header_digest}; the content is {actual})"
            )
        fetched = self._fetched(ref, data, content_type, expected, obj)
        self._remember(fetched.descriptor.digest, fetched.descriptor.media_type, data)
        return fetched

    def _fetched(
        self,
        ref: Reference,
        data: bytes,
        content_type: str,
        expected: Descriptor | None,
        obj: str,
    ) -> FetchedManifest:
        if _is_digest(obj):
            wanted = Digest.parse(obj)
            actual = Digest.from_bytes(data) if wanted.algorithm == "sha256" else None
            if actual is None:
                hasher = wanted.hasher()
                hasher.update(data)
                actual = Digest.from_hex(hasher.hexdigest(), wanted.algorithm)
            if actual != wanted:
                raise ContentError(
                    f"manifest of {ref.familiar()} does not match its digest "
                    f"(asked for {wanted}, the content is {actual})"
                )
        if expected is not None and expected.size != len(data):
            raise ContentError(
                f"manifest {expected.digest} of {ref.familiar()} is {len(data)} bytes, "
                f"the index says {expected.size}"
            )
        hint = expected.media_type if expected is not None and expected.media_type else ""
        manifest = parse_manifest(data, content_type or hint)
        media_type = manifest.media_type or manifest_media_type({}, content_type or hint)
        descriptor = Descriptor(
            media_type=media_type, digest=Digest.from_bytes(data), size=len(data)
        )
        if expected is not None and _is_digest(obj):
            descriptor = Descriptor(
                media_type=media_type,
                digest=expected.digest,
                size=len(data),
                platform=expected.platform,
            )
        return FetchedManifest(descriptor=descriptor, data=data, manifest=manifest)

    async def head_manifest(self, ref: Reference | str) -> Descriptor:
        """What ``ref`` points at, from a ``HEAD`` request (no body transferred; does not
        count against Docker Hub's pull limit). Falls back to a ``GET`` when the registry
        does not say the digest."""
        ref = self._ref(ref)
        return await self._on_pull_endpoints(ref, lambda ep: self._head_manifest_at(ep, ref))

    async def _head_manifest_at(self, endpoint: Endpoint, ref: Reference) -> Descriptor:
        try:
            response = await self._session.request(
                endpoint,
                "HEAD",
                f"/v2/{ref.path}/manifests/{ref.object}",
                scopes=_pull_scope(ref),
                headers={"Accept": _ACCEPT},
            )
        except AnonymousDeniedError as exc:
            raise _not_found_or_private(ref, endpoint) from exc
        await response.aclose()
        if response.status_code == 404:
            raise NotFoundError(f"image not found: {ref.familiar()}")
        digest = response.headers.get("docker-content-digest", "")
        length = response.headers.get("content-length", "")
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        size = header_int(length)
        if (
            response.status_code == 200
            and _is_digest(digest)
            and size is not None
            and (MediaType.is_manifest(media_type) or MediaType.is_index(media_type))
        ):
            if ref.digest is not None and digest != ref.digest:
                raise ContentError(
                    f"registry {endpoint.host} reports digest {digest} for {ref.familiar()}"
                )
            return Descriptor(media_type=media_type, digest=Digest.parse(digest), size=size)
        fetched = await self._small_retrying(lambda: self._get_manifest_at(endpoint, ref, None))
        return fetched.descriptor

    async def resolve(
        self,
        ref: Reference | str,
        *,
        platform: Platform | None = None,
        strict_platform: bool = False,
    ) -> ResolvedImage:
        """Resolve ``ref`` to the image for ``platform`` (default: this host's).

        Follows an index / manifest list to the best entry for the platform (see
        :func:`dockyard.oci.select_platform`) and fetches the image config. All documents
        are verified. ``NotFoundError`` when the image or the platform is missing.
        """
        ref = self._ref(ref)
        wanted = platform if platform is not None else host_platform()
        return await self._on_pull_endpoints(
            ref, lambda ep: self._resolve_at(ep, ref, wanted, strict_platform)
        )

    async def _resolve_at(
        self, endpoint: Endpoint, ref: Reference, platform: Platform, strict: bool
    ) -> ResolvedImage:
        top = await self._small_retrying(lambda: self._get_manifest_at(endpoint, ref, None))
        current, index = top, None
        for _ in range(_MAX_INDEX_DEPTH):
            if not isinstance(current.manifest, ImageIndex):
                break
            index = current
            entry = select_platform(current.manifest, platform, strict=strict, name=ref.familiar())
            current = await self._small_retrying(
                functools.partial(self._get_manifest_at, endpoint, ref, entry)
            )
        else:
            raise ContentError(f"image {ref.familiar()}: indexes nested too deeply")
        manifest = current.manifest
        if not isinstance(manifest, ImageManifest):  # pragma: no cover - loop ensures
            raise ContentError(f"image {ref.familiar()}: no image manifest")
        config_bytes = await self._get_blob_at(endpoint, ref, manifest.config, CONFIG_LIMIT)
        config = ImageConfig.parse(config_bytes)
        return ResolvedImage(
            reference=ref,
            descriptor=top.descriptor,
            manifest=current,
            index=index,
            config=config,
            config_bytes=config_bytes,
            source=endpoint.host,
        )

    # -- blobs --------------------------------------------------------------------------

    async def get_blob(
        self, ref: Reference | str, descriptor: Descriptor, *, limit: int = CONFIG_LIMIT
    ) -> bytes:
        """A small blob (a config) in memory, verified against ``descriptor``."""
        ref = self._ref(ref)
        return await self._on_pull_endpoints(
            ref, lambda ep: self._get_blob_at(ep, ref, descriptor, limit)
        )

    async def _get_blob_at(
        self, endpoint: Endpoint, ref: Reference, descriptor: Descriptor, limit: int
    ) -> bytes:
        cached = self._documents.get(descriptor.digest)
        if cached is not None:
            return cached[1]
        if descriptor.data is not None:
            data = descriptor.data
        else:
            if descriptor.size > limit:
                raise ContentError(
                    f"blob {descriptor.digest} is {descriptor.size} bytes, more than {limit}"
                )

            async def once() -> bytes:
                response = await blob_get(self._session, endpoint, ref, descriptor, {})
                return await self._read_limited(
                    response, limit, f"blob {descriptor.digest}", endpoint
                )

            data = await self._small_retrying(once)
        verify_blob(data, descriptor, ref)
        self._remember(descriptor.digest, descriptor.media_type, data)
        return data

    async def fetch_blob(
        self,
        ref: Reference | str,
        descriptor: Descriptor,
        sink: BlobSink,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream the blob ``descriptor`` names into ``sink``, then commit it.

        The bytes are hashed as they arrive. A broken or truncated transfer is retried
        with backoff, resuming with a ``Range`` request where the registry honours it
        (else starting over after ``sink.reset()``). The sink is committed only when
        size and digest match; on any failure or cancellation it is aborted.
        ``on_progress`` gets the number of bytes received so far.
        """
        ref = self._ref(ref)
        done = False
        try:
            if descriptor.data is not None:
                verify_blob(descriptor.data, descriptor, ref)
                await sink.write(descriptor.data)
                done = True
                await sink.commit(descriptor.digest, descriptor.size)
                return
            await self._on_pull_endpoints(
                ref,
                lambda ep: download(
                    self._session, self.retry, ep, ref, descriptor, sink, on_progress
                ),
                between=sink.reset,
            )
            done = True
            await sink.commit(descriptor.digest, descriptor.size)
        finally:
            if not done:
                await sink.abort()

    # -- push ---------------------------------------------------------------------------

    async def blob_exists(self, ref: Reference | str, descriptor: Descriptor) -> bool:
        """Whether the repository already has the blob (``HEAD``, size checked)."""
        ref = self._ref(ref)
        return await self._blob_exists_at(
            self._push_endpoint(ref), ref, descriptor, _pull_scope(ref)
        )

    async def _blob_exists_at(
        self,
        endpoint: Endpoint,
        ref: Reference,
        descriptor: Descriptor,
        scopes: tuple[str, ...],
    ) -> bool:
        response = await self._session.request(
            endpoint, "HEAD", f"/v2/{ref.path}/blobs/{descriptor.digest}", scopes=scopes
        )
        await response.aclose()
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise await status_error(
                response, endpoint.host, f"checking blob {descriptor.digest} in {ref.name}"
            )
        length = response.headers.get("content-length", "")
        size = header_int(length)
        return size is None or size == descriptor.size

    async def push_blob(
        self,
        ref: Reference | str,
        descriptor: Descriptor,
        content: bytes | BlobReader,
        *,
        chunk_size: int | None = None,
        mount_from: Iterable[Reference] = (),
        on_progress: Callable[[int], None] | None = None,
    ) -> PushOutcome:
        """Make the repository of ``ref`` have the blob.

        Skips the upload when the blob is there already (``"exists"``); tries a
        cross-repository mount from each of ``mount_from`` on the same registry
        (``"mounted"``); else uploads (``"uploaded"``) in one ``PUT``, or in ``PATCH``
        chunks of ``chunk_size`` bytes when given. A failed upload starts over (the
        registry may have lost the session) with backoff. The registry checks the digest;
        a mismatch raises :class:`~dockyard.core.ContentError`.
        """
        ref = self._ref(ref)
        reader = BytesReader(content) if isinstance(content, bytes) else content
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        endpoint = self._push_endpoint(ref)
        sources = [
            m
            for m in mount_from
            if normalize_host(m.domain) == normalize_host(ref.domain) and m.path != ref.path
        ]
        scopes = _push_scope(ref) + tuple(repository_scope(m.path, ["pull"]) for m in sources)
        counters = self._session.counters
        if await self._blob_exists_at(endpoint, ref, descriptor, scopes):
            counters.blobs_skipped += 1
            return "exists"
        location: httpx.URL | None = None
        for source in sources:
            response = await self._session.request(
                endpoint,
                "POST",
                f"/v2/{ref.path}/blobs/uploads/",
                scopes=scopes,
                params={"mount": str(descriptor.digest), "from": source.path},
            )
            await response.aclose()
            if response.status_code == 201:
                counters.blobs_mounted += 1
                return "mounted"
            if response.status_code == 202 and "location" in response.headers:
                location = response.url.join(response.headers["location"])
                break
        upload = BlobUpload(self._session, endpoint, ref, descriptor, scopes, on_progress)
        for attempt in range(self.retry.attempts):
            try:
                if location is None:
                    location = await upload.start()
                if chunk_size is None:
                    await upload.whole(reader, location)
                else:
                    await upload.chunks(reader, location, chunk_size)
                return "uploaded"
            except TransientRegistryError:
                if attempt == self.retry.attempts - 1:
                    raise
                location = None
                counters.restarted_uploads += 1
                counters.retries += 1
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def push_blob_stream(
        self,
        ref: Reference | str,
        chunks: AsyncIterator[bytes],
        descriptor: Awaitable[Descriptor],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> Descriptor:
        """Upload a blob to the repository of ``ref`` while it is being made: its bytes
        as they come from ``chunks`` (one streamed ``PATCH``), closed with the digest of
        ``descriptor``, awaited after the last chunk. One attempt: a failure (a registry
        that refuses streamed uploads included) deletes the upload session and raises;
        the caller uploads the finished blob with :meth:`push_blob` instead. The registry
        checks the digest; a mismatch raises :class:`~dockyard.core.ContentError`."""
        ref = self._ref(ref)
        return await stream_upload(
            self._session,
            self._push_endpoint(ref),
            ref,
            _push_scope(ref),
            chunks,
            descriptor,
            on_progress,
        )

    async def push_manifest(
        self,
        ref: Reference | str,
        data: bytes,
        media_type: str,
        *,
        by_digest: bool = False,
    ) -> Descriptor:
        """``PUT`` manifest or index bytes, exactly as given, under the tag of ``ref`` (or
        under their digest when ``by_digest`` or when ``ref`` has no tag). Every blob
        and child manifest it references must be in the repository already."""
        ref = self._ref(ref)
        descriptor = Descriptor.of(media_type, data)
        if ref.digest is not None and ref.digest != descriptor.digest:
            raise ContentError(
                f"manifest for {ref.familiar()} has digest {descriptor.digest}, not {ref.digest}"
            )
        target = descriptor.digest if by_digest or not ref.tag else ref.tag
        endpoint = self._push_endpoint(ref)
        what = f"pushing manifest {descriptor.digest} to {ref.name}:{target}"
        response = await self._session.request(
            endpoint,
            "PUT",
            f"/v2/{ref.path}/manifests/{target}",
            scopes=_push_scope(ref),
            headers={"Content-Type": media_type},
            body=lambda: data,
        )
        if response.status_code not in (200, 201, 202):
            raise await status_error(response, endpoint.host, what)
        await response.aclose()
        self._session.counters.bytes_sent += len(data)
        stored = response.headers.get("docker-content-digest", "")
        if stored and stored != descriptor.digest:
            raise ContentError(f"{what}: registry {endpoint.host} stored it as {stored}")
        self._remember(descriptor.digest, media_type, data)
        return descriptor

    async def push_image(
        self,
        ref: Reference | str,
        *,
        manifest: bytes,
        media_type: str,
        blobs: Mapping[Digest, bytes | BlobReader],
        children: Sequence[tuple[bytes, str]] = (),
        mount_from: Iterable[Reference] = (),
        chunk_size: int | None = None,
        concurrency: int = 3,
        on_blob: Callable[[Descriptor, PushOutcome], None] | None = None,
    ) -> Descriptor:
        """Push an image: the blobs every manifest needs (skipping those present,
        mounting where possible), the ``children`` manifests of an index by digest, then
        ``manifest`` under the tag of ``ref``. Returns the descriptor of ``manifest``.
        ``on_blob`` hears what became of each blob (a blob not given that the repository
        has is ``"exists"``)."""
        ref = self._ref(ref)
        mounts = tuple(mount_from)
        needed: dict[Digest, Descriptor] = {}
        for data, kind in (*children, (manifest, media_type)):
            parsed = parse_manifest(data, kind)
            if isinstance(parsed, ImageManifest):
                for desc in (parsed.config, *parsed.layers):
                    if desc.urls and desc.media_type == MediaType.DOCKER_FOREIGN_LAYER:
                        continue
                    needed.setdefault(desc.digest, desc)
        limit = asyncio.Semaphore(max(concurrency, 1))

        async def one(desc: Descriptor) -> None:
            async with limit:
                content = blobs.get(desc.digest)
                if content is None:
                    if not await self.blob_exists(ref, desc):
                        raise NotFoundError(
                            f"pushing {ref.familiar()}: blob {desc.digest} is neither given "
                            "nor in the repository"
                        )
                    outcome: PushOutcome = "exists"
                else:
                    outcome = await self.push_blob(
                        ref, desc, content, chunk_size=chunk_size, mount_from=mounts
                    )
            if on_blob is not None:
                on_blob(desc, outcome)

        try:
            async with asyncio.TaskGroup() as group:
                for desc in needed.values():
                    group.create_task(one(desc))
        except BaseExceptionGroup as failures:
            raise first_error(failures) from None
        for data, kind in children:
            await self.push_manifest(ref, data, kind, by_digest=True)
        return await self.push_manifest(ref, manifest, media_type)


def _not_found_or_private(ref: Reference, endpoint: Endpoint) -> NotFoundError:
    # Registries such as Docker Hub answer "denied" rather than "unknown" to anonymous
    # clients for repositories that do not exist; to the user that is a missing image.
    return NotFoundError(
        f"image not found: {ref.familiar()} (registry {endpoint.host} denied anonymous "
        "access: the repository does not exist or requires authentication)"
    )


def _broke_mid_body(exc: TransientRegistryError) -> bool:
    import httpx

    return isinstance(exc.__cause__, httpx.TransportError)
