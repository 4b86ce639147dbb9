"""``dockyardd``'s server: one engine, served over grpc.aio on unix sockets and TCP.

:meth:`Daemon.start` opens the engine on the configured state directory (locking it,
reaping what a crash left, recovering the cache), binds every listener, and serves the
control API (:class:`~dockyard.daemon.ControlService`) and the session service
(:class:`dockyard.session.SessionService`, so clients attach their sessions on the same
address), with garbage collection in the background.

Listeners
    A unix socket is created mode 0600 and then given its group and mode (0660 by
    default, owned by root's group unless ``[grpc] group`` names another), so it is
    never reachable by others in between; its directory is created ``0711`` when
    missing. A socket file left by a dead daemon is replaced; one a live daemon answers
    on is not (:class:`~dockyard.core.UsageError`). TCP listeners use mutual TLS
    (client certificates must chain to the configured CA); without TLS only loopback
    addresses are accepted (the config refuses others). ``SO_REUSEPORT`` is off: a
    second daemon cannot silently share a port.

Shutdown (:meth:`Daemon.shutdown`, on SIGTERM/SIGINT)
    New calls are refused at once; running builds are cancelled, not waited for — a
    build may take hours, and what it completed is in the cache for the next one. Their
    clients get ``CANCELLED`` saying the daemon is shutting down. The engine then
    cleans up (no container or mount is left), closes the sessions and releases the
    state directory; the sockets are removed. Calls still open after ``grace`` seconds
    are cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from dockyard import __version__
from dockyard.core import DockyardError, Platform, UsageError

from ._config import DaemonConfig, Listener, TcpListener, UnixListener
from ._gc import GarbageCollector
from ._memory import tune_allocator
from ._service import ControlService, WorkerInfo
from ._warm import warm

if TYPE_CHECKING:
    from dockyard.core.address import TlsConfig
    from dockyard.engine import Engine

__all__ = ["MAX_MESSAGE_BYTES", "Daemon"]

log = logging.getLogger("dockyard.daemon")

#: The largest message the daemon takes or sends (a big Definition; gRPC's default is
#: 4 MiB).
MAX_MESSAGE_BYTES = 64 << 20
_WORKER_LABEL = "org.mobyproject.buildkit.worker."


def _worker_id(state_dir: Path) -> str:
    """A random id kept in ``<state>/workerid`` (BuildKit's), stable across restarts."""
    path = state_dir / "workerid"
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    value = secrets.token_hex(13)
    tmp = path.with_name(f".workerid.{os.getpid()}")
    try:
        tmp.write_text(value + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise DockyardError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return value


def _worker_info(engine: Engine, config: DaemonConfig) -> WorkerInfo:
    labels = {
        _WORKER_LABEL + "executor": "oci",
        _WORKER_LABEL + "hostname": socket.gethostname(),
        _WORKER_LABEL + "snapshotter": engine.cache.snapshotter.name,
        _WORKER_LABEL + "network": engine.config.network.value,
        _WORKER_LABEL + "oci.process-mode": "sandbox",
        _WORKER_LABEL + "runtime": config.runtime,
    }
    registry = engine.llb.worker.devices
    return WorkerInfo(
        id=_worker_id(engine.state_dir),
        labels=labels,
        platforms=(engine.config.platform,),
        gc_policies=config.gc.policies,
        runnable=runnable_platforms,
        devices=registry.devices if registry is not None else None,
    )


def runnable_platforms() -> tuple[Platform, ...]:
    """The platforms this host runs, natively or emulated by a binfmt_misc handler with
    the ``F`` flag (:func:`dockyard.executor.host_platforms`, cached per process: a
    handler registered later shows once a build has asked for its platform)."""
    from dockyard.executor import host_platforms

    return tuple(s.platform for s in host_platforms().supported)


def _check_stale_socket(path: Path) -> None:
    """Remove a socket file no daemon answers on; refuse one a daemon answers on, or a
    path that is not a socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"cannot listen on unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise UsageError(f"cannot listen on unix://{path}: {exc.strerror or exc}") from exc
        try:
            path.unlink(missing_ok=True)
        except OSError as unlink_error:
            raise DockyardError(
                f"cannot remove the stale socket {path}: {unlink_error.strerror or unlink_error}"
            ) from unlink_error
        return
    finally:
        probe.close()
    raise UsageError(f"cannot listen on unix://{path}: another daemon is listening there")


class Daemon:
    """A running daemon (see the module docstring). Make it with :meth:`start`; end it
    with :meth:`shutdown`; :meth:`wait` returns once it has shut down."""

    def __init__(
        self,
        *,
        config: DaemonConfig,
        engine: Engine,
        server: Any,
        service: ControlService,
        gc: GarbageCollector,
        addresses: tuple[str, ...],
        sockets: tuple[Path, ...],
    ) -> None:
        self.config = config
        self.engine = engine
        self.service = service
        self.gc = gc
        self.addresses = addresses
        self._server = server
        self._sockets = sockets
        loop = asyncio.get_running_loop()
        self._gc_task = loop.create_task(gc.run(), name="dockyardd gc")
        # the first build should not pay for the imports every build needs
        self._warming = loop.run_in_executor(None, warm)
        self._stopped = asyncio.Event()
        self._shutdown: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        config: DaemonConfig,
        *,
        gc_delay: float = 1.0,
        gc_throttle: float = 60.0,
    ) -> Daemon:
        """Open the engine and serve it on every configured listener."""
        from dockyard.engine import Engine, EngineConfig, default_state_dir
        from dockyard.session import SERVER_OPTIONS, SessionService

        tune_allocator()

        engine_config = EngineConfig(
            state_dir=config.state_dir if config.state_dir is not None else default_state_dir(),
            runtime=config.runtime,
            runtime_binary=config.runtime_binary,
            snapshotter=config.snapshotter,
            max_parallelism=config.max_parallelism,
            registry=config.registry,
            entitlements=config.entitlements,
            cdi=config.cdi,
            host_paths=False,  # a client's paths are of its host: it offers them in its session
        )
        for listener in config.listeners:
            if isinstance(listener, UnixListener):
                _check_stale_socket(listener.path)
        engine = await Engine.open(engine_config)
        identity = repr(engine_config)
        server: Any = None
        sockets: list[Path] = []
        try:
            gc = GarbageCollector(engine, config.gc, delay=gc_delay, throttle=gc_throttle)
            service = ControlService(
                engine,
                worker=_worker_info(engine, config),
                gc=gc,
                identity=identity,
                sessions=engine.sessions,
            )
            server = grpc.aio.server(
                options=[
                    *SERVER_OPTIONS,
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.so_reuseport", 0),
                ]
            )
            service.add_to_server(server)
            SessionService(engine.sessions).add_to_server(server)
            addresses = []
            for listener in config.listeners:
                if isinstance(listener, UnixListener):
                    _socket_dir(listener.path.parent)
                    # written before the socket answers: a client never pairs a live
                    # socket with an earlier daemon's file
                    _write_state_file(listener, identity, engine.state_dir)
                    sockets.append(state_file(listener.path))
            old_umask = os.umask(0o177)
            try:
                for listener in config.listeners:
                    addresses.append(_bind(server, listener))
                    if isinstance(listener, UnixListener):
                        sockets.append(listener.path)
                await server.start()
            finally:
                os.umask(old_umask)
            for listener in config.listeners:
                if isinstance(listener, UnixListener):
                    _secure_socket(listener)
        except BaseException:
            if server is not None:
                await server.stop(None)
            for path in sockets:
                path.unlink(missing_ok=True)
            await engine.close()
            raise
        daemon = cls(
            config=config,
            engine=engine,
            server=server,
            service=service,
            gc=gc,
            addresses=tuple(addresses),
            sockets=tuple(sockets),
        )
        log.info(
            "dockyardd serving state directory %s on %s",
            engine.state_dir,
            ", ".join(addresses),
        )
        return daemon

    async def wait(self) -> None:
        """Return once the daemon has shut down."""
        await self._stopped.wait()

    def shutdown_soon(self, grace: float = 10.0) -> None:
        """Start :meth:`shutdown` (from a signal handler)."""
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._do_shutdown(grace))

    async def shutdown(self, grace: float = 10.0) -> None:
        """Refuse new calls, cancel running builds, close the engine, remove the
        sockets (see the module docstring). Idempotent."""
        self.shutdown_soon(grace)
        assert self._shutdown is not None
        await asyncio.shield(self._shutdown)

    async def _do_shutdown(self, grace: float) -> None:
        running = self.service.builds.running()
        log.info(
            "dockyardd shutting down%s",
            f": cancelling {len(running)} builds" if running else "",
        )
        self.service.begin_shutdown()
        self._gc_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._gc_task
        stopping = asyncio.get_running_loop().create_task(self._server.stop(grace))
        try:
            await self.engine.close()
        finally:
            await stopping
            self.service.builds.close()
            for path in self._sockets:
                with contextlib.suppress(OSError):
                    path.unlink()
            self._stopped.set()
            log.info("dockyardd stopped")


def _socket_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o711)
    except OSError as exc:
        raise DockyardError(
            f"cannot create the socket directory {path}: {exc.strerror or exc}"
        ) from exc


def _bind(server: Any, listener: Listener) -> str:
    if isinstance(listener, UnixListener):
        if _add_port(server.add_insecure_port, listener.bind_address) == 0:
            raise UsageError(f"cannot listen on {listener.url}")
        return listener.url
    assert isinstance(listener, TcpListener)
    # grpc's C core logs its own line before failing ("add_port.cc: Failed to add
    # port ..."): an address that cannot be bound is refused before grpc tries it
    why = _why_not_bound(listener)
    if why:
        raise UsageError(f"cannot listen on {listener.url}{why}")
    if listener.tls is not None:
        cert, key, ca = listener.tls.read()
        _check_tls(listener.tls)
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )
        port = _add_port(server.add_secure_port, listener.bind_address, credentials)
    elif listener.loopback:
        port = _add_port(server.add_insecure_port, listener.bind_address)
    else:  # the config refuses these; a guard for hand-made configs
        raise UsageError(f"{listener.url} is reachable from other hosts: it needs mutual TLS")
    if port == 0:
        raise UsageError(f"cannot listen on {listener.url}{_why_not_bound(listener)}")
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"tcp://{host}:{port}"


def _check_tls(tls: TlsConfig) -> None:
    """A :class:`~dockyard.core.ConfigError` when ``[grpc.tls]``'s files are no PEM
    certificate with its key and CA (grpc's C core logged "Invalid private key" lines,
    then the address was refused without a reason)."""
    from dockyard.core import ConfigError
    from dockyard.core.tlsfiles import ca_problem, key_pair_problem

    pair = key_pair_problem(tls.cert, tls.key, server=True)
    if pair is not None and pair.key_only:
        raise ConfigError(f"grpc.tls.key {tls.key}: {pair.reason}")
    if pair is not None:
        raise ConfigError(f"grpc.tls.cert {tls.cert} and grpc.tls.key {tls.key}: {pair.reason}")
    problem = ca_problem(cafile=tls.ca)
    if problem:
        raise ConfigError(f"grpc.tls.ca {tls.ca}: {problem}")


def _add_port(add: Any, *args: Any) -> int:
    """grpc's ``add_*_port``: the port bound, 0 when it could not bind (grpcio returned 0
    once; newer ones raise a bare RuntimeError, which reached the user as a traceback)."""
    try:
        return int(add(*args))
    except RuntimeError:
        return 0


def _why_not_bound(listener: TcpListener) -> str:
    """Why ``listener``'s address cannot be bound (grpc does not say): ``: <strerror>``
    from a probe of the same address, or nothing. The probe binds as grpc does, with
    ``SO_REUSEADDR`` (a port whose last connections linger in TIME_WAIT is free) and
    without ``SO_REUSEPORT`` (``grpc.so_reuseport`` is off: a port another daemon
    listens on is taken)."""
    try:
        infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM)
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        return f": {exc.strerror or exc}"
    return ""


def state_file(socket_path: Path) -> Path:
    """``<socket>.state``: what a client on this machine needs to compute the daemon's
    state token without a call (:func:`dockyard.core.statedir.state_token`)."""
    return socket_path.with_name(socket_path.name + ".state")


def _write_state_file(listener: UnixListener, identity: str, state_dir: Path) -> None:
    """The daemon's version, configuration and state directory, for its clients (as
    readable as the socket is reachable; removed with it)."""
    path = state_file(listener.path)
    data = json.dumps({"version": __version__, "identity": identity, "state_dir": str(state_dir)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        if listener.group is not None:
            os.chown(tmp, -1, listener.group)
        os.chmod(tmp, listener.mode & 0o666)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DockyardError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _secure_socket(listener: UnixListener) -> None:
    try:
        if listener.group is not None:
            os.chown(listener.path, -1, listener.group)
        os.chmod(listener.path, listener.mode)
    except OSError as exc:
        raise DockyardError(
            f"cannot set the owner or mode of {listener.path}: {exc.strerror or exc}"
        ) from exc
