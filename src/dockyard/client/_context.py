"""The build context and the Dockerfile of a build, as directories the session serves.

- A local directory is served as it is; the Dockerfile's directory is served beside it
  (``-f`` may point anywhere on this host).
- ``-`` (stdin) is a tarball — gzip, bzip2, xz, zstd or plain, extracted into a scratch
  directory: no entry lands outside it and no host file is hard-linked into it, while
  symbolic links are kept whatever they point at, as docker takes a context tarball
  (:func:`extract_tarball`) — or a Dockerfile with an empty context
  (:func:`dockyard.source.sniff_context` decides).
- A git or http(s) URL (:func:`dockyard.source.parse_remote_context`) is fetched by the
  engine itself — the repository through its git source (with its cache, the session's
  SSH agents and secrets for credentials), the URL through its http source (an unchanged
  ETag downloads nothing) — by solving the remote-context helpers' LLB states
  (:meth:`~dockyard.source.GitContext.state`, :meth:`~dockyard.source.HttpContext.file_state`,
  :meth:`~dockyard.source.HttpContext.unpacked_state`) and exporting the tree into a
  scratch directory of the client, which then serves it like a local context. The same
  path works embedded and against a daemon (which streams the tree back). What it was
  fetched from travels with the build as frontend attributes
  (:attr:`PreparedContext.source_attrs`): the URL, and for a build asking for
  provenance the commit (read from the ``HEAD`` of a checkout fetched with its
  ``.git``, then removed) or the download's sha256, for the provenance's
  ``configSource``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from dockyard.core import ContentError, NotFoundError, PathEscapeError, UsageError

if TYPE_CHECKING:
    import tarfile

    from dockyard import llb
    from dockyard.source import ContextFormat, GitContext

    from ._options import BuildOptions

__all__ = ["Fetch", "PreparedContext", "Scratch", "prepare_context"]

#: Solve ``definition`` and put its result's files into the directory ``dest``
#: (``name`` labels the step).
Fetch = Callable[["llb.Definition", Path, str], Awaitable[None]]

_MAX_DOCKERFILE = 16 << 20
_DEFAULT_DOCKERFILE = "Dockerfile"


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedContext:
    """The directories a build's session serves: ``context`` (the build context) and
    ``dockerfile_dir`` holding the Dockerfile at ``filename`` (slash-separated,
    relative). ``shared_key`` identifies the context across builds, so that the engine
    syncs into the copy it kept from the last build (only changes travel).
    ``source_attrs``: for a remote context, the frontend attributes saying where it came
    from — BuildKit's ``context`` (the URL, credentials masked) and, when provenance is
    asked for, ``context-digest`` (the commit, or the download's sha256) — which the
    provenance's ``configSource`` records."""

    context: Path
    dockerfile_dir: Path
    filename: str
    shared_key: str
    description: str
    source_attrs: tuple[tuple[str, str], ...] = ()


def shared_key_of(path: Path) -> str:
    """A stable key for a directory of this host (its host name and absolute path, and
    this user's :func:`private_key` identifier)."""
    return private_key(f"{socket.gethostname()}:{os.path.abspath(path)}")


_NODE_ID: str | None = None


def private_key(text: str) -> str:
    """A session's shared key for ``text``, which other users cannot compute: a daemon
    keeps the synced copy of a context under it, and a client that attached with
    another user's key and sent stat entries equal to that user's files would have that
    user's file contents kept in its own build. Mixed with a random identifier of this
    user's, as buildx mixes in its node id."""
    digest = hashlib.sha256(_node_id().encode("ascii"))
    digest.update(b"\0" + text.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def _node_id() -> str:
    """128 random bits kept in ``$XDG_CACHE_HOME/dockyard/node-id`` (mode 0600; made on
    first use, replaced when damaged); this process's own when it cannot be kept (the
    synced copies are then not reused across builds)."""
    global _NODE_ID
    if _NODE_ID is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        _NODE_ID = _read_node_id(Path(cache) / "dockyard" / "node-id")
    return _NODE_ID


def _read_node_id(path: Path) -> str:
    import secrets

    def valid(text: str) -> bool:
        return len(text) == 32 and all(c in "0123456789abcdef" for c in text)

    try:
        text = path.read_text("ascii", "replace")
        if valid(text):
            return text
    except OSError:
        pass
    fresh = secrets.token_hex(16)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".node-id-", dir=path.parent)  # mode 0600
        try:
            os.write(fd, fresh.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # the first of two clients starting together wins
        except FileExistsError:
            text = path.read_text("ascii", "replace")
            if not valid(text):
                os.replace(tmp, path)  # damaged: replaced
                return fresh
            return text
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return fresh
    return fresh


class Scratch:
    """A scratch directory of the client's, made on first use: a build from a local
    directory (the usual one) needs none, so it leaves nothing behind even when it is
    killed. :meth:`close` removes whatever was made."""

    __slots__ = ("_dir",)

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __call__(self) -> Path:
        """The directory (empty when first made)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="dockyard-")
        return Path(self._dir.name)

    def close(self) -> None:
        made, self._dir = self._dir, None
        if made is not None:
            made.cleanup()


async def prepare_context(
    options: BuildOptions, scratch: Callable[[], Path], fetch: Fetch
) -> PreparedContext:
    """The directories of ``options``' context and Dockerfile; remote and stdin contexts
    go into the directory ``scratch()`` gives (an empty directory the caller removes
    afterwards; a local context never asks for it)."""
    stdin = options.stdin if options.stdin is not None else sys.stdin.buffer
    if options.context == "-":
        return await _stdin_context(options, stdin, scratch)
    if _is_directory(options.context):  # a directory first, as buildx (no URL parsing)
        return await _with_vcs(options, await _local_context(options, stdin, scratch))
    from dockyard.source import parse_remote_context

    remote = parse_remote_context(options.context)
    if remote is None:
        return await _with_vcs(options, await _local_context(options, stdin, scratch))
    from dockyard.source import GitContext, redact_url

    if isinstance(remote, GitContext):
        context = scratch() / "context"
        shown = redact_url(options.context)
        attrs = [("context", shown)]
        if _wants_digest(options):
            context, commit = await _git_checkout(remote, scratch, shown, fetch)
            if commit is not None:
                attrs.append((_digest_attr(), f"sha1:{commit}"))
        else:
            state = remote.state(name=f"[internal] load git source {shown}")
            await fetch(state.marshal(), context, f"git context {shown}")
        prepared = await _in_context(options, stdin, scratch, context, shown)
        return dataclasses.replace(prepared, source_attrs=tuple(attrs))
    return await _http_context(options, stdin, scratch, remote.url, fetch)


async def _with_vcs(options: BuildOptions, prepared: PreparedContext) -> PreparedContext:
    """``prepared`` with buildx's ``vcs:*`` attributes when the build asks for
    provenance (the only reader here) and the context is in a git work tree."""
    if not _wants_digest(options):
        return prepared
    from ._vcs import git_attributes

    attrs = await git_attributes(
        prepared.context,
        {"context": prepared.context, "dockerfile": prepared.dockerfile_dir},
    )
    if not attrs:
        return prepared
    return dataclasses.replace(prepared, source_attrs=prepared.source_attrs + attrs)


def _wants_digest(options: BuildOptions) -> bool:
    """Whether the build records its context's digest (it asks for provenance)."""
    return options.provenance is not None and options.builds


def _digest_attr() -> str:
    from dockyard.llbsolver import CONTEXT_DIGEST_ATTR

    return CONTEXT_DIGEST_ATTR


async def _git_checkout(
    remote: GitContext, scratch: Callable[[], Path], shown: str, fetch: Fetch
) -> tuple[Path, str | None]:
    """The context of ``remote`` and the commit it was checked out at, from one fetch:
    the whole tree with its ``.git`` (one commit deep), whose ``HEAD`` names the commit
    — a second resolution of the ref could name another. The ``.git`` entries are then
    removed (unless the URL asked to keep ``.git``) and ``subdir`` becomes the root."""
    from dockyard.source import GitContext

    spec = dataclasses.replace(remote.spec, keep_git_dir=True, subdir="")
    checkout = scratch() / "checkout"
    state = GitContext(spec=spec).state(name=f"[internal] load git source {shown}")
    await fetch(state.marshal(), checkout, f"git context {shown}")
    commit = await asyncio.to_thread(_head_commit, checkout)
    if not (remote.spec.keep_git_dir and not remote.spec.subdir):
        await asyncio.to_thread(_remove_git_entries, checkout)
    if not remote.spec.subdir:
        return checkout, commit
    from dockyard.core import resolve_in_root

    root = resolve_in_root(checkout, remote.spec.subdir)
    if not root.is_dir():
        raise NotFoundError(f"subdirectory {remote.spec.subdir!r} not found in {shown}")
    return root, commit


def _head_commit(checkout: Path) -> str | None:
    """The commit a detached ``HEAD`` of ``checkout/.git`` names (``None``: another)."""
    try:
        head = (checkout / ".git" / "HEAD").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if len(head) == 40 and all(c in "0123456789abcdef" for c in head):
        return head
    return None


def _remove_git_entries(root: Path) -> None:
    """Remove every ``.git`` (directory, file or link) below ``root``, links not followed:
    what a checkout without ``.git`` leaves out (submodules' ``.git`` files too)."""
    import shutil

    for current, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            if name != ".git":
                continue
            path = Path(current, name)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if ".git" in dirs:
            dirs.remove(".git")


def _is_directory(path: str) -> bool:
    return os.path.isdir(path)


async def _local_context(
    options: BuildOptions, stdin: IO[bytes], scratch: Callable[[], Path]
) -> PreparedContext:
    context, dockerfile = _local_paths(options)
    key = shared_key_of(context)
    if dockerfile is None or not dockerfile.is_file():
        # stdin, or a pipe or device such as bash's <(...): read it like docker's CLI does
        if dockerfile is None:
            where = await _stdin_dockerfile(stdin, scratch)
        else:
            with dockerfile.open("rb") as stream:
                where = await _stdin_dockerfile(stream, scratch, name=str(dockerfile))
        return PreparedContext(
            context=context,
            dockerfile_dir=where,
            filename=_DEFAULT_DOCKERFILE,
            shared_key=key,
            description=options.context,
        )
    return PreparedContext(
        context=context,
        dockerfile_dir=dockerfile.parent,
        filename=dockerfile.name,
        shared_key=key,
        description=options.context,
    )


def _local_paths(options: BuildOptions) -> tuple[Path, Path | None]:
    """The context directory and the Dockerfile (``None``: from stdin), absolute."""
    context = Path(options.context)
    if not context.is_dir():
        what = "not a directory" if context.exists() else "not found"
        if not context.exists() and "://" in options.context:
            # buildx says only "not found"; name the URLs that are contexts
            scheme = options.context.split("://", 1)[0]
            what += (
                f" ({scheme}:// URLs are not build contexts: a git repository is"
                " git://..., ssh://..., git@HOST:PATH or https://.../REPO.git, other"
                " http(s):// URLs are downloaded)"
            )
        raise UsageError(f'unable to prepare context: path "{options.context}" {what}')
    if options.dockerfile == "-":
        return context.absolute(), None
    dockerfile = Path(options.dockerfile) if options.dockerfile else context / _DEFAULT_DOCKERFILE
    if not dockerfile.exists() or dockerfile.is_dir():
        what = "is a directory" if dockerfile.is_dir() else "no such file or directory"
        raise NotFoundError(f"failed to read dockerfile: open {dockerfile}: {what}")
    return context.absolute(), dockerfile.absolute()


async def _in_context(
    options: BuildOptions,
    stdin: IO[bytes],
    scratch: Callable[[], Path],
    context: Path,
    description: str,
) -> PreparedContext:
    """A context made in ``scratch`` (fetched, or from stdin): ``-f`` names a file
    inside it (or ``-``)."""
    key = private_key(description)
    if options.dockerfile == "-":
        return PreparedContext(
            context=context,
            dockerfile_dir=await _stdin_dockerfile(stdin, scratch),
            filename=_DEFAULT_DOCKERFILE,
            shared_key=key,
            description=description,
        )
    filename = _inner_path(options.dockerfile or _DEFAULT_DOCKERFILE)
    if not (context / filename).is_file():
        raise NotFoundError(
            f"failed to read dockerfile: {filename}: no such file in the context {description}"
        )
    return PreparedContext(
        context=context,
        dockerfile_dir=context,
        filename=filename,
        shared_key=key,
        description=description,
    )


def _inner_path(text: str) -> str:
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise UsageError(f"-f {text}: with a remote or stdin context, name a file inside it")
    return path.as_posix()


async def _http_context(
    options: BuildOptions, stdin: IO[bytes], scratch: Callable[[], Path], url: str, fetch: Fetch
) -> PreparedContext:
    from dockyard.source import HttpContext, read_context_head, sniff_context

    remote = HttpContext(url=url)
    download = scratch() / "download"
    await fetch(remote.file_state().marshal(), download, f"http context {remote.redacted}")
    file = _only_file(download)
    with file.open("rb") as f:
        head = read_context_head(f)
    attrs = [("context", remote.redacted)]
    if _wants_digest(options):
        checksum = await asyncio.to_thread(_sha256_file, file)
        attrs.append((_digest_attr(), f"sha256:{checksum}"))
    if sniff_context(head).is_archive:
        context = scratch() / "context"
        await fetch(remote.unpacked_state().marshal(), context, f"unpack {remote.redacted}")
        prepared = await _in_context(options, stdin, scratch, context, remote.redacted)
        return dataclasses.replace(prepared, source_attrs=tuple(attrs))
    if options.dockerfile is not None:
        raise UsageError(f"{remote.redacted} is a Dockerfile, not a context: -f does not apply")
    context = scratch() / "context"
    context.mkdir()
    return PreparedContext(
        context=context,
        dockerfile_dir=download,
        filename=file.name,
        shared_key=private_key(url),
        description=remote.redacted,
        source_attrs=tuple(attrs),
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _only_file(directory: Path) -> Path:
    """The one file an http source's download is."""
    files = [p for p in directory.iterdir() if p.is_file()]
    if len(files) != 1:
        raise ContentError(f"the download of the context is {len(files)} files, not one")
    return files[0]


async def _stdin_dockerfile(
    stdin: IO[bytes], scratch: Callable[[], Path], *, name: str = "stdin"
) -> Path:
    data = await asyncio.to_thread(stdin.read, _MAX_DOCKERFILE + 1)
    if len(data) > _MAX_DOCKERFILE:
        raise UsageError(f"the Dockerfile on {name} is larger than 16 MiB")
    if not data.strip():
        raise UsageError(f"the Dockerfile on {name} is empty")
    where = scratch() / "dockerfile"
    where.mkdir()
    (where / _DEFAULT_DOCKERFILE).write_bytes(data)
    return where


async def _stdin_context(
    options: BuildOptions, stdin: IO[bytes], scratch: Callable[[], Path]
) -> PreparedContext:
    from dockyard.source import read_context_head, sniff_context

    head = await asyncio.to_thread(read_context_head, stdin)
    fmt = sniff_context(head)
    context = scratch() / "context"
    if not fmt.is_archive:
        if options.dockerfile is not None:
            raise UsageError("stdin holds a Dockerfile, not a context tarball: -f does not apply")
        rest = await asyncio.to_thread(stdin.read, _MAX_DOCKERFILE + 1)
        data = head + rest
        if len(data) > _MAX_DOCKERFILE:
            raise UsageError("the Dockerfile on stdin is larger than 16 MiB")
        if not data.strip():
            raise UsageError("nothing on stdin: pipe in a context tarball or a Dockerfile")
        dockerfile_dir = scratch() / "dockerfile"
        dockerfile_dir.mkdir()
        (dockerfile_dir / _DEFAULT_DOCKERFILE).write_bytes(data)
        context.mkdir()
        return PreparedContext(
            context=context,
            dockerfile_dir=dockerfile_dir,
            filename=_DEFAULT_DOCKERFILE,
            shared_key=shared_key_of(Path("-")),
            description="-",
        )
    context.mkdir()
    await asyncio.to_thread(extract_tarball, fmt, head, stdin, context)
    return await _in_context(options, stdin, scratch, context, "-")


def extract_tarball(fmt: ContextFormat, head: bytes, stream: IO[bytes], dest: Path) -> None:
    """Extract the tarball (``head`` then the rest of ``stream``, in format ``fmt``)
    into ``dest``, contained as docker and BuildKit take a context tarball: a symbolic
    link is kept whatever it points at (it is data: what a build reads through it is
    resolved inside the context later), but no entry is written outside ``dest`` —
    names climbing out, or through a link the archive made, are refused, as are hard
    links to a file outside ``dest`` and device files (a
    :class:`~dockyard.core.PathEscapeError` or :class:`~dockyard.core.ContentError`).
    Leading slashes are stripped; modes are kept."""
    import tarfile

    from dockyard.source import context_stream

    what = "the context tarball on stdin"
    try:
        with tarfile.open(fileobj=context_stream(fmt, head, stream), mode="r|") as tar:
            tar.extractall(dest, filter=_context_member)
    except (
        tarfile.AbsolutePathError,
        tarfile.OutsideDestinationError,
        tarfile.AbsoluteLinkError,
        tarfile.LinkOutsideDestinationError,
    ) as exc:
        raise PathEscapeError(f"{what}: {exc}") from exc
    except tarfile.FilterError as exc:
        raise ContentError(f"{what}: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ContentError(f"{what}: not a valid {fmt.value} tar archive ({exc})") from exc
    except Exception as exc:  # zstandard.ZstdError and friends
        raise ContentError(f"{what}: the archive is corrupt ({exc})") from exc


def _context_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``tar`` filter (names stripped of leading slashes; none landing
    outside ``dest``, also through links already extracted) with the entry's own mode
    kept, hard links only to files inside ``dest``, and no device files or FIFOs."""
    import tarfile

    checked = tarfile.tar_filter(member, dest)
    if member.ischr() or member.isblk() or member.isfifo():
        raise tarfile.SpecialFileError(member)
    if member.islnk():
        root = os.path.realpath(dest)
        target = os.path.realpath(os.path.join(root, member.linkname))
        if os.path.commonpath((root, target)) != root:
            raise tarfile.LinkOutsideDestinationError(member, target)
    return checked.replace(mode=member.mode, deep=False)
