"""The exporters: ``local``, ``tar``, ``image``, ``oci`` and ``docker``.

Each is resolved from its options and the services (:func:`resolve`) into an instance
whose :meth:`export` does the work; see :mod:`dockyard.exporter.types` for the seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import DockyardError, UsageError
from dockyard.oci import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    MediaType,
    format_timestamp,
    parse_manifest,
)
from dockyard.registry import Reference

from ._image import (
    CommittedImage,
    CommittedIndex,
    commit_image,
    commit_index,
    single_platform_request,
)
from ._options import (
    AnnotationKind,
    ClientTarget,
    DockerExport,
    ExportOptions,
    ImageExport,
    ImageOptions,
    LocalExport,
    LocalPath,
    OciExport,
    TarExport,
)
from ._progress import Progress
from ._upload import LayerPusher
from .types import (
    MULTI_PLATFORM_DOCKER,
    ExportRequest,
    ExportResponse,
    ExportServices,
    platform_dir,
)

if TYPE_CHECKING:
    from dockyard.cache import ImmutableRef
    from dockyard.registry import RegistryClient
    from dockyard.session.types import ExportCaller

    from ._attest import Attestation

__all__ = [
    "DockerExporter",
    "ImageExporter",
    "LocalExporter",
    "OciExporter",
    "TarExporter",
    "resolve",
]


@contextlib.asynccontextmanager
async def _mounted(ref: ImmutableRef | None) -> AsyncIterator[Path | None]:
    if ref is None:
        yield None
        return
    mounts = await ref.mounts()
    if len(mounts) == 1 and mounts[0].type == "bind":
        yield Path(mounts[0].source)  # a plain directory (native snapshots): read in place
        return
    async with ref.mount() as root:
        yield root


@contextlib.asynccontextmanager
async def _progress(request: ExportRequest, name: str) -> AsyncIterator[Progress]:
    progress = Progress(request.reporter, name)
    progress.start()
    try:
        yield progress
    except BaseException as exc:
        progress.finish(exc)
        raise
    progress.finish()


class LocalExporter:
    """``type=local``: copies the result's files into the destination directory."""

    def __init__(self, options: LocalExport, services: ExportServices) -> None:
        self._options = options
        self._services = services

    @property
    def options(self) -> LocalExport:
        return self._options

    async def export(self, request: ExportRequest) -> ExportResponse:
        from ._dest import describe, send_directory

        epoch = _epoch(self._options.source_date_epoch, request)
        if request.multi_platform:
            await self._export_platforms(request, epoch)
            return ExportResponse()
        async with (
            _progress(request, f"copying files to {describe(self._options.dest)}") as progress,
            _mounted(request.ref) as root,
        ):
            await send_directory(
                self._options.dest,
                root,
                request.client,
                epoch=epoch,
                reporter=request.reporter,
                progress_digest=progress.digest,
            )
            files = await _statement_files(request.attestations, root)
            await _send_files(self._options.dest, files, request.client, epoch)
        return ExportResponse()

    async def _export_platforms(self, request: ExportRequest, epoch: int | None) -> None:
        """A sub-directory per platform (``platform-split``, the default), or every
        platform's files merged into the destination (``platform-split=false``: later
        platforms win), as BuildKit's local exporter does. To a client's directory (a
        daemon's build) each platform's tree travels under its sub-directory's name, so
        a client that knows nothing of platforms stores it alike."""
        from ._dest import describe, send_directory

        dest = self._options.dest
        split = self._options.platform_split is not False
        if not split and isinstance(dest, ClientTarget):
            await self._send_merged(request, dest, epoch)
            return
        for part in request.platforms:
            prefix = platform_dir(part.platform) if split else ""
            where = describe(dest) + (f" ({prefix}/)" if prefix else "")
            async with (
                _progress(request, f"copying files {part.platform} to {where}") as p,
                _mounted(part.ref) as root,
            ):
                await send_directory(
                    dest,
                    root,
                    request.client,
                    epoch=epoch,
                    reporter=request.reporter,
                    progress_digest=p.digest,
                    prefix=prefix,
                )
                files = await _statement_files(
                    part.attestations,
                    root,
                    prefix=prefix,
                    suffix="" if split else platform_dir(part.platform),
                )
                await _send_files(dest, files, request.client, epoch)

    async def _send_merged(
        self, request: ExportRequest, dest: ClientTarget, epoch: int | None
    ) -> None:
        """``platform-split=false`` to a client: the platforms' trees merged here first
        (later platforms win, whatever the file times say), then sent as one."""
        import tempfile

        from ._dest import describe, send_directory
        from ._tree import copy_into

        with tempfile.TemporaryDirectory(prefix="dockyard-merge-") as scratch:
            files: list[tuple[str, bytes]] = []
            for part in request.platforms:
                async with _mounted(part.ref) as root:
                    await asyncio.to_thread(
                        copy_into, str(root) if root else None, scratch, epoch=epoch
                    )
                    files += await _statement_files(
                        part.attestations, root, suffix=platform_dir(part.platform)
                    )
            await asyncio.to_thread(_write_files, Path(scratch), files, epoch)
            async with _progress(request, f"copying files to {describe(dest)}") as p:
                await send_directory(
                    dest,
                    Path(scratch),
                    request.client,
                    reporter=request.reporter,
                    progress_digest=p.digest,
                )


