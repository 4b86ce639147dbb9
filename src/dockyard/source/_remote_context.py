"""Remote build contexts: the pieces ``dockyard build URL`` (and ``--build-context
NAME=URL``, and ``-`` for stdin) is made of.

What a context argument is (:func:`parse_remote_context`, Docker's rules)
    A git URL (``git://``, ``ssh://``, ``git@host:path``, ``github.com/...``, an
    http(s) URL whose path ends in ``.git``, each optionally ``#ref:subdir``) is a
    :class:`GitContext`; another http(s) URL is an :class:`HttpContext` (a tarball or a
    plain Dockerfile); anything else is a local path (``None``).

Two ways to use them
    As LLB, the way BuildKit's Dockerfile frontend does: :meth:`GitContext.state` is an
    ``llb.git`` source; :meth:`HttpContext.file_state` downloads the URL as one file
    named ``context`` and :meth:`HttpContext.unpacked_state` extracts it with the same
    contained ``ADD`` unpacking local archives get. Whoever holds the downloaded file
    reads its first bytes and calls :func:`sniff_context` to pick between them (an
    archive is the context; anything else is the Dockerfile, with an empty context).

    Directly, without a solver: :func:`fetch_git_context` (a checkout through a
    :class:`~dockyard.source.GitSource`), :func:`fetch_http_context` (a download through
    an :class:`~dockyard.source.HttpSource`, then :func:`read_context_stream`) and
    :func:`read_context_stream` itself for ``-`` (a tarball or a Dockerfile on stdin).
    Archives — gzip, bzip2, xz, zstd or plain tar — are extracted into a new cache
    record by the snapshotter's contained layer apply: no entry can land outside the
    tree (names climbing out with ``..`` are refused).
"""

from __future__ import annotations

import enum
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Generic, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from dockyard.core import ContentError, DockyardError

from ._git_url import GitSpec, redact_url

if TYPE_CHECKING:
    # LLB, the cache and the solver load when a context is fetched, not when a client
    # parses a context argument.
    from dockyard import llb
    from dockyard.cache import CacheManager, ImmutableRef
    from dockyard.session.types import SecretStore, SshForwarder
    from dockyard.solver import JobValue, VertexContext

    from ._git import GitCredentials, GitInstance, GitSource
    from ._http import HttpInstance, HttpSource, HttpSpec, Progress
    from .types import SourceOpRequest

__all__ = [
    "CONTEXT_FILENAME",
    "ContextFormat",
    "DeferredResolver",
    "FetchedContext",
    "GitContext",
    "HttpContext",
    "context_stream",
    "fetch_git_context",
    "fetch_http_context",
    "parse_remote_context",
    "read_context_head",
    "read_context_stream",
    "remote_sources",
    "sniff_context",
]

CONTEXT_FILENAME = "context"
"""The name the downloaded context file gets (BuildKit's)."""

_SNIFF = 512
_MAX_DOCKERFILE = 16 << 20


class ContextFormat(enum.Enum):
    """What the first bytes of a context file show."""

    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"
    TAR = "tar"
    TEXT = "text"  # not an archive: a Dockerfile

    @property
    def is_archive(self) -> bool:
        return self is not ContextFormat.TEXT


def sniff_context(head: bytes) -> ContextFormat:
    """The format of a context file from its first bytes (at least 512 for a plain tar;
    BuildKit's ``isArchive`` plus zstd)."""
    if head.startswith(b"\x1f\x8b\x08"):
        return ContextFormat.GZIP
    if head.startswith(b"BZh"):
        return ContextFormat.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return ContextFormat.XZ
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return ContextFormat.ZSTD
    if len(head) >= 512:
        import tarfile

        try:
            tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            return ContextFormat.TEXT
        return ContextFormat.TAR
    return ContextFormat.TEXT


