"""The local image store on the command line: ``dockyard images``, ``dockyard rmi`` and
``dockyard image import|load|save|ls|rm|inspect|tag|history`` (``image push|pull``, the
registry's side, load lazily from :mod:`dockyard.cli._image_registry`).

These open the state directory's content store and image store directly (no engine, no
state-dir lock): they work beside a running build, as ``docker images`` does. Blobs an
``rmi`` leaves unreferenced are reclaimed by ``dockyard prune``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

from ._common import STATE_DIR_HELP, handles_errors
from .main import LazyGroup

if TYPE_CHECKING:
    from dockyard.content import ContentStore, Image, ImageStore, LocalImage
    from dockyard.core import Digest, Platform
    from dockyard.exporter import ArchiveImage, CompressionOptions, LayerCompressor
    from dockyard.oci import Descriptor, History
    from dockyard.registry import Reference

__all__ = ["image", "images", "rmi"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _state_option(command: F) -> F:
    return click.option(
        "--state-dir",
        "state_dir",
        metavar="DIR",
        envvar="DOCKYARD_STATE_DIR",
        type=click.Path(file_okay=False),
        help=STATE_DIR_HELP,
    )(command)


@contextlib.contextmanager
def open_stores(state_dir: str | None) -> Iterator[tuple[ContentStore, ImageStore]]:
    """The content store and image store of ``state_dir`` (default: the engine's).

    The image commands work on a state directory: with a daemon named (``dockyard
    --addr``, ``$DOCKYARD_HOST``) and no ``--state-dir`` they refuse, rather than show or
    change another store than the daemon's."""
    from dockyard.content import ContentStore, ImageStore
    from dockyard.engine import default_state_dir

    if not state_dir:
        _no_daemon_address()
    state = Path(state_dir) if state_dir else default_state_dir()
    with _state_errors(state):
        content = ContentStore(state / "content")
    try:
        with _state_errors(state):
            images = ImageStore.open(state, content)
        try:
            yield content, images
        finally:
            images.close()
    finally:
        content.close()


@contextlib.contextmanager
def _state_errors(state: Path) -> Iterator[None]:
    """Opening the stores of ``state``: a directory that cannot be made or written (a
    read-only file system, no permission) is a :class:`~dockyard.core.DockyardError`
    naming it, as the engine's commands say it, not an OSError/sqlite3 traceback."""
    import sqlite3

    from dockyard.core import DockyardError

    try:
        yield
    except OSError as exc:
        raise DockyardError(f"cannot use state directory {state}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        why = str(exc)
        if state.is_dir() and not os.access(state, os.W_OK):
            why = "it is not writable"
        raise DockyardError(f"cannot use state directory {state}: {why}") from exc


def _no_daemon_address() -> None:
    from dockyard.core import UsageError

    ctx = click.get_current_context(silent=True)
    address = (ctx.meta.get("dockyard.addr") if ctx is not None else None) or os.environ.get(
        "DOCKYARD_HOST", ""
    ).strip()
    if address and address != "embedded":
        raise UsageError(
            f"the image commands read a state directory, not a daemon ({address}): "
            "pass --state-dir with the daemon's state directory"
        )


def _run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


# -- display helpers ---------------------------------------------------------------------


def human_size(size: int) -> str:
    """``1.23MB``, ``5.6kB``, ``123B`` (decimal units, as docker)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_ago(seconds: float) -> str:
    """docker's ``HumanDuration`` + ``ago``."""
    s = max(seconds, 0.0)
    if s < 1:
        return "Less than a second ago"
    if s < 60:
        n = int(s)
        return f"{n} second{'s' if n != 1 else ''} ago"
    minutes = s / 60
    if minutes < 2:
        return "About a minute ago"
    if minutes < 60:
        return f"{int(minutes)} minutes ago"
    hours = minutes / 60
    if hours < 2:
        return "About an hour ago"
    if hours < 48:
        return f"{int(hours)} hours ago"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days ago"
    if days < 60:
        return f"{int(days / 7)} weeks ago"
    if days < 365 * 2:
        return f"{int(days / 30)} months ago"
    return f"{int(days / 365)} years ago"


def _repo_tag(image: Image) -> tuple[str, str]:
    from dockyard.registry import InvalidReferenceError, Reference

    if image.dangling:
        return "<none>", "<none>"
    try:
        ref = Reference.parse(image.name, default_tag="")
    except InvalidReferenceError:
        return image.name, "<none>"
    return ref.familiar_name, ref.tag or "<none>"


def _familiar(name: str) -> str:
    from dockyard.registry import InvalidReferenceError, Reference

    try:
        return Reference.parse(name, default_tag="").familiar()
    except InvalidReferenceError:
        return name


@contextlib.contextmanager
def _table() -> Iterator[list[tuple[str, ...]]]:
    rows: list[tuple[str, ...]] = []
    yield rows
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        click.echo(line)


async def _details(images: ImageStore, image: Image, platform: Platform | None) -> tuple[str, int]:
    """(created text, content size) of ``image``; ``("N/A", 0)`` where blobs are gone."""
    from dockyard.core import DockyardError

    try:
        local = await images.resolve(image, platform)
    except DockyardError:
        return "N/A", 0
    size = local.manifest.config.size + sum(layer.size for layer in local.manifest.layers)
    created = "N/A"
    if local.config.created:
        from dockyard.exporter import parse_timestamp

        with contextlib.suppress(DockyardError):
            when = parse_timestamp(local.config.created) / 1e9
            created = human_ago(time.time() - when)
    return created, size


# -- images ------------------------------------------------------------------------------


@click.command("images")
@_state_option
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not shorten IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.argument("repository", required=False)
@handles_errors
def images(
    state_dir: str | None,
    quiet: bool,
    no_trunc: bool,
    digests: bool,
    fmt: str,
    repository: str | None,
) -> int:
    """List images in the local store (optionally those of REPOSITORY[:TAG])."""
    with open_stores(state_dir) as (_content, store):
        return _run(_images(store, quiet, no_trunc, digests, fmt, repository))


async def _images(
    store: ImageStore,
    quiet: bool,
    no_trunc: bool,
    digests: bool,
    fmt: str,
    repository: str | None,
) -> int:
    listed = await store.list()
    if repository:
        want_repo, _, want_tag = repository.partition(":")
        if "/" in want_tag:  # a registry port, not a tag
            want_repo, want_tag = repository, ""
        listed = [
            i
            for i in listed
            if _repo_tag(i)[0] in (want_repo, _familiar(want_repo))
            and (not want_tag or _repo_tag(i)[1] == want_tag)
        ]
    if quiet:
        seen: set[str] = set()
        for image in listed:
            text = image.id if no_trunc else image.id.short()
            if text not in seen:
                seen.add(text)
                click.echo(text)
        return 0
    rows: list[dict[str, Any]] = []
    for image in listed:
        repo, tag = _repo_tag(image)
        created, size = await _details(store, image, None)
        rows.append(
            {
                "Repository": repo,
                "Tag": tag,
                "ID": str(image.id) if no_trunc else image.id.short(),
                "Digest": str(image.target.digest),
                "CreatedSince": created,
                "Size": human_size(size),
            }
        )
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return 0
    with _table() as table:
        header = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else [])
        table.append((*header, "IMAGE ID", "CREATED", "SIZE"))
        for row in rows:
            cells = [row["Repository"], row["Tag"]] + ([row["Digest"]] if digests else [])
            table.append((*cells, row["ID"], row["CreatedSince"], row["Size"]))
    return 0


# -- rmi ---------------------------------------------------------------------------------


async def find_images(store: ImageStore, text: str) -> list[Image]:
    """What ``text`` names: an image name (normalized like docker: ``app`` is
    ``docker.io/library/app:latest``) or an ID or digest prefix. Raises
    :class:`~dockyard.core.NotFoundError` (``No such image``)."""
    from dockyard.core import NotFoundError
    from dockyard.registry import InvalidReferenceError, Reference

    ref: Reference | None = None
    with contextlib.suppress(InvalidReferenceError):
        ref = Reference.parse(text)
        with contextlib.suppress(NotFoundError):
            return await store.lookup(str(ref))
    if ref is not None and ref.digest is not None:
        # REPO@DIGEST: an image of that repository whose target is the digest (docker's
        # repo digests), whatever its tag
        same_repo = [
            i for i in await store.by_digest(ref.digest) if _repository(i.name) == ref.name
        ]
        if same_repo:
            return same_repo
    try:
        return await store.lookup(text)
    except NotFoundError:
        raise NotFoundError(f"No such image: {text}") from None


def _repository(name: str) -> str | None:
    """``domain/path`` of a stored name (``None`` for a dangling or odd one)."""
    from dockyard.registry import InvalidReferenceError, Reference

    try:
        return Reference.parse(name, default_tag="").name
    except InvalidReferenceError:
        return None


async def _has_id(store: ImageStore, image_id: Digest) -> bool:
    """Whether a name in ``store`` still holds the image ``image_id`` (its config)."""
    from dockyard.core import NotFoundError

    try:
        return any(i.id == image_id for i in await store.lookup(str(image_id)))
    except NotFoundError:
        return False


async def _rmi(store: ImageStore, names: tuple[str, ...], force: bool) -> int:
    from dockyard.core import DockyardError, UsageError
    from dockyard.registry import InvalidReferenceError, Reference

    failed = 0
    for text in names:
        try:
            found = await find_images(store, text)
            targets = {i.target.digest for i in found}
            by_name = False
            with contextlib.suppress(InvalidReferenceError):
                by_name = len(found) == 1 and found[0].name == str(Reference.parse(text))
            if len(targets) > 1:
                raise UsageError(f"{text!r} is ambiguous: it matches {len(targets)} images")
            if not by_name and len(found) > 1 and not force:
                raise UsageError(
                    f"unable to delete {found[0].id.short()} (must be forced) - image is "
                    f"referenced in multiple repositories: "
                    + ", ".join(_familiar(i.name) for i in found)
                )
            for image in found:
                await store.delete(image.name)
                if not image.dangling:
                    click.echo(f"Untagged: {_familiar(image.name)}")
            # docker's "Deleted" is the image ID: another name may keep it under a
            # manifest of its own (an OCI archive loaded beside a Docker-typed build)
            if not await _has_id(store, found[0].id):
                click.echo(f"Deleted: {found[0].id}")
        except DockyardError as exc:
            click.echo(f"Error response: {exc}", err=True)
            failed = 1
    return failed


@click.command("rmi")
@_state_option
@click.option("-f", "--force", is_flag=True, help="Remove every name of an image given by ID.")
@click.argument("names", nargs=-1, required=True, metavar="NAME|ID...")
@handles_errors
def rmi(state_dir: str | None, force: bool, names: tuple[str, ...]) -> int:
    """Remove images from the local store (by name, or by ID or digest prefix)."""
    with open_stores(state_dir) as (_content, store):
        return _run(_rmi(store, names, force))


# -- image group -------------------------------------------------------------------------


@click.group(
    "image",
    cls=LazyGroup,
    lazy_commands={
        "pull": "dockyard.cli._image_registry:image_pull",
        "push": "dockyard.cli._image_registry:image_push",
    },
)
def image() -> None:
    """Manage images in the local store."""


image.add_command(images, "ls")
image.add_command(rmi, "rm")


def _parse_platform(text: str | None) -> Platform | None:
    if not text:
        return None
    from dockyard.core import Platform, UsageError

    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise UsageError(f"--platform: {exc}") from exc


def _parse_name(text: str | None) -> Reference | None:
    if not text:
        return None
    from dockyard.core import UsageError
    from dockyard.registry import Reference

    ref = Reference.parse(text)
    if ref.digest is not None:
        raise UsageError(f"invalid name {text!r}: a tag, not a digest")
    return ref


@image.command("import")
@_state_option
@click.option("-t", "--tag", "tag", metavar="NAME", help="Name the image (REPOSITORY[:TAG]).")
@click.option("-m", "--message", default="", help="A comment for the history entry.")
@click.option("--platform", default=None, help="The platform of the image [default: this host].")
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "uncompressed"]),
    default="gzip",
    show_default=True,
)
@click.option("--oci-mediatypes", is_flag=True, help="OCI media types instead of Docker's.")
@click.argument("source", metavar="ROOTFS.tar|DIR|-")
@click.argument("name", required=False, metavar="[NAME]")
@handles_errors
def image_import(
    state_dir: str | None,
    tag: str | None,
    message: str,
    platform: str | None,
    compression: str,
    oci_mediatypes: bool,
    source: str,
    name: str | None,
) -> int:
    """Make a one-layer image from a root filesystem tarball (compressed or not), a
    directory, or - (a tarball on stdin), like docker import; prints its ID."""
    from dockyard.core import UsageError, host_platform
    from dockyard.exporter import Compression, CompressionOptions

    if tag and name:
        raise UsageError("give the name once: either -t NAME or a second argument")
    ref = _parse_name(tag or name)
    options = CompressionOptions(type=Compression(compression))
    plat = _parse_platform(platform) or host_platform()
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch_text and not epoch_text.isdigit():
        raise UsageError(f"invalid SOURCE_DATE_EPOCH {epoch_text!r}")
    created = int(epoch_text) if epoch_text else int(time.time())
    is_dir = source != "-" and Path(source).is_dir()
    with open_stores(state_dir) as (content, store):
        image_id = _run(
            _import(
                content,
                store,
                source,
                ref,
                is_dir=is_dir,
                options=options,
                oci=oci_mediatypes or options.type is Compression.ZSTD,
                platform=plat,
                created=created,
                message=message,
            )
        )
    click.echo(image_id)
    return 0


