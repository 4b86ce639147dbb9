"""``git://`` sources: a repository at a ref, checked out with the real ``git``.

Resolving (:meth:`GitInstance.cache_key`)
    A full commit id needs no network. Any other ref is looked up with one ``git
    ls-remote`` (no fetch): the exact ref name (``refs/pull/1/head``, ``heads/main``),
    else the branch, else the tag, as ``git checkout`` prefers them; an annotated tag
    counts as the commit it points at (unless ``.git`` is kept). No ref means the
    remote's default branch. A ref that is not there but looks like an abbreviated
    commit is found by a full fetch into the repository cache. The key is the commit
    (plus ``.git#ref``, ``:subdir`` and a submodule mark, like BuildKit's), so two names
    of one commit share a result and a moved branch gets a new key. A ``checksum`` the
    commit (or annotated tag) does not start with is refused here, before anything is
    fetched or stored.

Fetching (:meth:`GitInstance.snapshot`)
    Repositories are cached as bare repositories in persistent named cache records
    (``source.git``, one user at a time, removed by ``prune`` like any unused record).
    A missing commit is fetched shallow (``--depth=1``) by its ref, or by its id; a
    server that refuses that gets a full fetch. The checkout goes into a new committed
    record labelled with the cache key, so a second op (or build) with the same key
    reuses it without touching the network; submodules are checked out recursively
    unless skipped; without ``keep_git_dir`` no ``.git`` is left anywhere. Files are
    owned by the engine's user with modes 0644/0755, as BuildKit's.

Transient failures
    A remote command (``ls-remote``, ``fetch``) that fails the way a dropped connection
    or an overloaded server does (connection reset or refused, early EOF, a hung-up
    remote, HTTP 5xx) is run again, ``attempts`` times in all with a growing delay; the
    error then says how many attempts were made. Refusals (authentication, a missing
    repository, HTTP 4xx) fail at once.

Credentials
    HTTP tokens and headers come from the job's session secrets (BuildKit's names:
    ``GIT_AUTH_TOKEN``/``GIT_AUTH_HEADER``, optionally suffixed ``.host``), SSH through
    the job's forwarded agent (``git.mountsshsock``) with ``git.knownsshhosts`` pinning
    host keys. They reach git only through its environment (see
    :mod:`dockyard.source._git_cli`) and are scrubbed from every message and log line;
    cache keys, record names and labels never contain them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef, RecordType
from dockyard.core import (
    ContentError,
    DockyardError,
    NotFoundError,
    PathEscapeError,
    resolve_in_root,
)
from dockyard.core.singleflight import SingleFlight
from dockyard.session.types import SecretStore, SshForwarder
from dockyard.solver import JobValue, VertexContext

from ._git_cli import GitAuth, GitResult, GitRunner
from ._git_url import GitSpec, Scrubber, is_commit_sha, redact_url
from .types import SourceOpRequest

__all__ = [
    "GIT_SNAPSHOT_LABEL",
    "GitCredentials",
    "GitInstance",
    "GitSource",
    "GitStatistics",
    "ResolvedRef",
]

GIT_SNAPSHOT_LABEL = "dockyard.git.snapshot"
"""Label of a checkout record: the cache key it was made for and a hash of the remote."""

_ABBREV_MIN = 4
_CHECKOUT_TMP = ".dockyard-checkout-"
_LOCAL_REFS = "refs/dockyard/"
_ALL_REFS = "refs/dockyard-all/"
_TMP_REFS = "refs/dockyard-tmp/"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedRef:
    """A ref, resolved: ``commit`` is what gets checked out, ``object`` what the ref
    points at (an annotated tag's own id; else the commit), ``ref`` the full ref name
    fetched (``refs/heads/main``), empty for a commit named by its id."""

    commit: str
    object: str
    ref: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GitStatistics:
    """Counters since the source was made: ``ls_remotes`` ref lookups, ``fetches`` git
    fetches from remotes, ``checkouts`` trees checked out, ``reused`` snapshots answered
    by an earlier checkout with the same key."""

    ls_remotes: int
    fetches: int
    checkouts: int
    reused: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GitCredentials:
    """Where one fetch finds credentials: the job's session secret stores and SSH agent
    forwarders (each tried in turn), and where git's messages are logged."""

    secrets: tuple[SecretStore, ...] = ()
    ssh_agents: tuple[SshForwarder, ...] = ()
    log: Callable[[bytes], None] | None = None


class GitSource:
    """The ``git`` resolver (``Worker.sources["git"]``).

    ``cache`` holds the repository cache and the checkouts. ``secrets_key`` and
    ``ssh_key`` are the engine's job values for the session's secret store and SSH
    forwarder (``dockyard.llbsolver.SECRETS`` and ``SSH_AGENTS``; this layer cannot
    import them). ``git`` and ``ssh`` are the programs to run (``ssh`` may be a command
    line); ``timeout`` bounds each git command (``None``: no limit). A remote command
    that fails transiently is tried ``attempts`` times in all, ``retry_delay`` seconds
    apart (doubling).
    """

    def __init__(
        self,
        *,
        cache: CacheManager,
        secrets_key: JobValue[SecretStore] | None = None,
        ssh_key: JobValue[SshForwarder] | None = None,
        git: str = "git",
        ssh: str = "ssh",
        timeout: float | None = None,
        attempts: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        self.cache = cache
        self.runner = GitRunner(git=git, ssh=ssh, timeout=timeout)
        self.attempts = max(attempts, 1)
        self.retry_delay = retry_delay
        self._secrets_key = secrets_key
        self._ssh_key = ssh_key
        self._checkouts: SingleFlight[str, str] = SingleFlight()
        self._ls_remotes = 0
        self._fetches = 0
        self._checkouts_done = 0
        self._reused = 0

    def statistics(self) -> GitStatistics:
        return GitStatistics(
            ls_remotes=self._ls_remotes,
            fetches=self._fetches,
            checkouts=self._checkouts_done,
            reused=self._reused,
        )

    def credentials(self, ctx: VertexContext) -> GitCredentials:
        """The credentials of every job holding the vertex, and its log."""
        secrets = ctx.values(self._secrets_key) if self._secrets_key is not None else ()
        agents = ctx.values(self._ssh_key) if self._ssh_key is not None else ()

        def log(data: bytes) -> None:
            ctx.log(data, stream=2)

        return GitCredentials(secrets=tuple(secrets), ssh_agents=tuple(agents), log=log)

    # -- the SourceResolver ------------------------------------------------------------
    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> GitInstance:
        return GitInstance(self, GitSpec.from_request(request))

    # -- the work ----------------------------------------------------------------------
    @staticmethod
    def cache_key(spec: GitSpec, resolved: ResolvedRef) -> str:
        """The key of ``spec``'s tree at ``resolved`` (BuildKit's form)."""
        if spec.keep_git_dir and not spec.subdir:
            key = f"{resolved.object}.git"
            if resolved.ref:
                key += "#" + resolved.ref
        else:
            key = resolved.commit
        if spec.subdir:
            key += ":" + spec.subdir
        if spec.skip_submodules:
            key += "(skip-submodules)"
        return key

    async def resolve_ref(
        self, spec: GitSpec, credentials: GitCredentials | None = None
    ) -> ResolvedRef:
        """``spec.ref`` resolved to a commit (see the module docstring); raises
        :class:`NotFoundError` naming the ref and the repository when it does not
        exist, :class:`ContentError` when the commit does not match ``checksum``."""
        creds = credentials or GitCredentials()
        resolved: ResolvedRef | None = None
        if is_commit_sha(spec.ref):
            resolved = ResolvedRef(commit=spec.ref, object=spec.ref)
        else:
            async with self._auth(spec, creds) as (auth, scrub):
                resolved = await self._ls_remote(spec, auth, scrub, creds)
                if resolved is None:
                    resolved = await self._resolve_abbreviated(spec, auth, scrub, creds)
        _check_checksum(spec, resolved)
        return resolved

    async def checkout(
        self,
        spec: GitSpec,
        resolved: ResolvedRef,
        credentials: GitCredentials | None = None,
    ) -> ImmutableRef:
        """The tree of ``spec`` at ``resolved`` as a new handle the caller owns: an
        earlier checkout with the same key, or a new one (fetching what is missing).
        Concurrent calls for one key do the work once."""
        creds = credentials or GitCredentials()
        # the key names a tree; the remote is added so that a kept .git (which names its
        # origin) is never shared between repositories
        remote = hashlib.sha256(spec.remote.url.encode()).hexdigest()[:24]
        label = f"{self.cache_key(spec, resolved)}@{remote}"
        for _ in range(3):
            record = await self._checkouts.do(
                label, lambda: self._checkout_record(spec, resolved, label, creds)
            )
            try:
                return await self.cache.get(record)
            except NotFoundError:  # pruned between the two steps: make it again
                continue
        raise DockyardError(f"git checkout of {spec.display} keeps disappearing (pruned)")

    async def fetch(
        self, spec: GitSpec, credentials: GitCredentials | None = None
    ) -> tuple[ResolvedRef, ImmutableRef]:
        """Resolve and check out in one call (remote build contexts)."""
        resolved = await self.resolve_ref(spec, credentials)
        return resolved, await self.checkout(spec, resolved, credentials)

    # -- credentials -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _auth(
        self, spec: GitSpec, creds: GitCredentials
    ) -> AsyncIterator[tuple[GitAuth, Scrubber]]:
        scrub = Scrubber([spec.remote])
        headers: tuple[tuple[str, str], ...] = ()
        if spec.remote.scheme in ("http", "https"):
            found = await _auth_header(spec, creds.secrets)
            if found is not None:
                header, hidden = found
                headers = ((spec.remote.token_scope, header),)
                scrub = scrub.with_secrets(hidden)
        async with contextlib.AsyncExitStack() as stack:
            sock: Path | None = None
            known: Path | None = None
            if spec.remote.scheme == "ssh":
                if spec.mount_ssh_sock:
                    sock = await _forward_agent(stack, spec, creds.ssh_agents)
                if spec.known_ssh_hosts:
                    known = _known_hosts_file(stack, spec.known_ssh_hosts)
            yield GitAuth(headers=headers, ssh_auth_sock=sock, known_hosts=known), scrub

    # -- resolving ---------------------------------------------------------------------
    async def _ls_remote(
        self, spec: GitSpec, auth: GitAuth, scrub: Scrubber, creds: GitCredentials
    ) -> ResolvedRef | None:
        ref = spec.ref
        self._ls_remotes += 1
        if not ref or ref == "HEAD":
            result = await self._git_remote(
                spec, auth, scrub, creds, "ls-remote", "--symref", "origin", "HEAD"
            )
            target = ""
            sha = ""
            for line in result.text.splitlines():
                left, _, name = line.partition("\t")
                if left.startswith("ref: ") and name == "HEAD":
                    target = left.removeprefix("ref: ").strip()
                elif name == "HEAD":
                    sha = left.strip()
            if not sha:
                raise NotFoundError(
                    f"repository {spec.remote.redacted} has no default branch (HEAD)"
                )
            return ResolvedRef(commit=sha, object=sha, ref=target)
        result = await self._git_remote(
            spec, auth, scrub, creds, "ls-remote", "origin", ref, ref + "^{}"
        )
        refs: dict[str, str] = {}
        for line in result.text.splitlines():
            sha, _, name = line.partition("\t")
            if name:
                refs[name.strip()] = sha.strip()
        candidates = [
            "refs/" + ref.removeprefix("refs/"),
            "refs/heads/" + ref.removeprefix("refs/heads/"),
            "refs/tags/" + ref.removeprefix("refs/tags/"),
        ]
        for name in candidates:
            sha = refs.get(name, "")
            if sha:
                peeled = refs.get(name + "^{}", "")
                if not is_commit_sha(sha) or (peeled and not is_commit_sha(peeled)):
                    raise DockyardError(
                        f"unexpected object id {sha!r} for {name} in {spec.remote.redacted}"
                    )
                return ResolvedRef(commit=peeled or sha, object=sha, ref=name)
        return None

    async def _resolve_abbreviated(
        self, spec: GitSpec, auth: GitAuth, scrub: Scrubber, creds: GitCredentials
    ) -> ResolvedRef:
        ref = spec.ref
        not_found = NotFoundError(f"git ref {ref!r} not found in repository {spec.remote.redacted}")
        if not (_ABBREV_MIN <= len(ref) < 64 and all(c in "0123456789abcdef" for c in ref)):
            raise not_found
        async with self._repository(spec) as repo:
            await self._fetch_all(repo, spec, auth, scrub, creds)
            found = await self.runner.run(
                "rev-parse", "--verify", "--quiet", ref + "^{commit}",
                git_dir=repo, scrub=scrub, check=False,
            )  # fmt: skip
        if not found.ok:
            if "ambiguous" in found.stderr:
                raise NotFoundError(
                    f"git ref {ref!r} is an ambiguous abbreviated commit in {spec.remote.redacted}"
                )
            raise not_found
        sha = found.text.strip()
        return ResolvedRef(commit=sha, object=sha)

    # -- the repository cache ----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _repository(self, spec: GitSpec) -> AsyncIterator[Path]:
        """The mounted bare repository caching ``spec``'s remote (made if new); one user
        at a time."""
        name = "git-remote:" + hashlib.sha256(spec.remote.url.encode()).hexdigest()
        async with (
            self.cache.named_mutable(
                name,
                record_type=RecordType.SOURCE_GIT,
                description=f"shared git repo for {spec.remote.redacted}",
            ) as ref,
            ref.mount() as root,
        ):
            if not (root / "HEAD").exists():
                await self.runner.run(
                    "init", "--bare", "--quiet", "--template=", str(root),
                    scrub=Scrubber(), what="initializing the git repository cache",
                )  # fmt: skip
            await asyncio.to_thread(_remove_stale_locks, root)
            yield root

    async def _git_remote(
        self,
        spec: GitSpec,
        auth: GitAuth,
        scrub: Scrubber,
        creds: GitCredentials,
        *args: str,
        git_dir: Path | None = None,
        check: bool = True,
    ) -> GitResult:
        """A git command talking to ``spec``'s remote (named ``origin``), run again while
        it fails transiently (see the module docstring)."""
        attempt = 1
        while True:
            result = await self.runner.run(
                *args,
                git_dir=git_dir,
                remote=spec.remote,
                auth=auth,
                scrub=scrub,
                log=creds.log,
                check=False,
            )
            if result.ok or attempt >= self.attempts or not _transient(result):
                break
            delay = self.retry_delay * 2 ** (attempt - 1)
            if creds.log is not None:
                creds.log(f"git {args[0]} failed ({result.tail()}); retrying\n".encode())
            await asyncio.sleep(delay)
            attempt += 1
        if check and not result.ok:
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            raise DockyardError(
                f"git {args[0]} of {spec.remote.redacted} failed{tries}: {result.tail()}"
            )
        return result

    async def _has_commit(self, repo: Path, sha: str) -> bool:
        result = await self.runner.run(
            "cat-file", "-e", sha + "^{commit}", git_dir=repo, scrub=Scrubber(), check=False
        )
        return result.ok

    async def _fetch(
        self,
        repo: Path,
        spec: GitSpec,
        auth: GitAuth,
        scrub: Scrubber,
        creds: GitCredentials,
        *refspecs: str,
        shallow: bool,
        options: Sequence[str] = (),
    ) -> GitResult:
        args = ["fetch", "--no-tags", "--no-write-fetch-head", *options]
        if shallow:
            args.append("--depth=1")
        elif (repo / "shallow").exists():
            args.append("--unshallow")
        self._fetches += 1
        result = await self._git_remote(
            spec, auth, scrub, creds, *args, "origin", *refspecs, git_dir=repo, check=False
        )
        if not result.ok and shallow and ("shallow" in result.stderr or "depth" in result.stderr):
            # a server that cannot serve shallow fetches (dumb http): fetch it all
            return await self._fetch(
                repo, spec, auth, scrub, creds, *refspecs, shallow=False, options=options
            )
        return result

    async def _fetch_all(
        self, repo: Path, spec: GitSpec, auth: GitAuth, scrub: Scrubber, creds: GitCredentials
    ) -> None:
        result = await self._fetch(
            repo, spec, auth, scrub, creds, f"+refs/*:{_ALL_REFS}*",
            shallow=False, options=("--prune",),
        )  # fmt: skip
        if not result.ok:
            raise DockyardError(f"git fetch of {spec.remote.redacted} failed: {result.tail()}")

    async def _ensure(
        self,
        repo: Path,
        spec: GitSpec,
        resolved: ResolvedRef,
        auth: GitAuth,
        scrub: Scrubber,
        creds: GitCredentials,
    ) -> None:
        """Fetch into ``repo`` what checking ``resolved`` out needs, if anything."""
        if await self._has_commit(repo, resolved.commit) and (
            resolved.object == resolved.commit
            or (
                await self.runner.run(
                    "cat-file", "-e", resolved.object, git_dir=repo, scrub=scrub, check=False
                )
            ).ok
        ):
            return
        if resolved.ref:
            local = _LOCAL_REFS + hashlib.sha256(resolved.ref.encode()).hexdigest()[:40]
            result = await self._fetch(
                repo, spec, auth, scrub, creds, f"+{resolved.ref}:{local}", shallow=True
            )
            if not result.ok:
                raise DockyardError(
                    f"git fetch of {resolved.ref} from {spec.remote.redacted} failed:"
                    f" {result.tail()}"
                )
            if await self._has_commit(repo, resolved.commit):
                return
            # the ref moved after it was resolved: ask for the commit itself
        by_id = f"+{resolved.object}:{_LOCAL_REFS}{resolved.object}"
        result = await self._fetch(repo, spec, auth, scrub, creds, by_id, shallow=True)
        if not (result.ok and await self._has_commit(repo, resolved.commit)):
            await self._fetch_all(repo, spec, auth, scrub, creds)
        if not await self._has_commit(repo, resolved.commit):
            raise NotFoundError(
                f"commit {resolved.commit} not found in repository {spec.remote.redacted}"
            )

    # -- checking out ------------------------------------------------------------------
    async def _checkout_record(
        self, spec: GitSpec, resolved: ResolvedRef, label: str, creds: GitCredentials
    ) -> str:
        for record in self.cache.records_with_label(GIT_SNAPSHOT_LABEL, label):
            self._reused += 1
            return record
        async with (
            self._auth(spec, creds) as (auth, scrub),
            self._repository(spec) as repo,
        ):
            await self._ensure(repo, spec, resolved, auth, scrub, creds)
            mutable = await self.cache.new_mutable(
                None,
                record_type=RecordType.SOURCE_GIT,
                description=f"git snapshot for {spec.display} ({resolved.commit[:12]})",
            )
            try:
                async with mutable.mount() as dest:
                    if spec.keep_git_dir and not spec.subdir:
                        await self._checkout_with_git_dir(
                            repo, dest, spec, resolved, auth, scrub, creds
                        )
                    else:
                        await self._checkout_tree(repo, dest, spec, resolved, auth, scrub, creds)
            except BaseException:
                await mutable.release()
                raise
            ref = await mutable.commit()
        try:
            ref.set_label(GIT_SNAPSHOT_LABEL, label)
        finally:
            await ref.release()
        self._checkouts_done += 1
        return ref.id

    async def _checkout_tree(
        self,
        repo: Path,
        dest: Path,
        spec: GitSpec,
        resolved: ResolvedRef,
        auth: GitAuth,
        scrub: Scrubber,
        creds: GitCredentials,
    ) -> None:
        work = dest / (_CHECKOUT_TMP + uuid.uuid4().hex[:12]) if spec.subdir else dest
        work.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="dockyard-git-index-") as tmp:
            index = Path(tmp, "index")
            await self.runner.run(
                "checkout", resolved.commit, "--", ".",
                git_dir=repo, work_tree=work, index_file=index, scrub=scrub,
                log=creds.log, what=f"git checkout of {spec.display}",
            )  # fmt: skip
            if not spec.skip_submodules and (work / ".gitmodules").is_file():
                await self._submodules(
                    repo, work, spec, auth, scrub, creds, index=index, remote=True
                )
                await asyncio.to_thread(_remove_git_links, work)
        if spec.subdir:
            await asyncio.to_thread(_hoist_subdir, work, dest, spec)

    async def _checkout_with_git_dir(
        self,
        repo: Path,
        dest: Path,
        spec: GitSpec,
        resolved: ResolvedRef,
        auth: GitAuth,
        scrub: Scrubber,
        creds: GitCredentials,
    ) -> None:
        git_dir = dest / ".git"
        quiet = Scrubber()
        await self.runner.run("init", "--quiet", "--template=", str(git_dir.parent), scrub=quiet)
        tmp_ref = _TMP_REFS + uuid.uuid4().hex
        await self.runner.run("update-ref", tmp_ref, resolved.object, git_dir=repo, scrub=quiet)
        try:
            refspec = f"+{tmp_ref}:{resolved.ref}" if resolved.ref else tmp_ref
            # the file protocol, not a local clone: no hard links into the cache
            await self.runner.run(
                "fetch", "--update-head-ok", "--no-tags", "--depth=1",
                "file://" + str(repo), refspec,
                git_dir=git_dir, scrub=scrub, log=creds.log,
                what=f"git fetch of {spec.display} into the checkout",
            )  # fmt: skip
        finally:
            await self.runner.run(
                "update-ref", "-d", tmp_ref, git_dir=repo, scrub=quiet, check=False
            )
        await self.runner.run(
            "checkout", "--quiet", "--detach", "FETCH_HEAD",
            git_dir=git_dir, work_tree=dest, cwd=dest, scrub=scrub, log=creds.log,
            what=f"git checkout of {spec.display}",
        )  # fmt: skip
        await self.runner.run(
            "remote", "add", "origin", spec.remote.redacted, git_dir=git_dir, scrub=scrub
        )
        if not spec.skip_submodules and (dest / ".gitmodules").is_file():
            await self._submodules(git_dir, dest, spec, auth, scrub, creds, index=None, remote=True)
            await self._redact_configs(git_dir)
        await self.runner.run(
            "reflog", "expire", "--all", "--expire=now", git_dir=git_dir, scrub=quiet
        )
        await asyncio.to_thread(_remove_fetch_traces, git_dir)

    async def _redact_configs(self, git_dir: Path) -> None:
        """Mask credentials in the URLs submodules wrote into the kept ``.git`` (the
        superproject's ``submodule.*.url`` and each module's ``remote.*.url``): they
        would otherwise end up in the layer."""
        configs = await asyncio.to_thread(_config_files, git_dir)
        quiet = Scrubber()
        for config in configs:
            found = await self.runner.run(
                "config", f"--file={config}", "--get-regexp", r"\.url$",
                scrub=quiet, check=False,
            )  # fmt: skip
            for line in found.text.splitlines():
                key, _, value = line.partition(" ")
                shown = redact_url(value)
                if key and shown != value:
                    await self.runner.run(
                        "config", f"--file={config}", "--replace-all", key, shown, scrub=quiet
                    )

    async def _submodules(
        self,
        git_dir: Path,
        work: Path,
        spec: GitSpec,
        auth: GitAuth,
        scrub: Scrubber,
        creds: GitCredentials,
        *,
        index: Path | None,
        remote: bool,
    ) -> None:
        """``git submodule update --init --recursive``, shallow if the servers allow.
        Relative submodule URLs resolve against the real remote (``remote.origin.url``
        from the environment)."""
        base = ["submodule", "update", "--init", "--recursive"]
        for args in ([*base, "--depth=1"], base):
            self._fetches += 1
            result = await self.runner.run(
                *args,
                git_dir=git_dir,
                work_tree=work,
                cwd=work,
                index_file=index,
                remote=spec.remote if remote else None,
                auth=auth,
                scrub=scrub,
                log=creds.log,
                check=False,
            )
            if result.ok:
                return
        raise DockyardError(f"updating the submodules of {spec.display} failed: {result.tail()}")


