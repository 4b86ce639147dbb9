"""SSH agent forwarding.

Client side: :class:`SshSpec` (what ``--ssh`` names) and :class:`SshAgents`, which opens
connections to the agents: an existing agent socket (``$SSH_AUTH_SOCK`` by default), or
key files loaded into a private ``ssh-agent`` started on first use.

Engine side: :func:`forwarding_socket` serves a unix socket in a private directory and
relays every connection to it through a :class:`~dockyard.session.types.ByteChannel`
(in-process: a direct connection to the client's agent; over gRPC: a session stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError, SessionError, UsageError
from dockyard.core.procs import stop_process

from .types import ByteChannel

__all__ = ["SshAgents", "SshSpec", "StreamChannel", "forwarding_socket"]

_READ_SIZE = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class SshSpec:
    """One ``--ssh`` value: the agent ``id`` and its sources — one agent socket, or one
    or more private key files; none means ``$SSH_AUTH_SOCK``."""

    id: str = "default"
    paths: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.id or "," in self.id or "=" in self.id:
            raise UsageError(f"invalid ssh id {self.id!r}")

    @classmethod
    def parse(cls, value: str) -> SshSpec:
        """``default``, ``ID``, ``ID=SOCKET`` or ``ID=KEYFILE[,KEYFILE...]``."""
        ident, sep, rest = value.partition("=")
        if not ident:
            raise UsageError(f"invalid --ssh value {value!r} (expected ID[=SOCKET|KEY,...])")
        paths = tuple(Path(p).expanduser() for p in rest.split(",") if p) if sep else ()
        return cls(id=ident, paths=paths)


class StreamChannel:
    """A :class:`~dockyard.session.types.ByteChannel` over asyncio streams."""

    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            return await self._reader.read(_READ_SIZE)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def write_eof(self) -> None:
        if self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class SshAgents:
    """A :class:`~dockyard.session.types.SshAgentProvider` over :class:`SshSpec` values.

    An id backed by key files gets its own ``ssh-agent`` (from openssh-client) listening
    in a private directory, started on the first connection and stopped by
    :meth:`aclose`. Keys with a passphrase cannot be loaded this way (use an agent).
    """

    def __init__(
        self, specs: Iterable[SshSpec], *, environ: Mapping[str, str] | None = None
    ) -> None:
        environ = os.environ if environ is None else environ
        self._sockets: dict[str, Path] = {}
        self._keys: dict[str, tuple[Path, ...]] = {}
        for spec in specs:
            if spec.id in self._sockets or spec.id in self._keys:
                raise UsageError(f"ssh id {spec.id!r} is given twice")
            paths = spec.paths
            if not paths:
                sock = environ.get("SSH_AUTH_SOCK", "")
                if not sock:
                    raise UsageError(
                        f"--ssh {spec.id}: SSH_AUTH_SOCK is not set (start an ssh-agent "
                        "or name a socket or key file)"
                    )
                paths = (Path(sock),)
            kinds = {_path_kind(spec.id, p) for p in paths}
            if kinds == {"socket"} and len(paths) == 1:
                self._sockets[spec.id] = paths[0]
            elif kinds == {"key"}:
                self._keys[spec.id] = paths
            else:
                raise UsageError(f"--ssh {spec.id}: give one agent socket or one or more key files")
        self._agents: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    def ids(self) -> frozenset[str]:
        return frozenset(self._sockets) | frozenset(self._keys)

    def __repr__(self) -> str:
        return f"SshAgents(ids={sorted(self.ids())!r})"

    async def connect(self, id: str) -> ByteChannel:
        sock = self._sockets.get(id)
        if sock is None:
            if id not in self._keys:
                raise NotFoundError(f"no SSH agent {id!r} forwarded from the client")
            sock = await self._key_agent(id)
        try:
            reader, writer = await asyncio.open_unix_connection(os.fspath(sock))
        except OSError as exc:
            raise SessionError(
                f"cannot connect to SSH agent {id!r} at {str(sock)!r}: {exc.strerror}"
            ) from exc
        return StreamChannel(reader, writer)

    async def _key_agent(self, id: str) -> Path:
        async with self._lock:
            running = self._agents.get(id)
            if running is not None:
                return running[1]
            self._check_open(id)
            agent = shutil.which("ssh-agent")
            add = shutil.which("ssh-add")
            if agent is None or add is None:
                raise SessionError(
                    f"--ssh {id}: key files need ssh-agent and ssh-add (openssh-client)"
                )
            directory = Path(tempfile.mkdtemp(prefix="dockyard-agent-"))
            sock = directory / "agent.sock"
            try:
                proc = await asyncio.create_subprocess_exec(
                    agent,
                    "-D",
                    "-a",
                    os.fspath(sock),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            if self._closed:  # closed while it started: aclose() did not see it
                try:
                    await stop_process(proc, signal.SIGTERM)
                finally:
                    shutil.rmtree(directory, ignore_errors=True)
                self._check_open(id)
            self._agents[id] = (proc, sock)
            for _ in range(200):
                if sock.exists() or proc.returncode is not None:
                    break
                await asyncio.sleep(0.01)
            if not sock.exists():
                raise SessionError(f"--ssh {id}: ssh-agent did not start")
            env = {**os.environ, "SSH_AUTH_SOCK": os.fspath(sock), "SSH_ASKPASS": "/bin/false"}
            env.pop("DISPLAY", None)
            adder = await asyncio.create_subprocess_exec(
                add,
                *(os.fspath(p) for p in self._keys[id]),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            try:
                _, err = await adder.communicate()
            except BaseException:  # cancelled: ssh-add is not left running
                await stop_process(adder)
                raise
            if adder.returncode != 0:
                message = err.decode("utf-8", "replace").strip().splitlines()
                raise SessionError(
                    f"--ssh {id}: ssh-add could not load the key files"
                    + (f": {message[-1]}" if message else "")
                )
            return sock

    def _check_open(self, id: str) -> None:
        if self._closed:
            raise SessionError(f"--ssh {id}: the SSH agents are closed")

    async def aclose(self) -> None:
        """Stop the ssh-agents started for key files, every one of them even when
        cancelled meanwhile (the cancellation is raised once they are stopped); later
        connections to key files are refused."""
        self._closed = True
        agents, self._agents = self._agents, {}
        cancelled = False
        for proc, sock in agents.values():
            try:
                await stop_process(proc, signal.SIGTERM)
            except asyncio.CancelledError:
                cancelled = True
            finally:
                shutil.rmtree(sock.parent, ignore_errors=True)
        if cancelled:
            raise asyncio.CancelledError


def _path_kind(id: str, path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"--ssh {id}: cannot use {str(path)!r}: {exc.strerror}") from exc
    if stat.S_ISSOCK(st.st_mode):
        return "socket"
    if stat.S_ISREG(st.st_mode):
        _check_private_key(id, path)
        return "key"
    raise UsageError(f"--ssh {id}: {str(path)!r} is neither a socket nor a key file")


def _check_private_key(id: str, path: Path) -> None:
    """Refuse a file that holds no private key before the build, as buildx does (else
    the agent started for it fails only when a step connects, inside the build)."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise UsageError(f"--ssh {id}: cannot use {str(path)!r}: {exc.strerror}") from exc
    if b"PRIVATE KEY-----" in head:  # OpenSSH's and the PEM formats
        if _needs_passphrase(head):
            raise UsageError(
                f"--ssh {id}: {str(path)!r} is protected by a passphrase, which --ssh cannot "
                f"ask for (add the key to an ssh-agent with ssh-add and give --ssh {id} or "
                f"--ssh {id}=SOCKET)"
            )
        return
    public = head.startswith((b"ssh-", b"ecdsa-", b"sk-")) or path.suffix == ".pub"
    raise UsageError(
        f"--ssh {id}: {str(path)!r} is not a private key file"
        + (" (it is a public key: name the file without .pub)" if public else "")
    )