class TarExporter:
    """``type=tar``: the result's files as one deterministic tar stream."""

    def __init__(self, options: TarExport, services: ExportServices) -> None:
        self._options = options
        self._services = services

    @property
    def options(self) -> TarExport:
        return self._options

    async def export(self, request: ExportRequest) -> ExportResponse:
        from ._dest import describe, open_stream
        from ._tree import write_tree_tar

        epoch = _epoch(self._options.source_date_epoch, request)
        if request.multi_platform:
            await self._export_platforms(request, epoch)
            return ExportResponse()
        async with (
            _progress(request, f"sending tarball to {describe(self._options.dest)}"),
            _mounted(request.ref) as root,
        ):
            files = await _statement_files(request.attestations, root)
            async with open_stream(self._options.dest, request.client) as out:
                await asyncio.to_thread(
                    write_tree_tar,
                    str(root) if root is not None else None,
                    out,
                    epoch=epoch,
                    extra=files,
                )
        return ExportResponse()

    async def _export_platforms(self, request: ExportRequest, epoch: int | None) -> None:
        """One tar with a top directory per platform (BuildKit's platform split)."""
        from ._dest import describe, open_stream
        from ._tree import write_trees_tar

        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(
                _progress(request, f"sending tarball to {describe(self._options.dest)}")
            )
            trees: list[tuple[str, str | None]] = []
            files: list[tuple[str, bytes]] = []
            for part in request.platforms:
                root = await stack.enter_async_context(_mounted(part.ref))
                prefix = platform_dir(part.platform)
                trees.append((prefix, str(root) if root else None))
                files += await _statement_files(part.attestations, root, prefix=prefix)
            out = await stack.enter_async_context(open_stream(self._options.dest, request.client))
            await asyncio.to_thread(write_trees_tar, trees, out, epoch=epoch, extra=files)


