"""Warm start: a pre-imported server forks one process per ``dockyard`` command.

Most of a short ``dockyard`` command is the interpreter importing the engine: ~0.3 s of a
one-file rebuild that does ~0.1 s of work. The first command of a user (per interpreter,
install and ``sys.path``) starts a *warm server* in the background and runs as usual; it
imports what commands need, then waits on a unix socket. Later commands connect, hand over
their argv, environment, working directory, umask, resource limits and every open file
descriptor (``SCM_RIGHTS``), and the server forks a child that becomes the command: its
stdin/stdout/stderr and other descriptors are the client's, its environment and
directory too, so the command behaves exactly as if it ran in the client's process —
including the embedded engine, which runs in the child. The client relays signals to the
child (Ctrl-C, SIGTERM, SIGHUP, window size changes, job control) and exits with the
child's exit code; the child cancels its command (as Ctrl-C does) when the client goes
away. Mercurial's ``chg`` and Gradle's daemon work this way.

Safety:

* The socket lives in a directory only the user can enter (``$XDG_RUNTIME_DIR/dockyard``,
  else ``/tmp/dockyard-<uid>``), checked to be a real directory owned by the user with mode
  0700; the server serves only clients with its own uid (``SO_PEERCRED``) that share its
  namespaces (mount, pid, network, user, ipc, uts, cgroup), root directory, ids and
  groups, capabilities, no_new_privs and seccomp state, LSM label and cgroup — anyone else
  (a sandboxed client must not borrow the server's rights) runs the command in its own
  process. The child takes on the client's niceness; not its I/O priority.
* Forking needs a single-threaded server: if any thread is alive (``/proc/self/task``)
  the server refuses and exits.
* The server exits when Dockyard's code changes (size and mtime of its modules, checked
  on every request), when its socket is removed or replaced, and after
  ``DOCKYARD_WARM_IDLE`` seconds without a command (default 900).
* ``DOCKYARD_WARM=0`` turns warm start off for a command (no server is used or started).
* The server keeps only Python's and its own variables of the first client's environment
  (a child gets its client's whole environment). Modules that keep a thread pool reset it
  in a forked child (``os.register_at_fork``: ``exporter._compress``, ``session._receive``).

**Spares.** A command does not wait for a fork either: while no command runs, the server
forks a *spare* child, which copies every resident page of its writable mappings
(``MADV_POPULATE_WRITE``, at idle CPU priority where it may raise it again; a
command's copy-on-write faults, ~5,000 per one-file rebuild, otherwise cost it ~25 ms)
and then waits on a socket pair; a client that comes first stops the copying. The server stays the only
one that accepts and checks clients: only a client that passed every check above, with
the server's key and unchanged code, is handed over (its connection, directory and
descriptors by ``SCM_RIGHTS``, its request as sent) and the spare becomes the command as
a forked child would; otherwise the server forks a child as before. A spare dies with
its server (``PR_SET_PDEATHSIG``, and the server kills and reaps it when it stops), is
replaced when the server imported learned modules after forking it, and costs one copy
of the server's private memory (~45 MB). A spare that dies unready three times ends
spares for the server's lifetime.

The server remembers which modules its children imported (a file beside the socket) and
imports them too, so the second command of a kind is fully warm. Importing ``grpc`` is
safe: its C core initialises (and starts threads) with the first channel, which only a
child makes; the thread check above is the backstop.
"""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import socket
    import threading
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = [
    "ENV_IDLE",
    "ENV_SWITCH",
    "PRELOAD",
    "enabled",
    "entry",
    "preload",
    "run",
    "runtime_dir",
    "serve",
    "server_key",
    "socket_path",
    "stop_servers",
]

ENV_SWITCH = "DOCKYARD_WARM"
ENV_IDLE = "DOCKYARD_WARM_IDLE"
DEFAULT_IDLE = 900.0

_MAGIC = b"DYW1"
_HEADER = struct.Struct("!4sI")  # magic, payload length
_REPLY = struct.Struct("!ci")  # kind (P: child pid, X: exit code, negative: a signal), value
_MAX_PAYLOAD = 16 << 20
_MAX_FDS = 200
_TICK = 5.0
# the namespaces a client must share with the server
_NAMESPACES = ("mnt", "pid", "net", "user", "ipc", "uts", "cgroup")
# resource limits handed from the client to the child
_RLIMITS = (
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_STACK",
)
_FORWARDED = (
    "SIGINT",
    "SIGTERM",
    "SIGHUP",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGWINCH",
    "SIGCONT",
)
_NO_FORK_PREFIXES = ("multiprocessing",)
_SPARE_FAILURES = 3  # spares that died unready before the server stops making them
_PR_SET_PDEATHSIG = 1
_MADV_POPULATE_WRITE = 23
_POPULATE_CHUNK = 1 << 20  # a spare looks for a client after copying each