@dataclass(frozen=True, slots=True, kw_only=True)
class GitContext:
    """A git repository as a build context."""

    spec: GitSpec

    def state(self, *, name: str | None = None) -> llb.State:
        """The context as an ``llb.git`` source."""
        from dockyard import llb

        spec = self.spec
        return llb.git(
            spec.remote.url,
            spec.ref,
            subdir=spec.subdir,
            keep_git_dir=spec.keep_git_dir,
            checksum=spec.checksum or None,
            name=name,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpContext:
    """An http(s) URL as a build context: a tarball or a plain Dockerfile."""

    url: str

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    def spec(self) -> HttpSpec:
        from ._http import HttpSpec

        return HttpSpec.create(self.url, filename=CONTEXT_FILENAME)

    def file_state(self, *, name: str | None = None) -> llb.State:
        """The download: one file named :data:`CONTEXT_FILENAME`."""
        from dockyard import llb

        return llb.http(
            self.url,
            filename=CONTEXT_FILENAME,
            name=name or f"load remote build context {self.redacted}",
        )

    def unpacked_state(self, *, name: str | None = None) -> llb.State:
        """The downloaded archive extracted into an empty tree (``ADD``'s unpacking)."""
        from dockyard import llb

        return llb.scratch().file(
            llb.copy(self.file_state(), "/" + CONTEXT_FILENAME, "/", attempt_unpack=True),
            name=name or f"unpack remote build context {self.redacted}",
        )


def parse_remote_context(
    text: str, *, keep_git_dir: bool = False
) -> GitContext | HttpContext | None:
    """What a context argument names (see the module docstring); ``None`` for a local
    path (and ``-``). Raises :class:`~dockyard.core.InvalidDefinitionError` for a git
    URL that cannot be used (a bad ref or transport)."""
    if text == "-" or text.startswith(("./", "../", "/")):
        return None
    if text.startswith("github.com/"):
        return GitContext(spec=GitSpec.parse_url("https://" + text, keep_git_dir=keep_git_dir))
    lowered = text.lower()
    if lowered.startswith(("git://", "ssh://", "git@")):
        return GitContext(spec=GitSpec.parse_url(text, keep_git_dir=keep_git_dir))
    if lowered.startswith(("http://", "https://")):
        if urlsplit(text).path.endswith(".git"):
            return GitContext(spec=GitSpec.parse_url(text, keep_git_dir=keep_git_dir))
        return HttpContext(url=text)
    head = text.split("/", 1)[0]
    if "@" in head and ":" in head.split("@", 1)[1]:
        return GitContext(spec=GitSpec.parse_url(text, keep_git_dir=keep_git_dir))
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedContext:
    """A context read from a file or stream: ``tree`` (a new handle the caller owns)
    when it was an archive, else ``dockerfile`` (the text) and an empty context."""

    format: ContextFormat
    tree: ImmutableRef | None = None
    dockerfile: bytes | None = None


async def fetch_git_context(
    source: GitSource, context: GitContext, credentials: GitCredentials | None = None
) -> ImmutableRef:
    """The checkout of a git context (``#ref:subdir`` honoured) as a new handle."""
    _, ref = await source.fetch(context.spec, credentials)
    return ref


async def fetch_http_context(
    source: HttpSource,
    context: HttpContext,
    *,
    secrets: Sequence[SecretStore] = (),
    progress: Progress | None = None,
) -> FetchedContext:
    """Download an http context (conditionally, through the source's cache) and read
    it: an archive is extracted into a new record, anything else is the Dockerfile."""
    spec = context.spec()
    _, downloaded = await source.fetch(spec, secrets=secrets, progress=progress)
    try:
        async with downloaded.mount() as root:
            with (root / CONTEXT_FILENAME).open("rb") as stream:
                return await read_context_stream(
                    source.cache, stream, description=f"remote build context {context.redacted}"
                )
    finally:
        await downloaded.release()


class _Prefixed(io.RawIOBase):
    """``head`` then the rest of ``stream``: a non-seekable stream whose start was read
    to sniff it."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


def read_context_head(stream: IO[bytes]) -> bytes:
    """The first bytes of ``stream`` that :func:`sniff_context` looks at (fewer only at
    the end of the stream). Blocking."""
    head = b""
    while len(head) < _SNIFF:
        chunk = stream.read(_SNIFF - len(head))
        if not chunk:
            break
        head += chunk
    return head


def context_stream(fmt: ContextFormat, head: bytes, stream: IO[bytes]) -> IO[bytes]:
    """The archive whose first bytes ``head`` were read from ``stream`` (by
    :func:`read_context_head`), decompressed as ``fmt`` says: a forward-only stream
    (``tarfile``'s ``r|`` mode reads it; its reads may be short). Decompressors load
    only when used; their errors surface on read."""
    return _decompressed(fmt, cast(IO[bytes], io.BufferedReader(_Prefixed(head, stream))))


def _decompressed(fmt: ContextFormat, raw: IO[bytes]) -> IO[bytes]:
    if fmt is ContextFormat.GZIP:
        import gzip

        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if fmt is ContextFormat.BZIP2:
        import bz2

        return cast(IO[bytes], bz2.BZ2File(raw, mode="rb"))
    if fmt is ContextFormat.XZ:
        import lzma

        return cast(IO[bytes], lzma.LZMAFile(raw, mode="rb"))
    if fmt is ContextFormat.ZSTD:
        import zstandard

        return cast(
            IO[bytes], zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        )
    return raw


class _FullReads(io.RawIOBase):
    """``read(n)`` returning ``n`` bytes unless the stream ends (tarfile needs that of
    decompressors that return short reads); decompression errors become
    :class:`ContentError`."""

    def __init__(self, inner: IO[bytes], what: str) -> None:
        self._inner = inner
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        total = 0
        while total < len(view):
            try:
                data = self._inner.read(len(view) - total)
            except (OSError, EOFError, ValueError) as exc:
                raise ContentError(f"{self._what}: the archive is corrupt ({exc})") from exc
            except Exception as exc:  # zstandard.ZstdError and friends
                raise ContentError(f"{self._what}: the archive is corrupt ({exc})") from exc
            if not data:
                break
            view[total : total + len(data)] = data
            total += len(data)
        return total


async def read_context_stream(
    cache: CacheManager, stream: IO[bytes], *, description: str = "build context from stdin"
) -> FetchedContext:
    """A context from ``stream`` (``-``: stdin, or a downloaded file): an archive is
    extracted into a new cache record (contained: see the module docstring), anything
    else is read as the Dockerfile (at most 16 MiB). Blocking reads happen in worker
    threads."""
    import asyncio
    import tarfile

    from dockyard.cache import RecordType

    head = await asyncio.to_thread(read_context_head, stream)
    fmt = sniff_context(head)
    if not fmt.is_archive:
        whole = io.BufferedReader(_Prefixed(head, stream))
        text = await asyncio.to_thread(whole.read, _MAX_DOCKERFILE + 1)
        if len(text) > _MAX_DOCKERFILE:
            raise DockyardError(f"{description}: a Dockerfile larger than 16 MiB")
        return FetchedContext(format=fmt, dockerfile=text)
    tar = cast(
        BinaryIO, io.BufferedReader(_FullReads(context_stream(fmt, head, stream), description))
    )
    mutable = await cache.new_mutable(None, record_type=RecordType.REGULAR, description=description)
    try:
        try:
            await cache.snapshotter.apply(mutable.id, tar)
        except tarfile.TarError as exc:
            raise ContentError(
                f"{description}: not a valid {fmt.value} tar archive ({exc})"
            ) from exc
        ref = await mutable.commit()
    except BaseException:
        await mutable.release()
        raise
    return FetchedContext(format=fmt, tree=ref)


_I = TypeVar("_I", covariant=True)


class _Resolver(Protocol[_I]):
    """The resolve half of a source resolver."""

    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> _I: ...


class DeferredResolver(Generic[_I]):
    """A resolver made on its first :meth:`resolve` (its module loads then), so that
    registering it costs a build that never uses it nothing."""

    def __init__(self, make: Callable[[], _Resolver[_I]]) -> None:
        self._make = make
        self._made: _Resolver[_I] | None = None

    @property
    def resolver(self) -> _Resolver[_I]:
        if self._made is None:
            self._made = self._make()
        return self._made

    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> _I:
        return await self.resolver.resolve(request, ctx)


def remote_sources(
    cache: CacheManager,
    *,
    secrets_key: JobValue[SecretStore] | None = None,
    ssh_key: JobValue[SshForwarder] | None = None,
) -> dict[str, DeferredResolver[GitInstance] | DeferredResolver[HttpInstance]]:
    """The ``git``, ``http`` and ``https`` resolvers for ``Worker.sources`` (the engine
    passes ``dockyard.llbsolver.SECRETS`` and ``SSH_AGENTS`` as the keys). Each is made
    (and its module loaded) when a build first uses it."""

    def git() -> GitSource:
        from ._git import GitSource

        return GitSource(cache=cache, secrets_key=secrets_key, ssh_key=ssh_key)

    def http() -> HttpSource:
        from ._http import HttpSource

        return HttpSource(cache=cache, secrets_key=secrets_key)

    repos: DeferredResolver[GitInstance] = DeferredResolver(git)
    shared: DeferredResolver[HttpInstance] = DeferredResolver(http)
    return {"git": repos, "http": shared, "https": shared}