async def _statement_files(
    attestations: tuple[Attestation, ...],
    root: Path | None,
    *,
    prefix: str = "",
    suffix: str = "",
) -> list[tuple[str, bytes]]:
    """The statement files of a ``local``/``tar`` export (BuildKit's): one per
    attestation, named by its path (``provenance.json``; ``provenance.SUFFIX.json``,
    ``sbom.SUFFIX.spdx.json`` when platforms share one directory) under ``prefix``,
    its subjects the regular files of ``root`` (or the attestation's own)."""
    if not attestations:
        return []
    import posixpath

    from dockyard.oci import canonical_json

    from ._attest import file_subjects, resolve_attestations, statement

    subjects = await asyncio.to_thread(file_subjects, str(root) if root is not None else None)
    out: list[tuple[str, bytes]] = []
    for attestation in await resolve_attestations(attestations):
        name = posixpath.basename(attestation.path)
        if suffix:  # BuildKit's: after the name's first part (sbom.SUFFIX.spdx.json)
            base, dot, rest = name.partition(".")
            name = f"{base}.{suffix}{dot}{rest}"
        data = canonical_json(statement(attestation, subjects), indent=2)
        out.append((f"{prefix}/{name}" if prefix else name, data))
    return out


def _write_files(root: Path, files: list[tuple[str, bytes]], epoch: int | None) -> None:
    """Write ``files`` (relative names) under directory ``root``: mode 0600, the
    ``epoch`` as their time when given. The directory holds the exported tree, which an
    image controls: a parent that is a symbolic link is refused, the file is written
    under a fresh name (never through a link planted there) and renamed over ``rel``."""
    import os
    import stat
    import tempfile

    for rel, data in files:
        path = root / rel
        parent = root
        for part in Path(rel).parent.parts:
            parent = parent / part
            try:
                st = os.lstat(parent)
            except FileNotFoundError:
                os.mkdir(parent, 0o755)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise DockyardError(f"cannot write {rel} into {root}: {parent} is not a directory")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if epoch is not None:
                os.utime(tmp, (epoch, epoch))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


async def _send_files(
    dest: object, files: list[tuple[str, bytes]], client: ExportCaller | None, epoch: int | None
) -> None:
    """Put statement ``files`` into the export's directory (a path here, or the
    client's directory: merged into it, nothing else touched)."""
    if not files:
        return
    if isinstance(dest, LocalPath):
        await asyncio.to_thread(_write_files, dest.path, files, epoch)
        return
    import tempfile

    from ._dest import send_directory

    assert isinstance(dest, ClientTarget)
    with tempfile.TemporaryDirectory(prefix="dockyard-attest-") as scratch:
        await asyncio.to_thread(_write_files, Path(scratch), files, epoch)
        await send_directory(dest, Path(scratch), client)


def _epoch(option: int | None, request: ExportRequest) -> int | None:
    return option if option is not None else request.epoch


def _layout_index(target: Descriptor, names: Sequence[Reference], epoch: int | None) -> ImageIndex:
    """The ``index.json`` of an OCI layout holding ``target`` (an image or an index): one
    entry per image name (``org.opencontainers.image.ref.name``), or one without a name."""
    from ._archive import index_entry

    created = _created(epoch)
    entries = [index_entry(target, n, created) for n in names] or [
        index_entry(target, None, created)
    ]
    return ImageIndex(manifests=tuple(entries), media_type=MediaType.OCI_INDEX)


def _created(epoch: int | None) -> str:
    if epoch is not None:
        return format_timestamp(epoch * 1_000_000_000)
    return format_timestamp(int(time.time()) * 1_000_000_000)


def _response(
    image: CommittedImage | CommittedIndex,
    names: tuple[Reference, ...],
    epoch: int | None,
    pushed: tuple[str, ...] = (),
) -> ExportResponse:
    """The response of an image or index export: its descriptor with the creation time
    (an image's also names its config, and so does the index of one attested image)."""
    annotations = dict(image.descriptor.annotations)
    annotations["org.opencontainers.image.created"] = _created(epoch)
    config_digest = None
    if isinstance(image, CommittedImage):
        config_digest = image.config_descriptor.digest
    elif len(image.images) == 1:
        config_digest = image.images[0].config_descriptor.digest
    return ExportResponse(
        descriptor=dataclasses.replace(image.descriptor, annotations=annotations),
        config_digest=config_digest,
        names=tuple(str(n) for n in names),
        pushed=pushed,
    )