class GitInstance:
    """One ``git://`` op (a ``dockyard.llbsolver.SourceInstance``)."""

    def __init__(self, source: GitSource, spec: GitSpec) -> None:
        self.source = source
        self.spec = spec
        self.resolved: ResolvedRef | None = None
        self._lock = asyncio.Lock()

    async def _resolved(self, ctx: VertexContext) -> ResolvedRef:
        async with self._lock:
            if self.resolved is None:
                self.resolved = await self.source.resolve_ref(
                    self.spec, self.source.credentials(ctx)
                )
            return self.resolved

    async def cache_key(self, ctx: VertexContext) -> str:
        return self.source.cache_key(self.spec, await self._resolved(ctx))

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        resolved = await self._resolved(ctx)
        return await self.source.checkout(self.spec, resolved, self.source.credentials(ctx))


# -- helpers ---------------------------------------------------------------------------


_TRANSIENT = (
    "connection reset",
    "connection refused",
    "connection timed out",
    "could not connect",
    "couldn't connect",
    "early eof",
    "unexpected disconnect",
    "remote end hung up unexpectedly",
    "read error",
    "broken pipe",
    "rpc failed",
    "transfer closed",
    "the requested url returned error: 5",
)
_REFUSED = (
    "permission denied",
    "authentication failed",
    "could not read username",
    "could not read password",
    "not found",
    "does not appear to be a git repository",
    "not exported",
    "the requested url returned error: 4",
)


