"""The seams of ``dockyard.llbsolver``: what its ops need from the worker, and what a
build gives a job.

Refs (:class:`RefStore`, :class:`ImmutableRef`, :class:`MutableRef`)
    The op implementations work on snapshot refs through :class:`RefStore`, a small
    view of the cache manager: new writable refs on top of a result, merge and diff
    refs, cache mounts and content checksums. Refs hand out mount *specs*; whoever needs
    the files mounts them (the executor, or the file op through
    :mod:`dockyard.snapshot.mount`). An :class:`ImmutableRef` is what ops return to the
    solver (it is a :class:`dockyard.solver.Result`).

Sources (:class:`SourceResolver`, :class:`SourceInstance`)
    Source ops (``docker-image://``, ``local://``, ``git://``, ``https://``,
    ``oci-layout://`` ...) are delegated to resolvers registered by scheme where the
    engine is assembled (:class:`Worker`). A resolver turns a :class:`SourceRequest`
    into an instance per vertex; the instance names its content (:meth:`SourceInstance.
    cache_key`) and produces it (:meth:`SourceInstance.snapshot`).

Job-scoped providers
    Secrets and SSH agents belong to the client session of one build: the session's
    engine-side :class:`dockyard.session.types.SecretStore` (``get(id) -> bytes``,
    :class:`~dockyard.core.NotFoundError` when missing) and
    :class:`dockyard.session.types.SshForwarder` (``forward(id, uid=, gid=, mode=)`` →
    a socket path for the duration). They reach ops as job values (:data:`SECRETS`,
    :data:`SSH_AGENTS`, :data:`SESSION_ID`); a vertex shared by several jobs tries the
    providers of each job in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dockyard.core import Entitlement, Grant, Platform, UsageError, VertexRef, host_platform
from dockyard.executor.types import ExecMount, Executor, NetworkMode, ProcessSpec, Stdio
from dockyard.llb import CacheSharing
from dockyard.session.types import SecretStore, SshForwarder
from dockyard.snapshot.types import Mount
from dockyard.solver import JobValue

if TYPE_CHECKING:
    from dockyard.executor.cdi import DeviceRegistry
    from dockyard.solver import VertexContext

__all__ = [
    "DEBUG_SHELL",
    "ENTITLEMENTS",
    "RANDOM_KEY_PREFIX",
    "SECRETS",
    "SESSION_ID",
    "SSH_AGENTS",
    "ContentSelector",
    "CopyHistory",
    "DebugShell",
    "Entitlement",
    "Grant",
    "ImmutableRef",
    "LocalConsole",
    "MutableRef",
    "PreviousCopy",
    "RefStore",
    "ShellConsole",
    "ShellStreams",
    "SourceInstance",
    "SourceRequest",
    "SourceResolver",
    "Worker",
]


# -- refs ---------------------------------------------------------------------------


@runtime_checkable
class ImmutableRef(Protocol):
    """A committed, read-only snapshot: the result of an op.

    ``id`` is stable for the snapshot (the :class:`dockyard.solver.ResultStorage` id);
    ``release()`` gives this handle up (once). :meth:`mounts` returns read-only mount
    specs of the whole tree (an overlay of its chain, or a bind of one directory).
    """

    @property
    def id(self) -> str: ...

    async def release(self) -> None: ...

    async def mounts(self) -> Sequence[Mount]: ...


@runtime_checkable
class MutableRef(Protocol):
    """A writable snapshot being built on top of a parent (or empty).

    Exactly one of :meth:`commit` (turns it into an :class:`ImmutableRef`; the mutable
    ref is gone afterwards) or :meth:`release` (discards it) must be called. Nothing may
    still be mounted from :meth:`mounts` when either is called.
    """

    async def mounts(self) -> Sequence[Mount]: ...

    async def commit(self) -> ImmutableRef: ...

    async def release(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentSelector:
    """What part of a tree a content checksum covers (BuildKit's ``Selector``).

    ``path`` inside the tree (symlinks in its parents resolved inside the tree; the last
    component too with ``follow_links``); with ``wildcard`` the path's last components
    may hold ``*``, ``?`` and ``[...]`` and every match counts (none: an empty digest).
    ``include_patterns``/``exclude_patterns`` filter the files below ``path``
    (``.dockerignore`` syntax, relative to ``path``).
    """

    path: str
    follow_links: bool = False
    wildcard: bool = False
    include_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "follow_links": self.follow_links,
            "wildcard": self.wildcard,
            "include": list(self.include_patterns),
            "exclude": list(self.exclude_patterns),
        }


@runtime_checkable
class RefStore(Protocol):
    """What the ops need of the cache manager. Every method is safe to call concurrently.

    - :meth:`new_mutable`: a writable ref on top of ``parent`` (``None``: empty). The
      caller owns it (commit or release). The parent is borrowed.
    - :meth:`merge`: the inputs layered in order (later ones win, their deletions
      apply); :meth:`diff`: what turns ``lower`` into ``upper`` (``None`` is the empty
      tree). Both return a new ref the caller owns; inputs are borrowed.
    - :meth:`cache_mount`: a persistent directory for ``RUN --mount=type=cache``,
      identified by ``id``; entering the context returns writable mount specs and, for
      ``LOCKED`` sharing, waits until no other user holds it; a second user of a
      ``PRIVATE`` cache gets a directory of its own. ``base``, when given, seeds a new
      cache directory with that tree. Nothing of a cache mount ever becomes a result.
    - :meth:`checksum`: ``sha256:`` digest of the selected files' content, mode, owner,
      type and link targets (never times); raises :class:`dockyard.core.NotFoundError`
      when ``selector.path`` does not exist (and is not a wildcard).
    """

    async def new_mutable(
        self, parent: ImmutableRef | None, *, description: str = ""
    ) -> MutableRef: ...

    async def merge(
        self, inputs: Sequence[ImmutableRef], *, description: str = ""
    ) -> ImmutableRef: ...

    async def diff(
        self, lower: ImmutableRef | None, upper: ImmutableRef | None, *, description: str = ""
    ) -> ImmutableRef: ...

    def cache_mount(
        self, id: str, *, sharing: CacheSharing, base: ImmutableRef | None = None
    ) -> AbstractAsyncContextManager[Sequence[Mount]]: ...

    async def checksum(self, ref: ImmutableRef, selector: ContentSelector) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousCopy:
    """What the same copy made on the same base the last time it ran, for a copy re-run
    because its source changed: ``layer`` is that result's own directory (the files the
    copy wrote, by their path in the destination), and ``unchanged(path)`` tells whether
    the source's entry at ``path`` (relative to the source's root) has the same content,
    metadata and times as the source of that run had. A file the copy would write again
    identically is linked from ``layer`` instead of copied."""

    layer: Path
    unchanged: Callable[[str], bool]


@runtime_checkable
class CopyHistory(Protocol):
    """What a :class:`RefStore` may offer so that a copy re-run after a change to its
    source writes only what changed (optional: without it every file is copied).

    - :meth:`previous_copy`: the last result of the copy ``key`` (the op's digest) made on
      ``base`` from an earlier state of ``source``'s tree, when both states can be
      compared and ``src_path`` resolves to the same entry without symlinks in both;
      otherwise ``None``. The refs involved stay held while the context is open.
    - :meth:`remember_copy`: ``result`` is what copy ``key`` made on ``base`` from
      ``source``.
    - :meth:`own_path`: where a mutable ref's own files are (its layer), and whether that
      is an overlayfs upper directory (to be written only while nothing mounts it)
      rather than its whole tree.
    - :meth:`layer_path`: the directory of what a committed ref alone owns (its top
      layer, or its whole tree), read only, whose regular files a copy may hard-link
      instead of copying (``None``: not one directory, as for a merge).
    """

    def previous_copy(
        self, key: str, base: ImmutableRef | None, source: ImmutableRef, src_path: str
    ) -> AbstractAsyncContextManager[PreviousCopy | None]: ...

    async def remember_copy(
        self, key: str, *, base: ImmutableRef | None, source: ImmutableRef, result: ImmutableRef
    ) -> None: ...

    async def own_path(self, ref: MutableRef) -> tuple[Path, bool]: ...

    async def layer_path(self, ref: ImmutableRef) -> Path | None: ...


# -- sources ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRequest:
    """A source op as a resolver sees it.

    ``identifier`` is the op's full identifier (``docker-image://docker.io/library/
    busybox:latest``), ``scheme`` the part before ``://`` and ``path`` the part after it.
    ``attrs`` are the op's attributes (``local.includepattern``, ``git.keepgitdir`` ...);
    resolvers parse what they understand into their own values. ``platform`` is the op's
    platform, if it has one; ``vertex`` names the op for errors.
    """

    identifier: str
    scheme: str
    path: str
    attrs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    platform: Platform | None = None
    vertex: VertexRef

    @classmethod
    def parse(
        cls,
        identifier: str,
        *,
        attrs: Mapping[str, str] | None = None,
        platform: Platform | None = None,
        vertex: VertexRef,
    ) -> SourceRequest:
        scheme, sep, path = identifier.partition("://")
        if not sep or not scheme:
            raise UsageError(
                f"source identifier {identifier!r} has no scheme (like docker-image://)"
            )
        return cls(
            identifier=identifier,
            scheme=scheme,
            path=path,
            attrs=MappingProxyType(dict(attrs or {})),
            platform=platform,
            vertex=vertex,
        )


@runtime_checkable
class SourceInstance(Protocol):
    """One source op, resolved: made by :meth:`SourceResolver.resolve` once per loaded
    op (each load of a Definition resolves afresh); its methods may be called
    concurrently by every job that shares the vertex.

    - :meth:`cache_key` names the content the source produces (an image's manifest
      digest, a commit): the same key promises the same tree. It may do network work
      (resolving a tag). A source that cannot know its content before fetching it (a
      local directory) returns a key unique to this fetch, starting with ``random:``
      (:data:`RANDOM_KEY_PREFIX`, BuildKit's mark), so that it always runs and cache
      exports leave it out; its dependants then read it by content checksum and still
      hit the cache.
    - :meth:`snapshot` produces the tree as a new :class:`ImmutableRef` the caller
      owns — a ref of the worker's cache manager (``dockyard.cache.ImmutableRef``), so
      that the solver can keep it. It is called only on a cache miss, after
      :meth:`cache_key`. Raise :class:`dockyard.core.DockyardError` subclasses (the op's
      vertex and source locations are attached on the way out).
    """

    async def cache_key(self, ctx: VertexContext) -> str: ...

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef: ...


@runtime_checkable
class SourceResolver(Protocol):
    """Sources of one scheme (``local``, ``docker-image``, ``oci-layout`` ...),
    registered by scheme in :attr:`Worker.sources`.

    :meth:`resolve` checks and parses the request (raising
    :class:`dockyard.core.UsageError` or :class:`dockyard.core.InvalidDefinitionError`
    for a malformed one) and returns an instance; it should not do slow work (that
    belongs in :meth:`SourceInstance.cache_key`). ``ctx`` carries the job values (e.g.
    :data:`SESSION_ID`) and progress for the vertex.
    """

    async def resolve(self, request: SourceRequest, ctx: VertexContext) -> SourceInstance: ...


# -- job-scoped providers -----------------------------------------------------------


RANDOM_KEY_PREFIX = "random:"
"""Starts a source's cache key that is unique to one fetch (never hits again)."""

SESSION_ID: JobValue[str] = JobValue("llbsolver.session_id")
"""The client session of a job (sources read local directories through it)."""

SECRETS: JobValue[SecretStore] = JobValue("llbsolver.secrets")
SSH_AGENTS: JobValue[SshForwarder] = JobValue("llbsolver.ssh_agents")
ENTITLEMENTS: JobValue[frozenset[Grant]] = JobValue("llbsolver.entitlements")


class ShellStreams(Protocol):
    """The streams a debug shell's process gets while a :class:`ShellConsole` is
    attached, and where the shell says how it went."""

    @property
    def stdio(self) -> Stdio: ...

    def finish(self, status: int | None, notice: str = "") -> None:
        """The process's exit status (``None``: it did not run) and a line for the
        user (why it did not run), shown once the terminal is the user's again."""
        ...


class ShellConsole(Protocol):
    """Where a debug shell's streams are: this process's (an engine embedded in the
    CLI: :class:`LocalConsole`) or a client's terminal on another host (a daemon relays
    it over the build's session: ``dockyard.daemon``).

    ``attach`` shows the user ``line`` (what is about to run) and yields the
    :class:`ShellStreams` for the block; leaving it gives the terminal back. A console
    whose user went away (a client that disconnected) ends the block's process by
    cancelling it and raises :class:`~dockyard.core.DockyardError` instead; one that
    cannot be attached raises it at once.
    """

    def attach(self, line: str) -> AbstractAsyncContextManager[ShellStreams]: ...


class LocalConsole:
    """:class:`ShellConsole` of this process's streams ``stdio``: lines go to
    ``announce`` (the CLI stops its progress display and prints them)."""

    def __init__(self, stdio: Stdio, announce: Callable[[str], None]) -> None:
        self.stdio = stdio
        self.announce = announce

    def attach(self, line: str) -> AbstractAsyncContextManager[ShellStreams]:
        return _LocalAttach(self, line)

    def finish(self, status: int | None, notice: str = "") -> None:
        if notice:
            self.announce(notice)


class _LocalAttach:
    def __init__(self, console: LocalConsole, line: str) -> None:
        self._console = console
        self._line = line

    async def __aenter__(self) -> LocalConsole:
        self._console.announce(self._line)
        return self._console

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class DebugShell:
    """``dockyard build --invoke``: a command run interactively on the user's streams
    (``stdio``, or a ``console`` elsewhere: a client's terminal relayed by a daemon), in
    a new sandbox on the very mounts of an exec that failed (``on_error``: its root as
    the failed command left it, its cache, bind, secret and SSH mounts, tmpfs mounts
    empty again; its environment, working directory and user) — or on a build's result
    (``on_success``, run by the engine).

    At most one shell runs per build (the first failure gets it). ``announce`` is
    called with a line saying what is about to run just before it does (the CLI stops
    its progress display and prints it); a shell that cannot run (no such command, an
    executor without interactive processes, a console that cannot be attached) is
    announced too, and never replaces the failure being debugged. The normal path
    costs nothing: the exec op looks for this job value only when its process failed.
    """

    def __init__(
        self,
        *,
        args: Sequence[str],
        stdio: Stdio | None = None,
        console: ShellConsole | None = None,
        on_error: bool = True,
        on_success: bool = True,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        if not args:
            raise UsageError("--invoke needs a command")
        self.args = tuple(args)
        self.stdio = stdio if stdio is not None else Stdio()
        self.on_error = on_error
        self.on_success = on_success
        self.announce: Callable[[str], None] = announce or _no_announcement
        """Where lines for the user go (a remote client shows a daemon's shell's lines
        through it)."""
        self.console: ShellConsole = (
            console if console is not None else LocalConsole(self.stdio, self.announce)
        )
        self.ran = False
        """Whether a shell was started (the CLI shows the step's log itself then)."""

    async def run(
        self,
        executor: Executor,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount],
        process: ProcessSpec,
        title: str,
    ) -> int | None:
        """Run :attr:`args` as ``process`` would have run (its user, environment,
        directory, network and security) on ``root`` and ``mounts``; its exit status,
        or ``None`` when no shell ran (one ran already, or it could not start)."""
        from dataclasses import replace

        from dockyard.core import DockyardError
        from dockyard.executor.types import InteractiveExecutor

        if self.ran:
            return None
        self.ran = True
        if not isinstance(executor, InteractiveExecutor):
            async with self.console.attach(
                f"--invoke: the executor cannot run an interactive process ({title})"
            ) as streams:
                streams.finish(None)
            return None
        try:
            async with self.console.attach(
                f"{title}: running {' '.join(self.args)} (exit it to continue)"
            ) as streams:
                try:
                    status = await executor.run_interactive(
                        root=root,
                        mounts=mounts,
                        process=replace(process, args=self.args),
                        stdio=streams.stdio,
                    )
                except (DockyardError, OSError) as exc:
                    # the failure being debugged stays the build's error
                    streams.finish(None, f"--invoke: {exc}")
                    return None
                streams.finish(status)
                return status
        except DockyardError:
            # the console went away (its client disconnected: the build ends anyway) or
            # could not be attached; the failure being debugged stays the build's error
            return None


def _no_announcement(line: str) -> None:
    return None


DEBUG_SHELL: JobValue[DebugShell] = JobValue("llbsolver.debug_shell")
"""A build's ``--invoke`` shell (:class:`DebugShell`); failed execs run it."""


# -- the worker ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Worker:
    """What the ops run on, assembled by the engine.

    ``sources`` maps a scheme (``"docker-image"``, ``"local"`` ...) to its resolver.
    ``default_network`` is the network of an exec whose LLB network mode is unset
    (BuildKit's default without CNI is the host's). ``platform`` is what execs run as.
    ``mount_dir`` is where file ops mount refs they read or write (the system's
    temporary directory when ``None``; the engine passes ``<state>/mnt``). ``devices``
    are the host's CDI devices execs may ask for (``None``: CDI is disabled, and an exec
    that requires a device fails).
    """

    refs: RefStore
    executor: Executor
    sources: Mapping[str, SourceResolver] = field(default_factory=lambda: MappingProxyType({}))
    default_network: NetworkMode = NetworkMode.HOST
    platform: Platform = field(default_factory=host_platform)
    mount_dir: Path | None = None
    devices: DeviceRegistry | None = None