def _single_platform_annotations(options: ImageOptions) -> None:
    """Refuse index annotations for a single-platform image (it has no index), as
    BuildKit's image writer does."""
    if options.annotations_for(AnnotationKind.INDEX) or options.annotations_for(
        AnnotationKind.INDEX_DESCRIPTOR
    ):
        raise UsageError(
            "index annotations not supported for single platform export "
            "(annotation-index and annotation-index-descriptor need a multi-platform build)"
        )


def _store_target(image: CommittedImage) -> Descriptor:
    """The descriptor an image store record points at (no response-only details)."""
    return Descriptor(
        media_type=image.descriptor.media_type,
        digest=image.descriptor.digest,
        size=image.descriptor.size,
        annotations={k: v for k, v in image.descriptor.annotations.items() if k != "config.digest"},
    )


class ImageExporter:
    """``type=image`` / ``type=registry``: an image in the local store under each name,
    pushed when asked."""

    def __init__(self, options: ImageExport, services: ExportServices) -> None:
        if options.store and services.images is None and not options.push:
            raise UsageError("this engine has no local image store: use push=true or store=false")
        self._options = options
        self._services = services

    @property
    def options(self) -> ImageExport:
        return self._options

    async def export(self, request: ExportRequest) -> ExportResponse:
        if request.multi_platform:
            return await self._export_platforms(request)
        if request.attestations:
            request = single_platform_request(request, self._services.platform)
            return await self._export_platforms(request)
        _single_platform_annotations(self._options.image)
        opts = self._options
        content = self._services.content
        epoch = _epoch(opts.image.source_date_epoch, request)
        async with contextlib.AsyncExitStack() as stack:
            progress = await stack.enter_async_context(_progress(request, "exporting to image"))
            lease = await stack.enter_async_context(content.lease())
            client, pusher = await self._open_push(stack)
            image = await commit_image(
                request.ref,
                request.image_config,
                opts.image,
                content,
                oci=opts.image.use_oci(False),
                epoch=epoch,
                lease=lease,
                platform=self._services.platform,
                progress=progress,
                inline_cache=request.inline_cache,
                pusher=pusher,
            )
            step = progress.step("manifest", f"exporting manifest {image.descriptor.digest}")
            step.done()
            if opts.store and self._services.images is not None:
                await self._store(image, progress)
            pushed: tuple[str, ...] = ()
            if client is not None:
                if pusher is not None:
                    await pusher.wait()
                pushed = await self._push(image, progress, client)
        return _response(image, opts.image.names, epoch, pushed)

    async def _export_platforms(self, request: ExportRequest) -> ExportResponse:
        """An index of a manifest per platform, stored under the names and pushed
        (every manifest by digest, then the index under each name)."""
        opts = self._options
        content = self._services.content
        epoch = _epoch(opts.image.source_date_epoch, request)
        async with contextlib.AsyncExitStack() as stack:
            progress = await stack.enter_async_context(_progress(request, "exporting to image"))
            lease = await stack.enter_async_context(content.lease())
            client, pusher = await self._open_push(stack)
            index = await commit_index(
                request, opts.image, content, lease=lease, progress=progress, pusher=pusher
            )
            if opts.store and self._services.images is not None:
                await self._store_target(index.descriptor, progress)
            pushed: tuple[str, ...] = ()
            if client is not None:
                if pusher is not None:
                    await pusher.wait()
                pushed = await self._push_index(index, progress, client)
        return _response(index, opts.image.names, epoch, pushed)

    async def _push_index(
        self, index: CommittedIndex, progress: Progress, client: RegistryClient
    ) -> tuple[str, ...]:
        from dockyard.registry import FileReader

        content = self._services.content
        blobs = {
            d.digest: FileReader(content.path(d.digest))
            for image in index.images
            for d in (image.config_descriptor, *image.layers)
        }
        blobs.update(
            (d.digest, FileReader(content.path(d.digest)))
            for attestation in index.attestations
            for d in (attestation.config, *attestation.layers)
        )
        children = [(image.manifest_bytes, image.manifest.media_type) for image in index.images]
        children += [(a.manifest_bytes, a.manifest.media_type) for a in index.attestations]
        pushed: list[str] = []
        for name in self._options.image.names:
            step = progress.step(f"push-{name}", f"pushing {name.familiar()}")
            mounts: list[Reference] = []
            for image in index.images:
                mounts += [m for m in await self._mount_sources(image, name) if m not in mounts]
            desc = await client.push_image(
                self._push_target(name),
                manifest=index.index_bytes,
                media_type=index.index.media_type,
                blobs=blobs,
                children=children,
                mount_from=mounts,
            )
            step.done()
            pushed.append(f"{name.name}@{desc.digest}")
        return tuple(pushed)

    async def _open_push(
        self, stack: contextlib.AsyncExitStack
    ) -> tuple[RegistryClient | None, LayerPusher | None]:
        """With ``push=true``: the registry client (kept open by ``stack``) and a pusher
        that sends the new layers to the (first) push target while they are compressed;
        ``(None, None)`` otherwise."""
        opts = self._options
        if not (opts.push and opts.image.names):
            return None, None
        client = await stack.enter_async_context(self._client())
        pusher = LayerPusher(client, self._push_target(opts.image.names[0]))
        stack.push_async_callback(pusher.aclose)
        return client, pusher

    def _push_target(self, name: Reference) -> Reference:
        if self._options.push_by_digest:
            return Reference(domain=name.domain, path=name.path, tag="")
        return name

    async def _store(self, image: CommittedImage, progress: Progress) -> None:
        await self._store_target(_store_target(image), progress)

    async def _store_target(self, target: Descriptor, progress: Progress) -> None:
        images = self._services.images
        assert images is not None
        opts = self._options
        digest = target.digest
        names: list[str] = [str(n) for n in opts.image.names]
        if opts.name_canonical:
            names += [f"{n.name}@{digest}" for n in opts.image.names]
        if opts.dangling_name_prefix and not (opts.dangling_empty_only and names):
            try:
                prefix = Reference.parse(opts.dangling_name_prefix, default_tag="")
            except ValueError as exc:
                raise UsageError(f"invalid dangling-name-prefix: {exc}") from exc
            names.append(f"{prefix.name}@{digest}")
        if not names:
            await images.put(None, target)
            return
        for name in names:
            step = progress.step(f"name-{name}", f"naming to {name}")
            await images.put(name, target)
            step.done()

    async def _push(
        self, image: CommittedImage, progress: Progress, client: RegistryClient
    ) -> tuple[str, ...]:
        from dockyard.registry import FileReader

        content = self._services.content
        opts = self._options
        blobs = {
            d.digest: FileReader(content.path(d.digest))
            for d in (image.config_descriptor, *image.layers)
        }
        pushed: list[str] = []
        for name in opts.image.names:
            step = progress.step(f"push-{name}", f"pushing {name.familiar()}")
            desc = await client.push_image(
                self._push_target(name),
                manifest=image.manifest_bytes,
                media_type=image.manifest.media_type,
                blobs=blobs,
                mount_from=await self._mount_sources(image, name),
            )
            step.done()
            pushed.append(f"{name.name}@{desc.digest}")
        return tuple(pushed)

    async def _mount_sources(self, image: CommittedImage, name: Reference) -> list[Reference]:
        """Repositories on ``name``'s registry that stored images say hold some of the
        layers (for cross-repository mounts instead of uploads)."""
        from dockyard.registry import InvalidReferenceError

        images = self._services.images
        if images is None:
            return []
        wanted = {layer.digest for layer in image.layers}
        out: list[Reference] = []
        for stored in await images.list():
            if stored.dangling or not MediaType.is_manifest(stored.target.media_type):
                continue
            try:
                ref = Reference.parse(stored.name, default_tag="")
            except InvalidReferenceError:
                continue
            if ref.domain != name.domain or ref.path == name.path or ref in out:
                continue
            try:
                data = await self._services.content.read(stored.target.digest)
            except DockyardError:
                continue
            manifest = parse_manifest(data, stored.target.media_type)
            if isinstance(manifest, ImageManifest) and wanted & {
                layer.digest for layer in manifest.layers
            }:
                out.append(Reference(domain=ref.domain, path=ref.path, tag=""))
        return out

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[RegistryClient]:
        from dockyard.registry import RegistryClient, RegistryConfig

        services = self._services
        if services.registry is not None and not self._options.insecure:
            yield services.registry
            return
        config = services.registry_config or (
            services.registry.config if services.registry is not None else RegistryConfig()
        )
        if self._options.insecure:
            hosts = dict(config.hosts)
            for name in self._options.image.names:
                current = config.host(name.domain)
                hosts[name.domain] = dataclasses.replace(current, insecure=True)
            config = RegistryConfig(hosts=hosts, loopback_insecure=config.loopback_insecure)
        client = RegistryClient(config=config, credentials=services.credentials)
        try:
            yield client
        finally:
            await client.aclose()


