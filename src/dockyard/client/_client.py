"""The client: builds, disk usage and pruning on an embedded engine or a daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING

from dockyard.core import DockyardError, Reporter, UsageError
from dockyard.core.procs import stop_process

from ._result import BuildResult, Transfer, Watcher

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.cache import UsageFilter, UsageRecord
    from dockyard.engine import EngineConfig, PruneResult
    from dockyard.exporter import ExportOptions
    from dockyard.frontend import PythonOptions
    from dockyard.session import CredentialsSource, SecretStore, SshAgentProvider, SshAgents

    from ._backend import Backend, Outcome
    from ._job import Job
    from ._options import BuildOptions
    from ._remote import ClientTls
    from ._result import ServerInfo, WorkerRecord

__all__ = ["Client"]


class Client:
    """Builds on an engine embedded in this process or on a ``dockyardd`` daemon.

    Make one with :meth:`open` (the address rules of :mod:`dockyard.client`:
    ``--addr``/``$DOCKYARD_HOST``, else a daemon on the default socket, else
    embedded), :meth:`embedded` or :meth:`connect`; close it with :meth:`close` (or
    ``async with``). An embedded client opens its engine — and locks the state
    directory — on first use; a daemon client loads grpc on first use. Builds may run
    concurrently on one client.

    The client serves each build's session: the context and Dockerfile directories
    (only what changed since the last build of the same directory travels), named
    contexts, secrets (read when a step asks, never stored), SSH agents, registry
    credentials from docker's config file, and the destinations of ``local``/``tar``
    outputs (streamed back when the daemon is remote).
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    # -- making one --------------------------------------------------------------------

    @classmethod
    def embedded(cls, config: EngineConfig | None = None) -> Client:
        """A client of an engine of its own, on ``config`` (default: the default state
        directory, crun, overlayfs where possible)."""
        from dockyard.engine import EngineConfig

        from ._embedded import EmbeddedBackend

        return cls(EmbeddedBackend(config or EngineConfig()))

    @classmethod
    def connect(cls, address: str, *, tls: ClientTls | None = None) -> Client:
        """A client of the daemon at ``address`` (``unix:///PATH`` or
        ``tcp://HOST:PORT``; ``tls`` for a daemon that wants client certificates).
        Nothing is dialled until the first call."""
        from ._remote import RemoteBackend

        return cls(RemoteBackend(address, tls=tls))

    @classmethod
    def open(
        cls,
        address: str | None = None,
        *,
        config: EngineConfig | None = None,
        environ: Mapping[str, str] | None = None,
        tls: ClientTls | None = None,
    ) -> Client:
        """The client the address rules choose: ``address``, else ``$DOCKYARD_HOST``,
        else (without a ``config`` naming the state directory to use) a daemon
        listening on the default socket, else an embedded engine on ``config``."""
        from ._address import select_address

        selected = select_address(address, state_dir_given=config is not None, environ=environ)
        if selected is None:
            return cls.embedded(config)
        return cls.connect(selected, tls=tls)

    @property
    def mode(self) -> str:
        """``embedded`` or ``daemon``."""
        return self._backend.mode

    @property
    def address(self) -> str | None:
        """The daemon's address (``None`` when embedded)."""
        return self._backend.address

    @property
    def state_dir(self) -> Path | None:
        """The embedded engine's state directory (``None`` for a daemon)."""
        config = getattr(self._backend, "config", None)
        return None if config is None else Path(config.state_dir)

    async def close(self) -> None:
        """Close the embedded engine (releasing its state directory) or the channel."""
        await self._backend.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- builds ------------------------------------------------------------------------

    async def build(self, options: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
        """Build a Dockerfile (``docker buildx build``; see :class:`BuildOptions`).

        Progress goes to ``reporter``. Raises :class:`~dockyard.core.UsageError` for
        options that cannot work (before anything runs) and the build's
        :class:`~dockyard.core.DockyardError` when it fails (the failing step, its
        output and the Dockerfile lines attached).
        """
        from dockyard.registry import DockerConfigCredentials

        from ._context import Scratch, prepare_context
        from ._job import LOAD_TARGET, dockerfile_job

        watcher = Watcher(reporter)
        secrets: SecretStore | None = None
        ssh: SshAgents | None = None
        if options.secrets:
            from dockyard.session import Secrets

            secrets = Secrets(options.secrets)
        if options.ssh:
            from dockyard.session import SshAgents

            ssh = SshAgents(options.ssh)
        credentials = DockerConfigCredentials()
        async with contextlib.AsyncExitStack() as stack:
            if ssh is not None:
                stack.push_async_callback(ssh.aclose)
            scratch = Scratch()
            stack.callback(scratch.close)

            async def fetch(definition: llb.Definition, dest: Path, name: str) -> None:
                from dockyard.exporter import LocalExport, LocalPath

                from ._job import Job

                job = Job(
                    name=name,
                    definition=definition,
                    exports=(LocalExport(dest=LocalPath(path=dest)),),
                    secrets=secrets,
                    ssh=ssh,
                    credentials=credentials,
                )
                await self._backend.run(job, watcher)

            context = await prepare_context(options, scratch, fetch)
            loader: _DockerLoad | None = None
            targets = {}
            if options.load and options.builds:
                loader = await _DockerLoad.start()
                stack.push_async_callback(loader.abort)
                from dockyard.session import FileTarget

                targets[LOAD_TARGET] = FileTarget(fd=loader.fd)
            job = dockerfile_job(
                options,
                context,
                targets=targets,
                secrets=secrets,
                ssh=ssh,
                credentials=credentials,
            )
            outcome = await self._backend.run(job, watcher)
            loaded = await loader.finish() if loader is not None else ""
        return _result(job, outcome, watcher, built=options.builds, loaded=loaded)

    async def solve(
        self,
        definition: llb.Definition | PythonOptions,
        *,
        directories: Mapping[str, str | PathLike[str]] | None = None,
        secrets: SecretStore | None = None,
        ssh: SshAgentProvider | None = None,
        credentials: CredentialsSource | None = None,
        exports: tuple[ExportOptions, ...] = (),
        entitlements: frozenset[str] = frozenset(),
        reporter: Reporter | None = None,
        name: str = "solve",
    ) -> BuildResult:
        """Build an LLB ``definition`` — or the Python build file that
        :class:`~dockyard.frontend.PythonOptions` names — and export it.
        ``directories`` are served as the local sources of those names
        (``llb.local(NAME)``); exports to paths of this host work embedded and against
        a daemon alike.

        A build file runs in this process either way: in the embedded engine's python
        frontend, or — for a daemon, which never runs a client's Python — here before
        its Definition is sent (the daemon's worker platform is the default target
        platform, as the embedded engine's own is)."""
        from dockyard.frontend import PYTHON_FRONTEND, PythonOptions

        from ._job import Job

        graph, build_file = (
            (None, definition) if isinstance(definition, PythonOptions) else (definition, None)
        )
        job = Job(
            name=name,
            definition=graph,
            frontend=PYTHON_FRONTEND if build_file is not None else None,
            frontend_options=build_file,
            exports=tuple(exports),
            directories=_absolute(directories or {}),
            secrets=secrets,
            ssh=ssh,
            credentials=credentials,
            entitlements=frozenset(entitlements),
        )
        watcher = Watcher(reporter)
        outcome = await self._backend.run(job, watcher)
        return _result(job, outcome, watcher, built=True, loaded="")

    # -- the cache -----------------------------------------------------------------------

    async def du(self, filters: UsageFilter | None = None) -> list[UsageRecord]:
        """Cache records matching ``filters``, largest first."""
        return await self._backend.du(filters)

    async def prune(
        self,
        *,
        all: bool = False,
        keep_duration: float | None = None,
        keep_storage: int | None = None,
        filters: UsageFilter | None = None,
    ) -> PruneResult:
        """Remove unused cache records (``keep_duration``: seconds of recent use to
        keep; ``keep_storage``: bytes of cache to keep). A daemon reports the records
        it removed; the embedded engine also the blobs."""
        return await self._backend.prune(
            all=all, keep_duration=keep_duration, keep_storage=keep_storage, filters=filters
        )

    async def info(self) -> ServerInfo:
        """Which engine this is and its version."""
        return await self._backend.info()

    async def workers(self) -> list[WorkerRecord]:
        """The engine's workers: platforms, labels and CDI devices (a daemon's
        ``ListWorkers``; the embedded engine's from its configuration, without opening
        it)."""
        return await self._backend.workers()


def _absolute(directories: Mapping[str, str | PathLike[str]]) -> dict[str, Path]:
    return {name: Path(os.path.abspath(path)) for name, path in directories.items()}


def _result(
    job: Job, outcome: Outcome, watcher: Watcher, *, built: bool, loaded: str
) -> BuildResult:
    transfers: dict[str, Transfer] = {
        name: t for name, t in watcher.transfers().items() if name in job.directories
    }
    return BuildResult(
        metadata=MappingProxyType(dict(outcome.metadata)),
        outputs=job.exports,
        warnings=outcome.warnings or tuple(watcher.warnings),
        transfers=MappingProxyType(transfers),
        built=built,
        load_output=loaded,
        replayable=outcome.replayable,
        replay_checks=outcome.replay_checks,
        synced=outcome.synced,
    )


class _DockerLoad:
    """``docker load`` reading a pipe whose write end (:attr:`fd`) the build's docker
    tarball goes to."""

    def __init__(self, process: asyncio.subprocess.Process, fd: int) -> None:
        self._process = process
        self.fd = fd

    @classmethod
    async def start(cls) -> _DockerLoad:
        docker = shutil.which("docker")
        if docker is None:
            raise UsageError(
                "--load pipes the image into `docker load`, but there is no docker CLI in "
                "PATH (write a tarball with -o type=docker,dest=FILE instead)"
            )
        read, write = os.pipe()
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    docker,
                    "load",
                    stdin=read,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
            finally:
                os.close(read)
        except BaseException as exc:  # not started, or cancelled as it started
            os.close(write)
            if isinstance(exc, OSError):
                raise DockyardError(f"cannot run {docker} load: {exc.strerror or exc}") from exc
            raise
        return cls(process, write)

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    async def finish(self) -> str:
        """Close the pipe and wait for ``docker load``; its output."""
        self._close()
        out, _ = await self._process.communicate()
        text = out.decode("utf-8", "replace").strip()
        if self._process.returncode:
            raise DockyardError(
                f"docker load failed (exit status {self._process.returncode}): {text}"
            )
        return text

    async def abort(self) -> None:
        self._close()
        await stop_process(self._process)