class _Tee:
    """Reads from ``src``, hashing and compressing what passes (a tar reader reads it)."""

    def __init__(self, src: BinaryIO, compressor: LayerCompressor) -> None:
        import hashlib

        self._src = src
        self._compressor = compressor
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._src.read(size)
        if data:
            self.hash.update(data)
            self._compressor.write(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


async def _import(
    content: ContentStore,
    store: ImageStore,
    source: str,
    ref: Reference | None,
    *,
    is_dir: bool,
    options: CompressionOptions,
    oci: bool,
    platform: Platform,
    created: int,
    message: str,
) -> str:
    import tarfile
    import uuid

    from dockyard.core import ContentError, Digest, NotFoundError
    from dockyard.exporter import IngestSink, new_compressor, open_decompressed, write_tree_tar
    from dockyard.oci import (
        Descriptor,
        History,
        ImageConfig,
        ImageManifest,
        MediaType,
        format_timestamp,
    )

    async with content.lease() as lease:
        writer = content.writer(f"import-{uuid.uuid4().hex}")
        async with writer:
            compressor = new_compressor(options, IngestSink(writer))

            def from_dir() -> str:
                h = _HashingWriter(compressor)
                write_tree_tar(source, h)  # type: ignore[arg-type]
                compressor.close()
                return "sha256:" + h.hash.hexdigest()

            def from_stream() -> str:
                if source == "-":
                    raw = sys.stdin.buffer
                else:
                    try:
                        raw = open(source, "rb")  # noqa: SIM115 - closed below
                    except FileNotFoundError as exc:
                        raise NotFoundError(f"{source} does not exist") from exc
                try:
                    stream, _kind = open_decompressed(raw)
                    tee = _Tee(stream, compressor)
                    try:
                        with tarfile.open(fileobj=tee, mode="r|") as tf:  # type: ignore[call-overload]
                            for _member in tf:
                                pass
                    except tarfile.TarError as exc:
                        raise ContentError(f"{source} is not a tar archive: {exc}") from exc
                    tee.drain()
                    compressor.close()
                    return "sha256:" + tee.hash.hexdigest()
                finally:
                    if raw is not sys.stdin.buffer:
                        raw.close()

            try:
                diff_id = Digest(await asyncio.to_thread(from_dir if is_dir else from_stream))
            except BaseException:
                compressor.abort()
                await writer.abort()
                raise
            info = await writer.commit(lease=lease)
        stamp = format_timestamp(created * 1_000_000_000)
        config = ImageConfig(
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
            created=stamp,
            diff_ids=(diff_id,),
            history=(
                History(
                    created=stamp,
                    comment=message or f"Imported from {'-' if source == '-' else source}",
                ),
            ),
        )
        config_bytes = config.to_bytes()
        config_desc = Descriptor.of(
            MediaType.OCI_CONFIG if oci else MediaType.DOCKER_CONFIG, config_bytes
        )
        manifest = ImageManifest(
            config=config_desc,
            layers=(
                Descriptor(
                    media_type=MediaType.layer(options.type.value, oci=oci),
                    digest=info.digest,
                    size=info.size,
                ),
            ),
            media_type=MediaType.OCI_MANIFEST if oci else MediaType.DOCKER_MANIFEST,
        )
        data = manifest.to_bytes(indent=3)
        await content.write_blob(config_bytes, lease=lease)
        await content.write_blob(data, lease=lease)
        stored = await store.put(
            str(ref) if ref is not None else None, Descriptor.of(manifest.media_type, data)
        )
        return str(stored.id)


class _HashingWriter:
    def __init__(self, out: LayerCompressor) -> None:
        import hashlib

        self._out = out
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        return None


@image.command("load")
@_state_option
@click.option(
    "-i", "--input", "source", default="-", metavar="FILE", help="Read from FILE, not stdin."
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@handles_errors
def image_load(state_dir: str | None, source: str, quiet: bool) -> int:
    """Load images from a Docker or OCI archive (docker save, dockyard image save,
    dockyard build -o type=docker|oci), compressed or not."""
    from dockyard.core import UsageError
    from dockyard.exporter import load_archive

    if source == "-" and sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is a terminal (use -i FILE)")
    with open_stores(state_dir) as (content, store):
        spool = content.root.parent / "tmp"
        src: Path | Any = Path(source) if source != "-" else sys.stdin.buffer
        loaded = _run(load_archive(src, content, store, spool_dir=spool))
    if not quiet:
        for item in loaded:
            named = [i for i in item.images if not i.dangling]
            for img in named:
                click.echo(f"Loaded image: {_familiar(img.name)}")
            if not named:
                ident = item.config_digest or item.target.digest
                click.echo(f"Loaded image ID: {ident}")
    return 0


@image.command("save")
@_state_option
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE, not stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker: what docker load reads (an OCI layout plus manifest.json); oci: an "
    "OCI layout only.",
)
@click.option("--platform", default=None, help="The platform to save of a multi-platform image.")
@click.argument("names", nargs=-1, required=True, metavar="NAME|ID...")
@handles_errors
def image_save(
    state_dir: str | None,
    output: str | None,
    fmt: str,
    platform: str | None,
    names: tuple[str, ...],
) -> int:
    """Save images to a tar archive (stdout unless -o)."""
    from dockyard.core import UsageError

    if output is None and sys.stdout.isatty():
        raise UsageError("cowardly refusing to write an archive to a terminal: use -o FILE")
    plat = _parse_platform(platform)
    with open_stores(state_dir) as (content, store):
        _run(_save(content, store, names, output, docker=fmt == "docker", platform=plat))
    return 0


async def _save(
    content: ContentStore,
    store: ImageStore,
    names: tuple[str, ...],
    output: str | None,
    *,
    docker: bool,
    platform: Platform | None,
) -> None:
    from dockyard.exporter import (
        ArchiveImage,
        LocalPath,
        Stdout,
        index_entry,
        oci_manifest,
        open_stream,
        write_archive,
    )
    from dockyard.oci import Descriptor, ImageIndex, MediaType
    from dockyard.registry import InvalidReferenceError, Reference

    archived: list[ArchiveImage] = []
    entries = []
    async with content.lease() as lease:
        for text in names:
            found = await find_images(store, text)
            refs: list[Reference] = []
            for img in found:
                with contextlib.suppress(InvalidReferenceError):
                    r = Reference.parse(img.name, default_tag="")
                    if r.tag and not img.dangling:
                        refs.append(r)
            by_name = [r for r in refs if str(r) == found[0].name] if len(found) == 1 else []
            chosen = by_name or ([] if len(found) > 1 else refs)
            local = await store.resolve(found[0], platform)
            desc = local.manifest_descriptor
            manifest = local.manifest
            if not docker and manifest.media_type != MediaType.OCI_MANIFEST:
                manifest = oci_manifest(manifest)
                data = manifest.to_bytes(indent=3)
                await content.write_blob(data, lease=lease)
                desc = Descriptor.of(MediaType.OCI_MANIFEST, data, platform=desc.platform)
            archived.append(
                ArchiveImage(
                    descriptor=desc,
                    config=manifest.config,
                    layers=manifest.layers,
                    names=tuple(chosen),
                )
            )
            entries += [index_entry(desc, r, None) for r in chosen] or [
                index_entry(desc, None, None)
            ]
        index = ImageIndex(manifests=tuple(entries))
        dest = LocalPath(path=Path(output)) if output else Stdout()
        async with open_stream(dest, None) as out:
            await write_archive(content, archived, index, out, docker=docker)


@image.command("inspect")
@_state_option
@click.option("--platform", default=None, help="The platform of a multi-platform image.")
@click.argument("names", nargs=-1, required=True, metavar="NAME|ID...")
@handles_errors
def image_inspect(state_dir: str | None, platform: str | None, names: tuple[str, ...]) -> int:
    """Show images' names, manifest descriptor and config as JSON."""
    plat = _parse_platform(platform)
    with open_stores(state_dir) as (_content, store):
        out = _run(_inspect(store, names, plat))
    click.echo(json.dumps(out, indent=4))
    return 0


async def _inspect(
    store: ImageStore, names: tuple[str, ...], platform: Platform | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for text in names:
        found = await find_images(store, text)
        local = await store.resolve(found[0], platform)
        all_names = await store.by_digest(found[0].target.digest)
        out.append(
            {
                "Id": str(found[0].id),
                "RepoTags": [_familiar(i.name) for i in all_names if not i.dangling],
                "Descriptor": found[0].target.to_json(),
                "Manifest": local.manifest_descriptor.to_json(),
                "Config": local.config.to_json(),
            }
        )
    return out


# -- tag ---------------------------------------------------------------------------------


def parse_tag_name(text: str) -> Reference:
    """A name to give an image (``REPOSITORY[:TAG]``, normalized like docker); a
    :class:`~dockyard.core.UsageError` for one that does not parse or has a digest."""
    from dockyard.core import UsageError
    from dockyard.registry import Reference

    ref = Reference.parse(text)
    if ref.digest is not None:
        raise UsageError(f"refusing to create a tag with a digest reference: {text!r}")
    return ref


async def find_image(store: ImageStore, text: str) -> Image:
    """The one image ``text`` names (:func:`find_images`); a
    :class:`~dockyard.core.UsageError` when it names several different images."""
    from dockyard.core import UsageError

    found = await find_images(store, text)
    targets = {i.target.digest for i in found}
    if len(targets) > 1:
        raise UsageError(f"{text!r} is ambiguous: it matches {len(targets)} images")
    return found[0]


@image.command("tag")
@_state_option
@click.argument("source", metavar="SOURCE_IMAGE[:TAG]")
@click.argument("target", metavar="TARGET_IMAGE[:TAG]")
@handles_errors
def image_tag(state_dir: str | None, source: str, target: str) -> int:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE (a name, an ID or digest
    prefix, or REPOSITORY@DIGEST); an existing TARGET_IMAGE moves to it."""
    ref = parse_tag_name(target)
    with open_stores(state_dir) as (_content, store):
        _run(_tag(store, source, ref))
    return 0


async def _tag(store: ImageStore, source: str, ref: Reference) -> None:
    found = await find_image(store, source)
    await put_name(store, str(ref), found.target)


async def put_name(store: ImageStore, name: str, target: Descriptor) -> bool:
    """Store ``name`` → ``target``; whether the name is new (:meth:`ImageStore.put` gives
    the state directory a new generation for a new or re-pointed name)."""
    from dockyard.core import NotFoundError

    try:
        await store.get(name)
        new = False
    except NotFoundError:
        new = True
    await store.put(name, target)
    return new


# -- history -----------------------------------------------------------------------------

_CREATED_BY_WIDTH = 45  # docker's truncation of CREATED BY


def _printable(text: str) -> str:
    """``text`` with control and format characters (terminal escapes, ``\\r``, bidi
    overrides) shown as escapes: a table row of an untrusted image's config never
    drives the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _rfc3339(seconds: float) -> str:
    from datetime import datetime

    text = datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def history_rows(local: LocalImage) -> list[tuple[History, int]]:
    """The image's history, newest first, each entry with the size of its layer (the
    layer descriptor's, in order; 0 for ``empty_layer`` entries). Layers the history
    does not account for get an entry of their own, as docker shows them."""
    from dockyard.oci import History

    layers = list(local.manifest.layers)
    rows: list[tuple[History, int]] = []
    next_layer = 0
    for entry in local.config.history:
        size = 0
        if not entry.empty_layer:
            if next_layer < len(layers):
                size = layers[next_layer].size
            next_layer += 1
        rows.append((entry, size))
    rows += [(History(), layer.size) for layer in layers[next_layer:]]
    rows.reverse()
    return rows


@image.command("history")
@_state_option
@click.option(
    "-H",
    "--human",
    type=click.BOOL,
    default=True,
    show_default=True,
    metavar="BOOL",
    help="Print sizes and dates in human readable format.",
)
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--platform", default=None, help="The platform of a multi-platform image.")
@click.argument("name", metavar="IMAGE")
@handles_errors
def image_history(
    state_dir: str | None,
    human: bool,
    no_trunc: bool,
    quiet: bool,
    fmt: str,
    platform: str | None,
    name: str,
) -> int:
    """Show the history of an image (newest first): the step that made each layer."""
    plat = _parse_platform(platform)
    with open_stores(state_dir) as (_content, store):
        local = _run(_history_image(store, name, plat))
    image_id = local.manifest.config.digest
    rows: list[dict[str, str]] = []
    now = time.time()
    for number, (entry, size) in enumerate(history_rows(local)):
        ident = "<missing>"
        if number == 0:
            ident = str(image_id) if no_trunc else image_id.short()
        created_at = created_since = "N/A"
        if entry.created:
            from dockyard.core import DockyardError
            from dockyard.exporter import parse_timestamp

            with contextlib.suppress(DockyardError):
                when = parse_timestamp(entry.created) / 1e9
                created_at = _rfc3339(when)
                created_since = human_ago(now - when) if human else created_at
        created_by = entry.created_by.replace("\t", " ")
        rows.append(
            {
                "Comment": entry.comment,
                "CreatedAt": created_at,
                "CreatedBy": created_by if no_trunc else _ellipsis(created_by, _CREATED_BY_WIDTH),
                "CreatedSince": created_since,
                "ID": ident,
                "Size": human_size(size) if human else str(size),
            }
        )
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return 0
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True, ensure_ascii=False))
        return 0
    with _table() as table:
        table.append(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"))
        for row in rows:
            table.append(
                (
                    row["ID"],
                    row["CreatedSince"],
                    _printable(row["CreatedBy"]),
                    row["Size"],
                    _printable(row["Comment"]),
                )
            )
    return 0


async def _history_image(store: ImageStore, name: str, platform: Platform | None) -> LocalImage:
    found = await find_image(store, name)
    return await store.resolve(found, platform)