class _ArchiveExporter:
    """``oci`` and ``docker``: the image written as an archive to the destination."""

    docker = False

    def __init__(self, options: OciExport | DockerExport, services: ExportServices) -> None:
        self._options = options
        self._services = services

    async def export(self, request: ExportRequest) -> ExportResponse:
        # archives, destinations and tar code load for the exports that write them
        from ._archive import ArchiveImage, write_archive
        from ._dest import describe, open_stream

        opts = self._options
        content = self._services.content
        epoch = _epoch(opts.image.source_date_epoch, request)
        kind = "docker" if self.docker else "oci"
        if request.multi_platform:
            if self.docker:
                raise UsageError(MULTI_PLATFORM_DOCKER)
            return await self._export_platforms(request, epoch)
        if request.attestations:
            request = single_platform_request(request, self._services.platform)
            return await self._export_platforms(request, epoch)
        _single_platform_annotations(opts.image)
        async with (
            _progress(request, f"exporting to {kind} image format") as progress,
            content.lease() as lease,
        ):
            image = await commit_image(
                request.ref,
                request.image_config,
                opts.image,
                content,
                oci=opts.image.use_oci(not self.docker),
                epoch=epoch,
                lease=lease,
                platform=self._services.platform,
                progress=progress,
                inline_cache=request.inline_cache,
            )
            names = opts.image.names
            index = _layout_index(image.descriptor, names, epoch)
            archived = ArchiveImage(
                descriptor=image.descriptor,
                config=image.config_descriptor,
                layers=image.layers,
                names=names,
            )
            step = progress.step("archive", f"sending tarball to {describe(opts.dest)}")
            mtime = epoch if epoch is not None else 0
            if not opts.tar:
                assert isinstance(opts.dest, LocalPath)
                await write_archive(
                    content, [archived], index, opts.dest.path, docker=self.docker, tar=False
                )
            else:
                async with open_stream(opts.dest, request.client) as out:
                    await write_archive(
                        content, [archived], index, out, docker=self.docker, mtime=mtime
                    )
            step.done()
        return _response(image, names, epoch)

    async def _export_platforms(self, request: ExportRequest, epoch: int | None) -> ExportResponse:
        """An OCI layout whose ``index.json`` points at the image index (an entry per
        name), as BuildKit's oci exporter writes a multi-platform image. A ``docker``
        archive (one attested image) adds ``manifest.json`` for its image."""
        from dockyard.content import write_oci_layout

        from ._dest import describe, open_stream

        opts = self._options
        content = self._services.content
        if self.docker:
            return await self._export_docker_index(request, epoch)
        async with (
            _progress(request, "exporting to oci image format") as progress,
            content.lease() as lease,
        ):
            committed = await commit_index(
                request, opts.image, content, lease=lease, progress=progress
            )
            names = opts.image.names
            layout = _layout_index(committed.descriptor, names, epoch)
            step = progress.step("archive", f"sending tarball to {describe(opts.dest)}")
            if not opts.tar:
                assert isinstance(opts.dest, LocalPath)
                await write_oci_layout(content, layout, opts.dest.path)
            else:
                async with open_stream(opts.dest, request.client) as out:
                    await write_oci_layout(
                        content, layout, out, tar=True, mtime=epoch if epoch is not None else 0
                    )
            step.done()
        return _response(committed, names, epoch)

    async def _export_docker_index(
        self, request: ExportRequest, epoch: int | None
    ) -> ExportResponse:
        """``type=docker`` of an attested image: the index (image and attestation
        manifests) in the OCI layout, ``manifest.json`` naming the image for ``docker
        load``."""
        from ._archive import ArchiveImage, write_archive
        from ._dest import describe, open_stream

        opts = self._options
        content = self._services.content
        async with (
            _progress(request, "exporting to docker image format") as progress,
            content.lease() as lease,
        ):
            committed = await commit_index(
                request, opts.image, content, lease=lease, progress=progress
            )
            names = opts.image.names
            layout = _layout_index(committed.descriptor, names, epoch)
            image = committed.images[0]
            archived = ArchiveImage(
                descriptor=image.descriptor,
                config=image.config_descriptor,
                layers=image.layers,
                names=names,
            )
            extra = [committed.descriptor]
            for attestation in committed.attestations:
                extra += [attestation.descriptor, attestation.config, *attestation.layers]
            step = progress.step("archive", f"sending tarball to {describe(opts.dest)}")
            if not opts.tar:
                assert isinstance(opts.dest, LocalPath)
                await write_archive(
                    content,
                    [archived],
                    layout,
                    opts.dest.path,
                    docker=True,
                    tar=False,
                    extra_blobs=extra,
                )
            else:
                async with open_stream(opts.dest, request.client) as out:
                    await write_archive(
                        content,
                        [archived],
                        layout,
                        out,
                        docker=True,
                        mtime=epoch if epoch is not None else 0,
                        extra_blobs=extra,
                    )
            step.done()
        return _response(committed, names, epoch)


