"""``dockyard image pull`` and ``dockyard image push``: the local image store and a
registry, like ``docker pull`` / ``docker push``.

Like the other image commands these work on a state directory's stores directly (no
engine, no state-dir lock; with a daemon named and no ``--state-dir`` they refuse).
Registry settings are the engine's defaults (loopback registries are spoken to in plain
HTTP, or HTTPS without verification, as builds do); credentials come from docker's
``config.json`` and credential helpers (``$DOCKER_CONFIG``), as a build's.

Pull
    The manifest the reference names; from an index the manifest of this host's platform
    (or ``--platform``), whose name then points at that manifest; ``--all-platforms``
    keeps the index and fetches every manifest in it. A reference by digest keeps what
    the digest names: an index so pulled points at its index (with the content of the
    chosen platform only, unless ``--all-platforms``). Configs and layers go into the
    content store (layers already there are not downloaded), then the name is stored —
    normalized, ``busybox`` is ``docker.io/library/busybox:latest`` — which is the name a
    build's ``FROM`` finds in the store before asking a registry.

Push
    The image a name points at: its layers and config (blobs the repository has are
    skipped after a ``HEAD``, blobs other repositories of that registry hold are mounted),
    the manifests of an index by digest, then the manifest or index under the tag.
    ``--all-tags`` pushes every tag of the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from ._common import handles_errors
from ._images import _parse_platform, _run, _state_option, open_stores, put_name

if TYPE_CHECKING:
    from dockyard.content import ContentStore, Image, ImageStore
    from dockyard.core import DockyardError, Platform
    from dockyard.oci import Descriptor, ImageManifest, Manifest
    from dockyard.registry import Reference, RegistryClient

__all__ = ["PullResult", "image_pull", "image_push", "pull_image", "push_image"]

_DOWNLOADS = 3  # layers at a time, as a build's pull
_UPLOADS = 3
_MAX_DEPTH = 4  # nested indexes

Echo = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


def _client() -> RegistryClient:
    from dockyard.registry import DockerConfigCredentials, RegistryClient, RegistryConfig

    return RegistryClient(config=RegistryConfig(), credentials=DockerConfigCredentials())


@contextlib.contextmanager
def _naming(ref: Reference, verb: str) -> Iterator[None]:
    """A registry error names the reference and the registry."""
    from dockyard.core import DockyardError

    try:
        yield
    except DockyardError as exc:
        raise _renamed(exc, ref, verb) from exc


def _renamed(exc: DockyardError, ref: Reference, verb: str) -> DockyardError:
    message = exc.message
    if ref.domain not in message:
        message += f" (registry {ref.domain})"
    if ref.familiar() not in message:
        message = f"{verb} {ref.familiar()}: {message}"
    try:
        new = type(exc)(message)
    except TypeError:  # an error class with its own constructor
        from dockyard.core import RegistryError

        new = RegistryError(message)
    return new


# -- pull --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    """What :func:`pull_image` stored: the ``name``, its ``target`` (a manifest or an
    index), the ``digest`` the registry's reference points at, whether any blob was
    downloaded, and whether the name pointed at the same target before."""

    name: str
    target: Descriptor
    digest: str
    downloaded: bool
    unchanged: bool


async def pull_image(
    client: RegistryClient,
    content: ContentStore,
    store: ImageStore,
    ref: Reference,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    echo: Echo = _quiet,
) -> PullResult:
    """Pull ``ref`` into ``content`` and name it in ``store`` (see the module docstring);
    ``echo`` gets docker's per-layer lines (``a1b2c3d4e5f6: Pull complete``)."""
    from dockyard.core import NotFoundError, host_platform
    from dockyard.oci import ImageIndex, select_platform

    wanted = platform if platform is not None else host_platform()
    name = ref.familiar()
    async with content.lease() as lease:
        top = await client.get_manifest(ref)
        # (descriptor, bytes) of every manifest and index kept, children before parents
        documents: list[tuple[Descriptor, bytes]] = []
        images: list[tuple[Descriptor, bytes, ImageManifest]] = []
        # each digest once: an index may list one child many times, level after level
        seen: set[str] = set()

        async def walk(desc: Descriptor, data: bytes, manifest: Manifest, depth: int) -> None:
            if str(desc.digest) in seen:
                return
            seen.add(str(desc.digest))
            if isinstance(manifest, ImageIndex):
                if depth >= _MAX_DEPTH:
                    from dockyard.core import ContentError

                    raise ContentError(f"image {name}: indexes nested too deeply")
                entries = (
                    manifest.manifests
                    if all_platforms
                    else (
                        select_platform(manifest, wanted, strict=platform is not None, name=name),
                    )
                )
                for entry in entries:
                    if str(entry.digest) in seen:
                        continue
                    child = await client.get_manifest(ref, expected=entry)
                    await walk(child.descriptor, child.data, child.manifest, depth + 1)
                documents.append((desc, data))
            else:
                images.append((desc, data, manifest))

        await walk(top.descriptor, top.data, top.manifest, 0)
        target = top.descriptor
        if not all_platforms and ref.digest is None and isinstance(top.manifest, ImageIndex):
            # a tag names this platform's image: the manifest chosen from the index (the
            # index is written too, unnamed: FROM REPO@INDEX-DIGEST finds it until a GC)
            target = images[0][0]
        documents = [(desc, data) for desc, data, _ in images] + documents
        downloaded = False
        for _desc, _data, manifest in images:
            config_bytes = await _config(client, content, ref, manifest, lease)
            if platform is not None and not isinstance(top.manifest, ImageIndex):
                _check_platform(ref, config_bytes, wanted)
        layers: dict[str, Descriptor] = {}
        for _desc, _data, manifest in images:
            for layer in manifest.layers:
                if not _foreign(layer):
                    layers.setdefault(str(layer.digest), layer)
        limit = asyncio.Semaphore(_DOWNLOADS)

        async def fetch(layer: Descriptor) -> None:
            nonlocal downloaded
            from dockyard.source import StoreSink

            content.add_to_lease(lease, layer.digest)  # before the check: GC races
            if content.has(layer.digest):
                echo(f"{layer.digest.short()}: Already exists")
                return
            echo(f"{layer.digest.short()}: Pulling fs layer")
            async with limit:
                sink = StoreSink(content, digest=layer.digest, size=layer.size, lease=lease)
                await client.fetch_blob(ref, layer, sink)
            downloaded = True
            echo(f"{layer.digest.short()}: Pull complete")

        try:
            async with asyncio.TaskGroup() as group:
                for layer in layers.values():
                    group.create_task(fetch(layer))
        except BaseExceptionGroup as failures:
            from dockyard.core import first_error

            raise first_error(failures) from None
        for desc, data in documents:
            await content.write_blob(data, expected_digest=desc.digest, lease=lease)
        stored_name = str(ref)
        previous = None
        with contextlib.suppress(NotFoundError):
            previous = (await store.get(stored_name)).target.digest
        await put_name(store, stored_name, _plain(target))
    return PullResult(
        name=stored_name,
        target=_plain(target),
        digest=str(top.descriptor.digest),
        downloaded=downloaded,
        unchanged=previous == target.digest,
    )