def _needs_passphrase(text: bytes) -> bool:
    """Whether the first private key in ``text`` is encrypted: buildx parses the key
    file when it reads ``--ssh`` and refuses one with a passphrase ("this private key is
    passphrase protected"); ssh-add would ask for it in the middle of the build (on the
    terminal, over the progress display) or fail there."""
    start = text.find(b"-----BEGIN ")
    if start < 0:
        return False
    line_end = text.find(b"\n", start)
    begin = text[start : len(text) if line_end < 0 else line_end].strip()
    if begin == b"-----BEGIN ENCRYPTED PRIVATE KEY-----":  # PKCS#8 with a passphrase
        return True
    end = text.find(b"-----END ", start + len(begin))
    body = text[start + len(begin) : len(text) if end < 0 else end]
    if begin == b"-----BEGIN OPENSSH PRIVATE KEY-----":
        return _openssh_cipher(body) not in (None, b"none")
    # OpenSSL's PEM forms ("RSA", "EC", "DSA PRIVATE KEY") open with a Proc-Type header
    first = body.lstrip().split(b"\n", 1)[0]
    return first.startswith(b"Proc-Type:") and b"ENCRYPTED" in first


def _openssh_cipher(body: bytes) -> bytes | None:
    """The cipher name of an OpenSSH private key (``none`` without a passphrase), or
    ``None`` when the text is not one."""
    import binascii

    try:
        blob = binascii.a2b_base64(b"".join(body.split()))
    except binascii.Error:
        return None
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return None
    size = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
    name = blob[len(magic) + 4 : len(magic) + 4 + size]
    return name if len(name) == size else None