#: What the server imports before it serves, besides the modules the daemon warms up
#: (:func:`preload`): the CLI and the embedded engine (a test keeps each importable).
#: Modules its children import besides are learned (see the module docstring).
PRELOAD: tuple[str, ...] = (
    "dockyard.cli.main",
    "dockyard.cli._build",
    "dockyard.cli._common",
    "dockyard.cli._hints",
    "dockyard.cli._memo",
    "dockyard.cli.progress",
    "dockyard.client",
    "dockyard.client._embedded",
    "dockyard.client._job",
    "dockyard.engine",
    "dockyard.llbsolver",
    "dockyard.cache",
    "dockyard.snapshot",
    "dockyard.session",
    "dockyard.source",
    "dockyard.frontend",
    "asyncio",
    "sqlite3",
)


def preload() -> tuple[str, ...]:
    """Everything the server imports before it serves."""
    from dockyard.daemon._warm import WARM_MODULES

    return (*PRELOAD, *WARM_MODULES)


# -- where ------------------------------------------------------------------------------


def enabled(argv: Sequence[str]) -> bool:
    """Whether a command with ``argv`` (without the program name) may run warm."""
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in ("0", "off", "no", "false"):
        return False
    # nothing to gain for a bare `dockyard`, --help or --version
    return bool(argv) and argv[0] not in ("-h", "--help", "--version")


def runtime_dir() -> str:
    """The directory of this user's warm servers."""
    base = os.environ.get("XDG_RUNTIME_DIR") or ""
    if base and os.path.isabs(base) and os.path.isdir(base):
        return os.path.join(base, "dockyard")
    return f"/tmp/dockyard-{os.getuid()}"


def server_key() -> bytes:
    """What a server must share with a client: interpreter, install and import path
    (sent with every request and compared whole by the server)."""
    import dockyard

    parts = [
        sys.executable,
        sys.version,
        os.path.dirname(os.path.abspath(dockyard.__file__)),
        *sys.path,
        *sys.warnoptions,
    ]
    return "\n".join(parts).encode("utf-8", "surrogateescape")


def socket_path(key: bytes | None = None) -> str:
    """The socket of the warm server for ``key`` (default: this process's)."""
    import zlib  # a C module: hashlib would cost the client ~4 ms of imports

    key = server_key() if key is None else key
    name = f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"
    return os.path.join(runtime_dir(), f"warm-{name}.sock")


def _private_dir(path: str, *, create: bool) -> bool:
    """Whether ``path`` is a directory owned by this user that nobody else can enter."""
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0


# -- the client ---------------------------------------------------------------------------


def run(argv: Sequence[str]) -> int | None:
    """Run the command ``argv`` (without the program name) in a warm server's child and
    return its exit code; ``None`` when it must run in this process (warm start is off,
    no server is ready — one is started for the next command — or the server refused)."""
    if not enabled(argv):
        return None
    key = server_key()
    path = socket_path(key)
    if not _private_dir(os.path.dirname(path), create=True):
        return None
    # the C module: `socket` (with enum and selectors) costs the client ~10 ms of imports
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            _start_server(path)
            return None
        except OSError:
            return None
        return _delegate(sock, argv, key)
    finally:
        sock.close()