def _plain(desc: Descriptor) -> Descriptor:
    """What an image store record points at: media type, digest and size."""
    from dockyard.oci import Descriptor

    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)


def _foreign(layer: Descriptor) -> bool:
    from dockyard.oci import MediaType

    return bool(layer.urls) and layer.media_type == MediaType.DOCKER_FOREIGN_LAYER


async def _config(
    client: RegistryClient,
    content: ContentStore,
    ref: Reference,
    manifest: ImageManifest,
    lease: str,
) -> bytes:
    data = await client.get_blob(ref, manifest.config)
    await content.write_blob(data, expected_digest=manifest.config.digest, lease=lease)
    return data


def _check_platform(ref: Reference, config_bytes: bytes, wanted: Platform) -> None:
    """docker's check of ``--platform`` against a single-platform image."""
    from dockyard.core import NotFoundError, Platform
    from dockyard.oci import ImageConfig, platform_candidates

    config = ImageConfig.parse(config_bytes)
    actual = Platform.of(config.os, config.architecture, config.variant)
    if actual not in platform_candidates(wanted):
        raise NotFoundError(
            f"image with reference {ref.familiar()} was found but does not match the "
            f"specified platform: wanted {wanted}, actual: {actual}"
        )


@click.command("pull")
@_state_option
@click.option(
    "--platform",
    default=None,
    help="The platform to pull of a multi-platform image [default: this host's].",
)
@click.option(
    "-a",
    "--all-platforms",
    is_flag=True,
    help="Pull every platform of a multi-platform image (the name keeps the index).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's name.")