async def relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: ByteChannel
) -> None:
    """Copy bytes both ways between a local stream and ``remote`` until both directions
    reached EOF (or one failed), then close both."""

    async def upstream() -> None:
        while True:
            try:
                data = await reader.read(_READ_SIZE)
            except ConnectionError:
                data = b""
            if not data:
                await remote.write_eof()
                return
            await remote.write(data)

    async def downstream() -> None:
        while True:
            data = await remote.read()
            if not data:
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(upstream())
            group.create_task(downstream())
    finally:
        writer.close()
        await remote.aclose()


@contextlib.asynccontextmanager
async def forwarding_socket(
    connect: Callable[[], Awaitable[ByteChannel]],
    *,
    uid: int = 0,
    gid: int = 0,
    mode: int = 0o600,
    parent: Path | None = None,
) -> AsyncIterator[Path]:
    """A unix socket, in a new private directory (mode 0700) under ``parent`` (the
    system's temp dir by default), owned by ``uid``:``gid`` (when running as root) with
    ``mode``; each connection is relayed to a new channel from ``connect``. On exit the
    socket, its directory and every relayed connection are gone."""
    directory = Path(tempfile.mkdtemp(prefix="dockyard-ssh-", dir=parent))
    path = directory / "agent.sock"
    tasks: set[asyncio.Task[None]] = set()
    closing = asyncio.Event()  # set as the socket closes

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if closing.is_set():  # accepted as the socket closed
            writer.close()
            return
        tasks.add(task)
        try:
            try:
                channel = await connect()
            except DockyardError:
                writer.close()
                return
            await relay(reader, writer, channel)
        except (DockyardError, OSError, ExceptionGroup):
            writer.close()  # the connection fails; the build step sees the agent hang up
        except asyncio.CancelledError:
            if not closing.is_set():
                raise
            # ended by the socket closing: the handler returns, as a handler ending
            # cancelled makes Python 3.11's stream server log the CancelledError
            # ("Exception in callback StreamReaderProtocol.connection_made...")
            writer.close()
        finally:
            tasks.discard(task)

    server = await asyncio.start_unix_server(handle, path=os.fspath(path))
    try:
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
        yield path
    finally:
        closing.set()
        server.close()
        for task in list(tasks):
            task.cancel()
        try:
            if tasks:
                await asyncio.wait(list(tasks))
            await server.wait_closed()
        finally:  # even when cancelled again meanwhile
            shutil.rmtree(directory, ignore_errors=True)