class OciExporter(_ArchiveExporter):
    """``type=oci``: an OCI image layout tarball (or directory with ``tar=false``) that
    ``skopeo copy oci-archive:`` and ``umoci`` read."""

    docker = False

    def __init__(self, options: OciExport, services: ExportServices) -> None:
        super().__init__(options, services)
        self._oci_options = options

    @property
    def options(self) -> OciExport:
        return self._oci_options


class DockerExporter(_ArchiveExporter):
    """``type=docker``: a tarball ``docker load`` accepts."""

    docker = True

    def __init__(self, options: DockerExport, services: ExportServices) -> None:
        super().__init__(options, services)
        self._docker_options = options

    @property
    def options(self) -> DockerExport:
        return self._docker_options


Exporter = LocalExporter | TarExporter | ImageExporter | OciExporter | DockerExporter


def resolve(options: ExportOptions, services: ExportServices) -> Exporter:
    """The exporter instance for ``options`` bound to ``services``; raises
    :class:`UsageError` for options the services cannot serve."""
    if isinstance(options, LocalExport):
        return LocalExporter(options, services)
    if isinstance(options, TarExport):
        return TarExporter(options, services)
    if isinstance(options, ImageExport):
        return ImageExporter(options, services)
    if isinstance(options, OciExport):
        return OciExporter(options, services)
    if isinstance(options, DockerExport):
        return DockerExporter(options, services)
    raise DockyardError(f"unknown export options {options!r}")  # pragma: no cover