@click.argument("name", metavar="NAME[:TAG|@DIGEST]")
@handles_errors
def image_pull(
    state_dir: str | None, platform: str | None, all_platforms: bool, quiet: bool, name: str
) -> int:
    """Pull an image from a registry into the local store (as docker pull)."""
    from dockyard.core import UsageError
    from dockyard.registry import Reference

    plat = _parse_platform(platform)
    if plat is not None and all_platforms:
        raise UsageError("--platform and --all-platforms exclude each other")
    ref = Reference.parse(name)
    echo: Echo = _quiet if quiet else click.echo
    with open_stores(state_dir) as (content, store):
        result = _run(_pull(content, store, ref, name, plat, all_platforms, echo))
    if quiet:
        click.echo(result.name)
    return 0


async def _pull(
    content: ContentStore,
    store: ImageStore,
    ref: Reference,
    text: str,
    platform: Platform | None,
    all_platforms: bool,
    echo: Echo,
) -> PullResult:
    if ref.digest is None and ":" not in text.rpartition("/")[2]:
        echo(f"Using default tag: {ref.tag}")
    echo(f"{ref.tag or ref.digest}: Pulling from {ref.path}")
    async with _client() as client:
        with _naming(ref, "pulling"):
            result = await pull_image(
                client,
                content,
                store,
                ref,
                platform=platform,
                all_platforms=all_platforms,
                echo=echo,
            )
    echo(f"Digest: {result.digest}")
    fresh = result.unchanged and not result.downloaded
    status = "Image is up to date" if fresh else "Downloaded newer image"
    echo(f"Status: {status} for {ref.familiar()}")
    echo(result.name)
    return result


# -- push --------------------------------------------------------------------------------


async def push_image(
    client: RegistryClient,
    content: ContentStore,
    store: ImageStore,
    image: Image,
    ref: Reference,
    *,
    echo: Echo = _quiet,
) -> Descriptor:
    """Push ``image`` (a manifest, or an index with every manifest it lists) under the tag
    of ``ref``; ``echo`` gets docker's per-layer lines. Returns the pushed descriptor."""
    from dockyard.core import NotFoundError
    from dockyard.oci import ImageIndex, parse_manifest
    from dockyard.registry import FileReader

    name = ref.familiar()
    async with content.lease() as lease:
        content.add_to_lease(lease, image.target.digest)
        documents: list[tuple[Descriptor, bytes]] = []
        manifests: list[ImageManifest] = []
        seen: set[str] = set()  # each document once (an index may repeat its entries)

        async def walk(desc: Descriptor, depth: int) -> None:
            if str(desc.digest) in seen:
                return
            seen.add(str(desc.digest))
            try:
                data = await content.read(desc.digest)
            except NotFoundError:
                platform = f" for {desc.platform}" if desc.platform is not None else ""
                raise NotFoundError(
                    f"image {name}: manifest {desc.digest}{platform} is not in the local "
                    "store (an image pulled without --all-platforms holds one platform of "
                    "its index: pull it with --all-platforms to push it)"
                ) from None
            parsed = parse_manifest(data, desc.media_type)
            if isinstance(parsed, ImageIndex):
                if depth >= _MAX_DEPTH:
                    from dockyard.core import ContentError

                    raise ContentError(f"image {name}: indexes nested too deeply")
                for entry in parsed.manifests:
                    await walk(entry, depth + 1)
            else:
                manifests.append(parsed)
            documents.append((desc, data))

        await walk(image.target, 0)
        layer_digests = {
            str(layer.digest)
            for manifest in manifests
            for layer in manifest.layers
            if not _foreign(layer)
        }
        given = {
            desc.digest: FileReader(content.path(desc.digest))
            for manifest in manifests
            for desc in (manifest.config, *manifest.layers)
            if content.has(desc.digest)
        }
        mounts = await _mount_sources(content, store, ref, layer_digests)

        def report(desc: Descriptor, outcome: str) -> None:
            if str(desc.digest) not in layer_digests:
                return
            if outcome == "exists":
                echo(f"{desc.digest.short()}: Layer already exists")
            elif outcome == "mounted":
                origin = f" from {mounts[0].path}" if len(mounts) == 1 else ""
                echo(f"{desc.digest.short()}: Mounted{origin}")
            else:
                echo(f"{desc.digest.short()}: Pushed")

        top, data = documents[-1]
        return await client.push_image(
            ref,
            manifest=data,
            media_type=top.media_type,
            blobs=given,
            children=[(d, desc.media_type) for desc, d in documents[:-1]],
            mount_from=mounts,
            concurrency=_UPLOADS,
            on_blob=report,
        )