def _transient(result: GitResult) -> bool:
    """Whether a failed remote command failed the way a dropped connection or a busy
    server makes it fail (worth another attempt), rather than by a refusal."""
    text = result.stderr.lower()
    return not any(m in text for m in _REFUSED) and any(m in text for m in _TRANSIENT)


def _check_checksum(spec: GitSpec, resolved: ResolvedRef) -> None:
    want = spec.checksum
    if not want or resolved.commit.startswith(want) or resolved.object.startswith(want):
        return
    got = resolved.commit
    if resolved.object != resolved.commit:
        got += f" (tag {resolved.object})"
    raise ContentError(f"git checksum mismatch for {spec.display}: expected {want}, got {got}")


async def _auth_header(
    spec: GitSpec, stores: Sequence[SecretStore]
) -> tuple[str, list[str]] | None:
    """The ``Authorization`` header from the first secret found (BuildKit's order: the
    header secret, then the token secret, each first suffixed with ``.host``) and the
    strings to scrub."""
    names: list[tuple[str, bool]] = []
    host = spec.remote.host
    if spec.auth_header_secret:
        names.append((f"{spec.auth_header_secret}.{host}", False))
    if spec.auth_token_secret:
        names.append((f"{spec.auth_token_secret}.{host}", True))
    if spec.auth_header_secret:
        names.append((spec.auth_header_secret, False))
    if spec.auth_token_secret:
        names.append((spec.auth_token_secret, True))
    failure: DockyardError | None = None
    for name, is_token in names:
        for store in stores:
            try:
                value = (await store.get(name)).decode("utf-8", "replace").strip()
            except NotFoundError:
                continue
            except DockyardError as exc:  # a client failing to answer: the next is asked
                failure = failure or exc
                continue
            if not value:
                continue
            if is_token:
                encoded = base64.b64encode(f"x-access-token:{value}".encode()).decode()
                return f"Authorization: basic {encoded}", [value, encoded]
            return f"Authorization: {value}", [value, value.partition(" ")[2]]
    if failure is not None:
        raise failure
    return None