def _start_server(path: str) -> None:
    """Start the warm server for ``path`` in the background unless one is starting."""
    try:
        with open(path + ".pid", "rb") as f:
            pid = int(f.read().strip() or b"0")
        if pid > 0:
            os.kill(pid, 0)
            return  # alive: still importing
    except (OSError, ValueError):
        pass
    # the client's exact import path (not -m's working directory) and warning options,
    # so that the server's key is the client's
    boot = (
        f"import sys; sys.path[:] = {sys.path!r}; "
        f"from dockyard.cli._warm import serve; serve({path!r})"
    )
    argv = [sys.executable, *(f"-W{w}" for w in sys.warnoptions), "-c", boot]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 65536)
            os.chdir("/")  # keep no directory of the client's busy
            os.execve(sys.executable, argv, _server_environment())
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def _server_environment() -> dict[str, str]:
    """What the server keeps of the first client's environment: how Python runs and the
    server's own settings. Every child gets its client's whole environment; the server
    must not hold on to the first client's (its tokens, say) for its lifetime."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG", ENV_IDLE)
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith(("PYTHON", "LC_"))}


def _open_fds(exclude: int) -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == exclude:
            continue
        try:
            os.fstat(fd)
        except OSError:
            continue  # the listing's own descriptor, closed by now
        fds.append(fd)
    return sorted(fds)


def _payload(argv: Sequence[str], fds: Sequence[int], key: bytes) -> bytes:
    import resource

    umask = os.umask(0)
    os.umask(umask)
    limits = []
    for name in _RLIMITS:
        soft, hard = resource.getrlimit(getattr(resource, name))
        limits.append(f"{name}={soft},{hard}".encode())
    signals = _signals()
    ignored = [
        name.encode()
        for name in (*_FORWARDED, "SIGTSTP")
        if signals.getsignal(getattr(signals, name)) == signals.SIG_IGN
    ]
    flags = [
        f"{fd},{1 if os.get_inheritable(fd) else 0}".encode() for fd in fds
    ]  # the order of SCM_RIGHTS, after the working directory
    fields: list[bytes] = [
        key,
        str(os.getpriority(os.PRIO_PROCESS, 0)).encode(),
        str(umask).encode(),
        str(len(flags)).encode(),
        *flags,
        str(len(limits)).encode(),
        *limits,
        str(len(ignored)).encode(),
        *ignored,
        str(len(argv) + 1).encode(),
        os.fsencode(sys.argv[0] if sys.argv else "dockyard"),
        *(os.fsencode(a) for a in argv),
        *(k + b"=" + v for k, v in os.environb.items()),
    ]
    return b"\0".join(fields)


def _signals() -> Any:
    """The C module of ``signal`` (whose Python half imports enum: ~4 ms)."""
    import _signal  # type: ignore[import-not-found]

    return _signal


def _delegate(sock: _socket.socket, argv: Sequence[str], key: bytes) -> int | None:
    if any("\0" in a for a in argv):
        return None
    fds = _open_fds(sock.fileno())
    if len(fds) > _MAX_FDS:
        return None
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        import _socket

        payload = _payload(argv, fds, key)
        rights = struct.pack(f"{len(fds) + 1}i", cwd, *fds)
        header = _HEADER.pack(_MAGIC, len(payload))
        sock.sendmsg([header], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        sock.sendall(payload)
    except OSError:
        return None
    finally:
        os.close(cwd)
    reply = _recv_reply(sock)
    if reply is None or reply[0] != b"P":
        return None  # refused (or gone) before forking: nothing ran
    return _follow(sock, reply[1])


def _recv_reply(sock: _socket.socket) -> tuple[bytes, int] | None:
    data = b""
    while len(data) < _REPLY.size:
        try:
            chunk = sock.recv(_REPLY.size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    kind, value = _REPLY.unpack(data)
    return kind, value


def _follow(sock: _socket.socket, child: int) -> int:
    """Relay signals to ``child`` until it reports its exit code."""
    signal = _signals()

    relayed: list[int] = []

    def relay(signum: int, frame: object) -> None:
        relayed.append(signum)
        try:
            os.kill(child, signum)
        except OSError:
            pass

    def stop(signum: int, frame: object) -> None:
        try:
            os.kill(child, signal.SIGSTOP)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGSTOP)

    for name in _FORWARDED:
        signum = getattr(signal, name)
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, relay)
    if signal.getsignal(signal.SIGTSTP) != signal.SIG_IGN:
        signal.signal(signal.SIGTSTP, stop)
    reply = _recv_reply(sock)
    if reply is not None and reply[0] == b"X":
        return reply[1]
    if relayed:
        return 128 + relayed[-1]
    sys.stderr.write("dockyard: the command's process ended without an exit status\n")
    return 1


# -- the server ----------------------------------------------------------------------------


def serve(path: str) -> None:
    """Serve warm starts on ``path`` until idle, stale or replaced (what
    :func:`_start_server` runs in the background)."""
    import fcntl

    directory = os.path.dirname(path)
    if not _private_dir(directory, create=True):
        return
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server for the same key
    _write_file(path + ".pid", f"{os.getpid()}\n".encode())
    code = _code_fingerprint()
    key = server_key()
    if os.path.basename(socket_path(key)) != os.path.basename(path):
        return  # started by hand for another interpreter or import path
    learned = path + ".modules"
    _preload(preload())
    if not _preload_learned(learned):
        return
    _prepare_executor()
    import ctypes  # a spare's prctl and madvise (see _spare), imported before the freeze
    import gc
    import select

    del ctypes, select
    gc.collect()
    gc.freeze()
    listener = _listen(path)
    idle = _idle_seconds()
    listener.settimeout(min(_TICK, idle))
    ident = os.stat(path).st_ino
    server = _Server(path=path, listener=listener, code=code, key=key, learned=learned, lock=lock)
    try:
        server.loop(ident, idle)
    finally:
        server.close()
        listener.close()
        try:
            if os.stat(path).st_ino == ident:
                os.unlink(path)
        except OSError:
            pass
        try:
            os.unlink(path + ".pid")
        except OSError:
            pass


def _listen(path: str) -> socket.socket:
    """A socket listening at ``path``, which appears there only once it accepts clients
    (bound there first, a client that came between the bind and the listen was refused
    and ran its command cold); it replaces what ``path`` held (a dead server's socket)."""
    import socket

    # a name no longer than the socket's own (a unix socket's path has 107 bytes at most)
    new = os.path.join(os.path.dirname(path), f".warm-{os.getpid()}.new")
    try:
        os.unlink(new)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(new)
        os.chmod(new, 0o600)
        listener.listen(64)
        os.replace(new, path)
    except BaseException:
        listener.close()
        try:
            os.unlink(new)
        except OSError:
            pass
        raise
    return listener


def stop_servers(directory: str | os.PathLike[str]) -> int:
    """SIGTERM every warm server whose pid file is in ``directory`` (a runtime
    directory's ``dockyard``, as tests and the bench harness keep their own); how many."""
    import glob
    import signal

    stopped = 0
    for pidfile in glob.glob(os.path.join(glob.escape(os.fspath(directory)), "*.sock.pid")):
        try:
            with open(pidfile, "rb") as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            continue
        stopped += 1
    return stopped


def _idle_seconds() -> float:
    try:
        return max(0.5, float(os.environ.get(ENV_IDLE, DEFAULT_IDLE)))
    except ValueError:
        return DEFAULT_IDLE


def _write_file(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _code_fingerprint() -> tuple[str, ...]:
    from dockyard.cli import _memo

    return _memo.code_fingerprint()


def _preload(names: Sequence[str]) -> None:
    import importlib

    for name in names:
        if name in sys.modules or name.startswith(_NO_FORK_PREFIXES):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # a child imports it again and reports the error
            continue


def _prepare_executor() -> None:
    """The seccomp filter of a ``RUN``, compiled once here (with libseccomp: no thread)
    instead of in every command that runs one: the children inherit it."""
    try:
        from dockyard.executor import prepare_seccomp

        prepare_seccomp()
    except Exception:  # the first RUN of a command computes it and reports what fails
        return


def _preload_learned(path: str) -> bool:
    """Import the modules children learned; False (and the list forgotten) when one of
    them started a thread, which would make forking unsafe for every later server."""
    _preload(_learned(path))
    if _threads() == 1:
        return True
    try:
        os.unlink(path)
    except OSError:
        pass
    return False


def _learned(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split()
    except OSError:
        return []
    return [n for n in dict.fromkeys(lines) if _module_name(n)]


def _module_name(name: str) -> bool:
    """Whether ``name`` is a dotted module name (anything else in the list is ignored)."""
    return all(part.isidentifier() for part in name.split("."))


class _Spare:
    """The server's side of a spare: a child forked ahead of a command that waits on
    ``channel`` for the server to hand it a client (see :func:`_spare`)."""

    def __init__(self, *, pid: int, channel: socket.socket, modules: int) -> None:
        self.pid = pid
        self.channel = channel
        self.modules = modules  # len(sys.modules) when it was forked
        self.ready = False


class _Server:
    def __init__(
        self,
        *,
        path: str,
        listener: socket.socket,
        code: tuple[str, ...],
        key: bytes,
        learned: str,
        lock: int = -1,
    ) -> None:
        self.path = path
        self.key = key
        self.listener = listener
        self.code = code
        self.learned = learned
        self.lock = lock
        self.children: dict[int, int] = {}  # pid: pidfd (-1: none)
        self.spare: _Spare | None = None
        self.spare_failures = 0
        self.namespaces = _namespaces("self")
        self.identity = _identity("self")

    def loop(self, ident: int, idle: float) -> None:
        import select
        import time

        tick = min(_TICK, idle)
        last = checked = time.monotonic()
        while True:
            # a spare is made while no command runs: its fork and copying would take
            # a core from a running command (two cores: slower builds, see bench/README)
            if self.spare is None and not self.children and not self._spawn_spare():
                return
            poller = select.poll()
            poller.register(self.listener, select.POLLIN)
            spare = self.spare
            if spare is not None:  # it reports ready, or dies (end of file)
                poller.register(spare.channel, select.POLLIN)
            for pidfd in self.children.values():
                if pidfd >= 0:
                    poller.register(pidfd, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(tick * 1000)}
            if spare is not None and spare.channel.fileno() in ready:
                self._spare_reported(spare)
            if self.listener.fileno() in ready:
                try:
                    conn, _ = self.listener.accept()
                except (TimeoutError, BlockingIOError):
                    conn = None
                if conn is not None:
                    last = time.monotonic()
                    with conn:
                        if not self._serve(conn):
                            return
            # after serving: what ended children learned is not on a client's clock
            if not self._reap():
                return
            now = time.monotonic()
            if ready and now - checked < tick:
                continue
            checked = now
            try:
                if os.stat(self.path).st_ino != ident:
                    return  # replaced or removed
            except OSError:
                return
            if _code_fingerprint() != self.code:
                return
            if not self.children and now - last >= idle:
                return

    def close(self) -> None:
        """End the spare (a spare never outlives its server) and forget the children."""
        self._drop_spare()
        for pidfd in self.children.values():
            if pidfd >= 0:
                os.close(pidfd)
        self.children.clear()

    # -- spares

    def _spawn_spare(self) -> bool:
        """Fork a spare unless spares keep failing; False when this server must stop
        (a thread is alive: forking is unsafe)."""
        if self.spare_failures >= _SPARE_FAILURES:
            return True
        if _threads() != 1:
            return False
        import socket

        from dockyard.cli import _memo

        _memo.verified_code = self.code  # the handover checks it again (_serve)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        server = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            self.spare_failures += 1
            return True
        if pid == 0:  # pragma: no cover - runs in the spare
            code = 1
            try:
                ours.close()
                self.listener.close()
                self._close_in_child()
                code = _spare(theirs, server, self.learned)
            finally:
                os._exit(code)
        theirs.close()
        ours.settimeout(10.0)
        self.spare = _Spare(pid=pid, channel=ours, modules=len(sys.modules))
        return True

    def _close_in_child(self) -> None:
        """What a forked process must not keep of the server: its lock (held while any
        process holds it) and its children's pidfds."""
        if self.lock >= 0:
            os.close(self.lock)
        if self.spare is not None:
            self.spare.channel.close()
        for pidfd in self.children.values():
            if pidfd >= 0:
                os.close(pidfd)

    def _spare_reported(self, spare: _Spare) -> None:
        """The spare is ready (it sent a byte) or gone (end of file)."""
        try:
            data = spare.channel.recv(1)
        except OSError:
            data = b""
        if data == b"R" and not spare.ready:
            spare.ready = True
            return
        if not spare.ready:
            self.spare_failures += 1
        self._drop_spare()

    def _drop_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            return
        import signal

        try:
            os.kill(spare.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(spare.pid, 0)
        except ChildProcessError:
            pass
        spare.channel.close()

    def _take_spare(self) -> _Spare | None:
        """The spare, when it has every module the server imported (one still copying
        its pages stops and takes the client: faster than a fork)."""
        spare = self.spare
        if spare is None:
            return None
        if spare.modules != len(sys.modules):  # forked before modules were learned
            self._drop_spare()
            return None
        self.spare = None
        return spare

    def _hand_over(
        self, spare: _Spare, conn: socket.socket, payload: bytes, fds: list[int]
    ) -> bool:
        """Pass a checked client to the spare: the client's connection, directory and
        descriptors (``SCM_RIGHTS``) and its request, as the client sent them."""
        import socket

        try:
            header = _HEADER.pack(_MAGIC, len(payload))
            socket.send_fds(spare.channel, [header], [conn.fileno(), *fds])
            spare.channel.sendall(payload)
        except OSError:
            self.spare = spare
            self._drop_spare()
            return False
        if not spare.ready:  # still copying, perhaps at idle priority: not on this clock
            try:
                os.sched_setscheduler(spare.pid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass
        spare.channel.close()
        self._add_child(spare.pid)
        return True

    # -- children

    def _add_child(self, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        self.children[pid] = pidfd

    def _reap(self) -> bool:
        """Collect ended children and import what they learned (a spare forked before
        is replaced); False when that left this server unable to fork."""
        learned = False
        for pid, pidfd in list(self.children.items()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                del self.children[pid]
                if pidfd >= 0:
                    os.close(pidfd)
                learned = True
        if not learned:
            return True
        before = len(sys.modules)
        if not _preload_learned(self.learned):
            return False
        if len(sys.modules) != before:
            self._drop_spare()
        return True

    def _serve(self, conn: socket.socket) -> bool:
        """Run the command of the client on ``conn`` in the spare or a forked child;
        False when this server must stop."""
        conn.settimeout(10.0)
        fds: list[int] = []
        try:
            if not self._peer_ok(conn):
                return True
            payload, fds = _receive(conn)
            if payload is None or not payload.startswith(self.key + b"\0"):
                return True  # not ours (another interpreter or import path)
            if _code_fingerprint() != self.code or _threads() != 1:
                return False  # the client runs the command itself; the next starts a server
            spare = self._take_spare()
            if spare is not None:
                self._hand_over(spare, conn, payload, fds)
                return True  # a failed handover ran nothing: the client runs it itself
            from dockyard.cli import _memo

            _memo.verified_code = self.code
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the forked child
                code = 1
                try:
                    self.listener.close()
                    self._close_in_child()
                    code = _child(conn, payload, fds, self.learned)
                finally:
                    os._exit(code)
            self._add_child(pid)
            return True
        except OSError:
            return True
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _peer_ok(self, conn: socket.socket) -> bool:
        import socket

        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid() or pid <= 0:
            return False
        try:
            theirs, ours = os.stat(f"/proc/{pid}/root"), os.stat("/proc/self/root")
        except OSError:
            return False
        if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
            return False
        namespaces, identity = _namespaces(str(pid)), _identity(str(pid))
        # what cannot be read is never the same
        return (
            namespaces is not None
            and namespaces == self.namespaces
            and identity is not None
            and identity == self.identity
        )


# what a process may do, beyond its uid: a client with fewer rights (dropped
# capabilities, no_new_privs, a seccomp filter, another LSM label or cgroup — a memory
# limit) must not get the server's by asking it
_STATUS_KEYS = (
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
)


def _identity(pid: str) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            status = dict(line.partition(":")[::2] for line in f.read().splitlines())
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            cgroup = f.read()
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/attr/current", encoding="utf-8", errors="replace") as f:
            label = f.read()
    except OSError:
        label = ""
    return (*(status.get(k, "").strip() for k in _STATUS_KEYS), cgroup, label)


def _namespaces(pid: str) -> tuple[int, ...] | None:
    try:
        return tuple(os.stat(f"/proc/{pid}/ns/{ns}").st_ino for ns in _NAMESPACES)
    except OSError:
        return None


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _receive(conn: socket.socket, extra: int = 0) -> tuple[bytes | None, list[int]]:
    """A request: its payload (None when cut short or malformed) and descriptors: the
    client's directory and open descriptors (after ``extra`` more, the spare's)."""
    import socket

    data, fds, flags, _addr = socket.recv_fds(conn, _HEADER.size, _MAX_FDS + 1 + extra)
    fds = list(fds)
    if flags & socket.MSG_CTRUNC:
        return None, fds  # more descriptors than a client may send
    while len(data) < _HEADER.size:
        more = conn.recv(_HEADER.size - len(data))
        if not more:
            return None, fds
        data += more
    magic, size = _HEADER.unpack(data)
    if magic != _MAGIC or size > _MAX_PAYLOAD or not fds:
        return None, fds
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            return None, fds
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks), fds


# -- the spare ---------------------------------------------------------------------------


def _spare(channel: socket.socket, server: int, learned: str) -> int:
    """Wait, prepared, for the server to hand over a client; then become its command."""
    if not _die_with(server):
        return 0
    # the copying takes only a core nothing else wants (the next command, another
    # builder), where the spare can get its priority back
    idle = _may_renice() and _set_policy(os.SCHED_IDLE)
    prepared = _prepare(channel)
    if idle and not _set_policy(os.SCHED_OTHER):
        return 0  # the command must not run at idle priority
    try:
        if prepared:
            channel.sendall(b"R")
        payload, fds = _receive(channel, extra=1)  # the client's connection first
    except OSError:
        return 0
    if payload is None or len(fds) < 2:
        return 0  # the server went away (end of file) or sent nothing usable
    # the command outlives the server as a forked child does; it ends with its client
    _die_with(0)
    channel.close()
    import socket

    conn = socket.socket(fileno=fds[0])
    return _child(conn, payload, fds[1:], learned)


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _die_with(server: int) -> bool:
    """Have the kernel kill this process when the server ends (``server`` 0: not any
    more); False when the server has already gone."""
    import signal

    libc = _libc()
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL if server else 0, 0, 0, 0) != 0:
        return False
    return not server or os.getppid() == server


def _may_renice() -> bool:
    """Whether this process may raise its priority again (``CAP_SYS_NICE``)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 23))
    except (OSError, ValueError):
        pass
    return False


def _set_policy(policy: int) -> bool:
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


def _prepare(channel: socket.socket) -> bool:
    """Take private copies of the pages a command would write, off the client's clock (a
    ``gc.collect()`` here saved ~10 % of the faults; this saves ~80 %); False when a
    client arrived first (a spare half ready beats a fork on the client's clock)."""
    import select

    poller = select.poll()
    poller.register(channel, select.POLLIN)
    return _populate_written(lambda: bool(poller.poll(0)))


def _populate_written(stop: Callable[[], bool] = lambda: False) -> bool:
    """Copy every resident page of this process's private writable mappings now
    (``MADV_POPULATE_WRITE``), so that a command does not fault on them one by one;
    False when ``stop()`` (asked before each MiB) cut that short."""
    if stop():  # (asked first: the server may have raised our priority before we lowered it)
        return False
    import ctypes

    libc = _libc()
    madvise = libc.madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/maps", "rb") as f:
            lines = f.read().splitlines()
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    runs: list[tuple[int, int]] = []
    try:
        for line in lines:
            fields = line.split()
            if len(fields) < 5 or fields[1][1:2] != b"w" or fields[1][3:4] != b"p":
                continue
            if len(fields) > 5 and fields[5].startswith(b"[v"):  # [vvar], [vdso]...
                continue
            start, end = (int(x, 16) for x in fields[0].split(b"-"))
            runs.extend(_resident(pagemap, start, end, page))
    finally:
        os.close(pagemap)
    chunk = _POPULATE_CHUNK
    for address, size in runs:
        for offset in range(0, size, chunk):
            if stop():
                return False
            madvise(address + offset, min(chunk, size - offset), _MADV_POPULATE_WRITE)
    return True


def _resident(pagemap: int, start: int, end: int, page: int) -> list[tuple[int, int]]:
    """The runs (address, size) of resident pages in [start, end)."""
    count = (end - start) // page
    try:
        data = os.pread(pagemap, count * 8, start // page * 8)
    except OSError:
        return []
    entries = memoryview(data).cast("Q")
    present = 1 << 63
    runs = []
    run = -1
    for i in range(len(entries) + 1):
        if i < len(entries) and entries[i] & present:
            if run < 0:
                run = i
        elif run >= 0:
            runs.append((start + run * page, (i - run) * page))
            run = -1
    return runs


# -- the child -----------------------------------------------------------------------------


def _child(conn: socket.socket, payload: bytes, fds: list[int], learned: str) -> int:
    """Become the client's command; its exit code (also sent to the client)."""
    import signal
    import threading

    os.setsid()
    for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGCONT"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    conn.settimeout(None)
    argv, conn = _become(payload, fds, conn)
    before = set(sys.modules)
    done = threading.Event()
    _watch(conn, done)
    _reply(conn, b"P", os.getpid())
    code = _run_command(argv)
    done.set()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _reply(conn, b"X", code)
    except OSError:
        pass
    _learn(learned, set(sys.modules) - before)  # the client is not kept waiting for it
    if code < 0:  # the command ends by a signal (stdout's reader went away): so do we
        from dockyard.cli.main import end_process

        end_process(code)
    return code


def _become(payload: bytes, fds: list[int], conn: socket.socket) -> tuple[list[str], socket.socket]:
    """Take on the client's descriptors, directory, umask, limits and environment; the
    command's argv and the connection (moved clear of the client's descriptor numbers)."""
    import fcntl
    import resource

    it = iter(payload.split(b"\0"))
    next(it)  # the key, checked by the server
    niceness = int(next(it))
    umask = int(next(it))
    targets = []
    for _ in range(int(next(it))):
        fd_number, fd_flag = next(it).split(b",")
        targets.append((int(fd_number), fd_flag == b"1"))
    limits = [next(it).decode() for _ in range(int(next(it)))]
    ignored = [next(it).decode() for _ in range(int(next(it)))]
    argv = [os.fsdecode(next(it)) for _ in range(int(next(it)))]
    environ = list(it)
    cwd, received = fds[0], fds[1:]
    if len(received) != len(targets):
        raise OSError("the client sent a different number of descriptors than it listed")
    # move the connection and the received descriptors above every target number
    top = max([n for n, _ in targets] + received + [conn.fileno(), cwd, 2]) + 1
    import socket

    moved_conn = socket.socket(fileno=fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC, top))
    conn.close()
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in received]
    os.fchdir(cwd)
    # nothing of the server's stays open: its lock, listener, /dev/null stdio
    keep = set(moved) | {moved_conn.fileno()}
    for fd in _open_fds(-1):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    for (number, inheritable), fd in zip(targets, moved, strict=True):
        os.dup2(fd, number, inheritable=inheritable)
        os.close(fd)
    os.umask(umask)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError:
        pass
    for entry in limits:
        name, _, values = entry.partition("=")
        soft, hard = (int(v) for v in values.split(","))
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (OSError, ValueError):
            pass
    import signal

    for name in ignored:  # what the client ignores (a background job's SIGINT), so do we
        if name.startswith("SIG") and hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    os.environ.clear()
    for item in environ:
        key, sep, value = item.partition(b"=")
        if sep and key:
            os.environb[key] = value
    sys.argv = argv
    _reopen_stdio({n for n, _ in targets})
    return argv[1:], moved_conn


def _reopen_stdio(open_fds: set[int]) -> None:
    import io

    def stream(fd: int, mode: str, errors: str, line: bool) -> io.TextIOWrapper | None:
        if fd not in open_fds:
            return None
        raw = io.FileIO(fd, mode, closefd=False)
        buffered: io.BufferedReader | io.BufferedWriter = (
            io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        )
        return io.TextIOWrapper(
            buffered,
            encoding="utf-8",
            errors=errors,
            line_buffering=line,
            write_through=fd == 2,
        )

    tty = 1 in open_fds and os.isatty(1)
    sys.stdin = stream(0, "r", "surrogateescape", False)
    sys.stdout = stream(1, "w", "surrogateescape", tty)
    sys.stderr = stream(2, "w", "backslashreplace", True)


def _watch(conn: socket.socket, done: threading.Event) -> None:
    """Interrupt this process (like Ctrl-C) when the client goes away."""
    import signal

    def watch() -> None:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    import threading

    threading.Thread(target=watch, name="dockyard-warm-client", daemon=True).start()


def _reply(conn: socket.socket, kind: bytes, value: int) -> None:
    conn.sendall(_REPLY.pack(kind, value))


def _run_command(argv: list[str]) -> int:
    from dockyard.cli.main import exit_code, run_command

    try:
        return run_command(argv)
    except SystemExit as exc:
        code = exc.code
        return exit_code(code if isinstance(code, int) else (0 if code is None else 1))
    except KeyboardInterrupt:
        return exit_code(130)
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass


def _learn(path: str, names: set[str]) -> None:
    """Note the modules a child imported for the server to import too."""
    new = sorted(
        n
        for n in names
        if n != "__main__" and not n.startswith(_NO_FORK_PREFIXES) and _module_name(n)
    )
    if not new:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, ("\n".join(new) + "\n").encode())
    finally:
        os.close(fd)


def entry() -> None:
    """The ``dockyard`` console script: the command in a warm server's child when one is
    ready, else in this process."""
    code = run(sys.argv[1:])
    if code is None:
        from dockyard.cli.main import run as run_here

        run_here()
    elif code < 0:  # the child ended by this signal (SIGPIPE): the client ends so too
        from dockyard.cli.main import end_process

        end_process(code)
    sys.exit(code)