async def _mount_sources(
    content: ContentStore, store: ImageStore, ref: Reference, layers: set[str]
) -> list[Reference]:
    """Repositories of ``ref``'s registry that stored images (their manifest, or the
    manifests of their index in the content store) say hold some of ``layers``:
    candidates for a cross-repository mount instead of an upload."""
    from dockyard.registry import InvalidReferenceError, Reference

    out: list[Reference] = []
    for stored in await store.list():
        if stored.dangling:
            continue
        try:
            other = Reference.parse(stored.name, default_tag="")
        except InvalidReferenceError:
            continue
        repo = Reference(domain=other.domain, path=other.path)
        if other.domain != ref.domain or other.path == ref.path or repo in out:
            continue
        if layers & await _layers_of(content, stored.target):
            out.append(repo)
    return out


async def _layers_of(
    content: ContentStore, target: Descriptor, depth: int = 0, seen: set[str] | None = None
) -> set[str]:
    """The layer digests of the manifests below ``target`` that the content store has
    (each document read once: an index may repeat its entries)."""
    from dockyard.core import DockyardError
    from dockyard.oci import ImageIndex, parse_manifest

    seen = set() if seen is None else seen
    if str(target.digest) in seen:
        return set()
    seen.add(str(target.digest))
    try:
        manifest = parse_manifest(await content.read(target.digest), target.media_type)
    except DockyardError:
        return set()
    if not isinstance(manifest, ImageIndex):
        return {str(layer.digest) for layer in manifest.layers}
    found: set[str] = set()
    if depth < _MAX_DEPTH:
        for entry in manifest.manifests:
            found |= await _layers_of(content, entry, depth + 1, seen)
    return found


@click.command("push")
@_state_option
@click.option("-a", "--all-tags", is_flag=True, help="Push every tag of the repository.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed references.")
@click.argument("name", metavar="NAME[:TAG]")
@handles_errors
def image_push(state_dir: str | None, all_tags: bool, quiet: bool, name: str) -> int:
    """Push an image of the local store to its registry (as docker push): every blob
    the registry lacks, then the manifest (or index) under the tag; prints the digest."""
    from dockyard.core import UsageError
    from dockyard.registry import Reference

    ref = Reference.parse(name, default_tag="" if all_tags else "latest")
    if ref.digest is not None:
        raise UsageError(f"cannot push a digest reference: {name!r} (push a NAME[:TAG])")
    if all_tags and ref.tag:
        raise UsageError("tag can't be used with --all-tags/-a")
    echo: Echo = _quiet if quiet else click.echo
    with open_stores(state_dir) as (content, store):
        pushed = _run(_push(content, store, ref, all_tags, echo))
    if quiet:
        for line in pushed:
            click.echo(line)
    return 0


async def _push(
    content: ContentStore, store: ImageStore, ref: Reference, all_tags: bool, echo: Echo
) -> list[str]:
    from dockyard.core import NotFoundError
    from dockyard.registry import InvalidReferenceError, Reference

    if all_tags:
        tagged: list[tuple[Reference, Image]] = []
        for stored in await store.list():
            if stored.dangling:
                continue
            try:
                other = Reference.parse(stored.name, default_tag="")
            except InvalidReferenceError:
                continue
            if other.name == ref.name and other.tag and other.digest is None:
                tagged.append((other, stored))
        if not tagged:
            raise NotFoundError(
                f"An image does not exist locally with the tag: {ref.familiar_name}"
            )
    else:
        try:
            tagged = [(ref, await store.get(str(ref)))]
        except NotFoundError:
            raise NotFoundError(
                f"An image does not exist locally with the tag: {ref.familiar()}"
            ) from None
    echo(f"The push refers to repository [{ref.name}]")
    pushed: list[str] = []
    async with _client() as client:
        for tag_ref, stored in tagged:
            with _naming(tag_ref, "pushing"):
                desc = await push_image(client, content, store, stored, tag_ref, echo=echo)
            echo(f"{tag_ref.tag}: digest: {desc.digest} size: {desc.size}")
            pushed.append(f"{tag_ref.familiar_name}:{tag_ref.tag}@{desc.digest}")
    return pushed