async def _forward_agent(
    stack: contextlib.AsyncExitStack, spec: GitSpec, agents: Sequence[SshForwarder]
) -> Path:
    failure: DockyardError | None = None
    for agent in agents:
        try:
            return await stack.enter_async_context(
                agent.forward(spec.mount_ssh_sock, uid=os.getuid(), gid=os.getgid(), mode=0o600)
            )
        except NotFoundError:
            continue
        except DockyardError as exc:  # a client failing to answer: the next is asked
            failure = failure or exc
    if failure is not None:
        raise failure
    raise NotFoundError(
        f"no SSH agent {spec.mount_ssh_sock!r} was forwarded for this build"
        f" (needed to fetch {spec.display}; pass --ssh {spec.mount_ssh_sock})"
    )


def _known_hosts_file(stack: contextlib.ExitStack | contextlib.AsyncExitStack, text: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="dockyard-known-hosts-")
    path = Path(name)
    stack.callback(path.unlink, missing_ok=True)
    with os.fdopen(fd, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    return path


def _remove_stale_locks(repo: Path) -> None:
    """Lock files a killed git left behind (nobody else uses this repository now: the
    cache hands it to one user at a time, and one engine owns the cache)."""
    for name in ("shallow.lock", "index.lock", "packed-refs.lock", "config.lock", "HEAD.lock"):
        with contextlib.suppress(FileNotFoundError):
            (repo / name).unlink()
    with contextlib.suppress(FileNotFoundError):
        (repo / "FETCH_HEAD").unlink()
    for dirpath, _, filenames in os.walk(repo / "refs"):
        for name in filenames:
            if name.endswith(".lock"):
                with contextlib.suppress(FileNotFoundError):
                    Path(dirpath, name).unlink()


def _config_files(git_dir: Path) -> list[Path]:
    """``git_dir/config`` and the config of every module below ``git_dir/modules``."""
    found = [git_dir / "config"]
    for dirpath, _, filenames in os.walk(git_dir / "modules"):
        if "config" in filenames and "HEAD" in filenames:
            found.append(Path(dirpath, "config"))
    return found


def _remove_fetch_traces(git_dir: Path) -> None:
    """``FETCH_HEAD`` files and module reflogs (they quote the URLs fetched from)."""
    with contextlib.suppress(FileNotFoundError):
        (git_dir / "FETCH_HEAD").unlink()
    for dirpath, dirnames, filenames in os.walk(git_dir / "modules"):
        if "FETCH_HEAD" in filenames:
            Path(dirpath, "FETCH_HEAD").unlink()
        if "logs" in dirnames and "HEAD" in filenames:
            dirnames.remove("logs")
            shutil.rmtree(Path(dirpath, "logs"))


def _remove_git_links(work: Path) -> None:
    """Remove the ``.git`` files submodules leave (they point into the cache)."""
    for dirpath, dirnames, filenames in os.walk(work):
        for name in (".git",):
            path = Path(dirpath, name)
            if name in filenames:
                path.unlink()
            elif name in dirnames:
                dirnames.remove(name)
                shutil.rmtree(path)


def _hoist_subdir(work: Path, dest: Path, spec: GitSpec) -> None:
    """Make ``spec.subdir`` of the checkout in ``work`` the content of ``dest``
    (symlinks on the way resolved inside the checkout)."""
    try:
        source = resolve_in_root(work, spec.subdir)
    except (DockyardError, OSError) as exc:
        raise PathEscapeError(f"subdirectory {spec.subdir!r} of {spec.display}: {exc}") from exc
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        st = None
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise NotFoundError(
            f"subdirectory {spec.subdir!r} not found in {spec.display}"
            + ("" if st is None else " (not a directory)")
        )
    if source == work:
        entries = [p for p in work.iterdir()]
        for entry in entries:
            os.rename(entry, dest / entry.name)
    else:
        for entry in list(source.iterdir()):
            os.rename(entry, dest / entry.name)
    shutil.rmtree(work)
