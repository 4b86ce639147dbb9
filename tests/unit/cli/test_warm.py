"""The warm-start server's checks (cli._warm); the whole path runs in
tests/integration/cli/test_warm.py."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli import _warm


@pytest.mark.parametrize(
    ("switch", "argv", "expected"),
    [
        ("", ["build", "."], True),
        ("1", ["images"], True),
        ("0", ["build", "."], False),
        ("off", ["build", "."], False),
        ("", ["--version"], False),
        ("", ["--help"], False),
        ("", [], False),
    ],
)
def test_enabled(
    monkeypatch: pytest.MonkeyPatch, switch: str, argv: list[str], expected: bool
) -> None:
    monkeypatch.setenv(_warm.ENV_SWITCH, switch)
    assert _warm.enabled(argv) is expected


def test_the_socket_lives_in_the_users_runtime_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = _warm.socket_path()
    assert os.path.dirname(path) == str(tmp_path / "dockyard")
    assert len(path) < 108  # sun_path
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    assert _warm.runtime_dir() == f"/tmp/dockyard-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))  # a stale variable
    assert _warm.runtime_dir() == f"/tmp/dockyard-{os.getuid()}"


def test_only_a_private_directory_is_used(tmp_path: Path) -> None:
    private = tmp_path / "private"
    assert _warm._private_dir(str(private), create=True)
    assert private.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert not _warm._private_dir(str(shared), create=True)
    link = tmp_path / "link"
    link.symlink_to(private)
    assert not _warm._private_dir(str(link), create=False)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 4321, 4321)
        assert not _warm._private_dir(str(theirs), create=False)


def test_a_client_in_a_shared_directory_runs_in_its_own_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = tmp_path / "run"
    (base / "dockyard").mkdir(parents=True, mode=0o777)
    (base / "dockyard").chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.delenv(_warm.ENV_SWITCH, raising=False)
    assert _warm.run(["build", "."]) is None
    assert list((base / "dockyard").iterdir()) == []  # no server was started


def test_learned_module_names_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "modules"
    path.write_text("dockyard.engine\nos.path\n../etc/passwd\nx;y\ndockyard.engine\n")
    assert _warm._learned(str(path)) == ["dockyard.engine", "os.path"]
    assert _warm._learned(str(tmp_path / "missing")) == []


def test_learning_skips_what_cannot_be_forked(tmp_path: Path) -> None:
    path = tmp_path / "modules"
    _warm._learn(str(path), {"multiprocessing.pool", "__main__", "json", "grpc", "a-b"})
    assert path.read_text().split() == ["grpc", "json"]


@pytest.mark.parametrize("name", _warm.preload())
def test_preloaded_modules_exist(name: str) -> None:
    importlib.import_module(name)


def test_the_socket_takes_its_name_only_once_it_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client never finds the server's socket refusing it (bound at its name before
    the listen, a client in between got ECONNREFUSED and ran its command cold)."""
    path = tmp_path / "warm-0123456789abcdef.sock"
    seen: list[str] = []

    class Watched(socket.socket):
        def listen(self, backlog: int = 0, /) -> None:  # what a client finds just before
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                try:
                    client.connect(str(path))
                except OSError as exc:
                    seen.append(type(exc).__name__)
            super().listen(backlog)

    monkeypatch.setattr(socket, "socket", Watched)
    listener = _warm._listen(str(path))
    monkeypatch.undo()
    with listener, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        assert seen == ["FileNotFoundError"]  # no socket yet: the client starts a server
        client.connect(str(path))
        listener.accept()[0].close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_dead_servers_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "warm-0123456789abcdef.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    with _warm._listen(str(path)) as listener, socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        listener.accept()[0].close()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def _server(code: tuple[str, ...]) -> _warm._Server:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return _warm._Server(
        path="/nonexistent",
        listener=listener,
        code=code,
        key=_warm.server_key(),
        learned="/dev/null",
    )


def test_peers_are_checked() -> None:
    server = _server(("code",))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, server.listener:
        assert server._peer_ok(ours)  # this process: same user, namespaces and root
        server.namespaces = (1, 2, 3)
        assert not server._peer_ok(ours)


def test_what_cannot_be_read_never_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _server(("code",))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, server.listener:
        monkeypatch.setattr(_warm, "_identity", lambda pid: None)
        server.identity = None
        assert not server._peer_ok(ours)


def _send_request(sock: socket.socket, *, descriptors: int = 1) -> None:
    read_end, write_end = os.pipe()
    sent = [read_end] + [os.dup(read_end) for _ in range(descriptors - 1)]
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY)
        payload = _warm._payload(["build", "."], sent, _warm.server_key())
        socket.send_fds(sock, [_warm._HEADER.pack(_warm._MAGIC, len(payload))], [cwd, *sent])
        sock.sendall(payload)
        os.close(cwd)
    finally:
        for fd in (*sent, write_end):
            os.close(fd)


def test_a_request_for_another_key_is_refused() -> None:
    server = _server(("code",))
    server.key = b"another interpreter"
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, server.listener:
        _send_request(theirs)
        assert server._serve(ours) is True  # the server goes on; this client runs it
        assert not server.children


def test_the_socket_is_named_by_the_key() -> None:
    assert _warm.socket_path(b"a") != _warm.socket_path(b"b")
    assert _warm.socket_path() == _warm.socket_path(_warm.server_key())


def test_a_server_whose_code_changed_stops_without_forking() -> None:
    server = _server(("old code",))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, server.listener:
        _send_request(theirs)
        assert server._serve(ours) is False  # the server stops; the client runs it
        assert not server.children


def test_a_request_is_read_whole() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        _send_request(theirs)
        payload, fds = _warm._receive(ours)
        try:
            assert payload is not None
            assert len(fds) == 2
            fields = payload.split(b"\0")
            assert b"build" in fields
            assert any(f.startswith(b"PATH=") for f in fields)
        finally:
            for fd in fds:
                os.close(fd)


def test_a_request_with_a_bad_header_is_dropped() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        theirs.sendall(b"GET / HTTP/1.1\r\n\r\n")
        payload, fds = _warm._receive(ours)
        assert payload is None
        assert fds == []


def test_identity_covers_rights() -> None:
    ours = _warm._identity("self")
    assert ours is not None
    assert ours == _warm._identity(str(os.getpid()))
    assert len(ours) == len(_warm._STATUS_KEYS) + 2  # status fields, cgroup, LSM label
    assert _warm._identity("0") is None  # no such process


def test_a_learned_module_that_starts_a_thread_is_forgotten(tmp_path: Path) -> None:
    """Forking with a thread alive is unsafe: a module that starts one at import must
    not poison every later server (checked in a fresh process: pytest has threads)."""
    import subprocess
    import sys

    (tmp_path / "threaded_mod.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
    )
    (tmp_path / "quiet_mod.py").write_text("VALUE = 1\n")
    learned = tmp_path / "server.modules"
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from dockyard.cli import _warm\n"
        f"print(_warm._preload_learned({str(learned)!r}))\n"
    )
    for names, expected, kept in (
        ("quiet_mod\n", "True", True),
        ("threaded_mod\n", "False", False),
    ):
        learned.write_text(names)
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected
        assert learned.exists() is kept


def test_the_server_keeps_little_of_the_first_clients_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_AUTH_TOKEN", "s3cr3t")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", "/var/tmp/pycache")
    monkeypatch.setenv(_warm.ENV_IDLE, "60")
    env = _warm._server_environment()
    assert "GIT_AUTH_TOKEN" not in env
    assert env["PYTHONPYCACHEPREFIX"] == "/var/tmp/pycache"
    assert env[_warm.ENV_IDLE] == "60"


def test_stop_servers_terminates_the_servers_named_by_pid_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "warm-0123456789abcdef.sock.pid").write_text(f"{server.pid}\n")
        (tmp_path / "warm-fedcba9876543210.sock.pid").write_text("not a pid\n")
        assert _warm.stop_servers(tmp_path) == 1
        assert server.wait(timeout=10) == -15
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# -- spares: the server's side, with a stand-in process and channel ------------------------


@pytest.fixture
def stand_in() -> Iterator[int]:
    """A child process of this test standing in for a spare (the server kills and
    reaps its spares; a test only checks what reached the channel)."""
    pid = os.posix_spawn("/bin/sleep", ["sleep", "60"], dict(os.environ))
    yield pid
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _with_spare(server: _warm._Server, pid: int, *, modules: int | None = None) -> socket.socket:
    """Give ``server`` a ready spare ``pid``; the spare's end of its channel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spare = _warm._Spare(
        pid=pid, channel=ours, modules=len(sys.modules) if modules is None else modules
    )
    spare.ready = True
    server.spare = spare
    return theirs


def _spare_of(server: _warm._Server) -> _warm._Spare | None:
    return server.spare  # (read afresh: a call changed it)


def _nothing_reached(channel: socket.socket) -> bool:
    try:
        channel.recv(1, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False  # data, or the end of the spare's channel


def _alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return False


@pytest.mark.parametrize("descriptors", [1, _warm._MAX_FDS])
def test_a_checked_client_is_handed_to_the_spare_whole(
    monkeypatch: pytest.MonkeyPatch, stand_in: int, descriptors: int
) -> None:
    monkeypatch.setattr(_warm, "_threads", lambda: 1)  # pytest's threads are not the server's
    server = _server(_warm._code_fingerprint())
    channel = _with_spare(server, stand_in)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, channel, server.listener:
        _send_request(theirs, descriptors=descriptors)
        assert server._serve(ours) is True
        assert _spare_of(server) is None  # taken
        assert stand_in in server.children  # reaped as a child from now on
        payload, fds = _warm._receive(channel, extra=1)
        try:
            assert payload is not None
            assert payload.startswith(server.key + b"\0")
            assert b"build" in payload.split(b"\0")
            # the client's connection, directory and descriptors
            assert len(fds) == 2 + descriptors
            with socket.socket(fileno=os.dup(fds[0])) as conn:
                conn.sendall(b"P")  # the spare answers the client itself
                assert theirs.recv(1) == b"P"
        finally:
            for fd in fds:
                os.close(fd)
        server.close()


def test_a_refused_peer_never_reaches_the_spare(stand_in: int) -> None:
    server = _server(_warm._code_fingerprint())
    server.namespaces = (1, 2, 3)  # the client is in other namespaces
    channel = _with_spare(server, stand_in)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, channel, server.listener:
        _send_request(theirs)
        assert server._serve(ours) is True
        assert _nothing_reached(channel)
        assert server.spare is not None
        assert server.spare.pid == stand_in
        assert _alive(stand_in)
        server.close()
        assert not _alive(stand_in)  # a spare never outlives its server


@pytest.mark.parametrize("why", ["another key", "code changed"])
def test_a_request_the_server_refuses_never_reaches_the_spare(stand_in: int, why: str) -> None:
    server = _server(_warm._code_fingerprint() if why == "another key" else ("old code",))
    if why == "another key":
        server.key = b"another interpreter"
    channel = _with_spare(server, stand_in)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, channel, server.listener:
        _send_request(theirs)
        assert server._serve(ours) is (why == "another key")  # a code change stops it
        assert _nothing_reached(channel)
        assert not server.children
        server.close()
        assert not _alive(stand_in)


def test_a_spare_forked_before_modules_were_learned_is_replaced(
    monkeypatch: pytest.MonkeyPatch, stand_in: int
) -> None:
    monkeypatch.setattr(_warm, "_threads", lambda: 1)
    monkeypatch.setattr(_warm._Server, "_spawn_spare", lambda self: True)
    server = _server(_warm._code_fingerprint())
    channel = _with_spare(server, stand_in, modules=len(sys.modules) - 1)
    with channel, server.listener:
        assert server._take_spare() is None  # the server forks a child instead
        assert _spare_of(server) is None
        assert not _alive(stand_in)  # killed and reaped
        assert channel.recv(1) == b""  # nothing but the end of its channel


def test_learning_modules_replaces_the_spare(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stand_in: int
) -> None:
    monkeypatch.setattr(_warm, "_threads", lambda: 1)
    name = f"learned_mod_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    server = _server(_warm._code_fingerprint())
    server.learned = str(tmp_path / "server.modules")
    channel = _with_spare(server, stand_in)
    ended = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    server.children[ended] = -1
    with channel, server.listener:
        assert server._reap()  # nothing new learned: the spare stays
        assert server.spare is not None
        assert _alive(stand_in)
        (tmp_path / "server.modules").write_text(f"{name}\n")
        again = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
        server.children[again] = -1
        while server.children:
            assert server._reap()
        assert name in sys.modules
        assert _spare_of(server) is None
        assert not _alive(stand_in)


def test_a_spare_that_died_unready_is_dropped_and_counted(stand_in: int) -> None:
    server = _server(_warm._code_fingerprint())
    channel = _with_spare(server, stand_in)
    assert server.spare is not None
    server.spare.ready = False
    with server.listener:
        channel.close()  # what the kernel does when the spare dies
        server._spare_reported(server.spare)
        assert _spare_of(server) is None
        assert server.spare_failures == 1
        server.spare_failures = _warm._SPARE_FAILURES
        assert server._spawn_spare() is True  # no more spares; forks go on
        assert _spare_of(server) is None


def test_a_spare_copies_its_resident_writable_pages(tmp_path: Path) -> None:
    """_populate_written breaks copy-on-write up front: pages a forked process shares
    with its parent become its own (checked in a fresh process: pytest has threads)."""
    import subprocess

    script = (
        "import os, resource\n"
        "from dockyard.cli import _warm\n"
        "heap = [bytearray(4096) for _ in range(2000)]\n"
        "def faults(prepare):\n"
        "    # the page faults of a forked child that runs prepare, then writes the heap\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        prepare()\n"
        "        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "        for b in heap:\n"
        "            b[0] = 1\n"
        "        after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "        print(after - before)\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "def prepared():\n"
        "    assert _warm._populate_written() is True\n"
        "def stopped():\n"
        "    assert _warm._populate_written(lambda: True) is False\n"
        "faults(prepared)\n"
        "faults(stopped)\n"
        "faults(lambda: None)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    prepared, stopped, plain = (int(n) for n in out.stdout.split())
    assert plain >= 1500  # one copy-on-write fault per page written
    assert prepared < 100
    assert stopped >= 1500  # a client came first: nothing was copied


def test_more_descriptors_than_a_client_may_send_are_refused() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        _send_request(theirs, descriptors=_warm._MAX_FDS + 1)
        payload, fds = _warm._receive(ours)
        for fd in fds:
            os.close(fd)
        assert payload is None


def test_a_ready_spare_that_died_is_dropped(stand_in: int) -> None:
    server = _server(_warm._code_fingerprint())
    channel = _with_spare(server, stand_in)
    with server.listener:
        channel.close()  # the spare died after it was ready
        assert server.spare is not None
        server._spare_reported(server.spare)
        assert _spare_of(server) is None
        assert not _alive(stand_in)  # reaped
        assert server.spare_failures == 0  # a replacement is made


@pytest.mark.skipif(not _warm._may_renice(), reason="raising a priority needs CAP_SYS_NICE")
def test_a_spare_still_copying_takes_the_client_at_normal_priority(
    monkeypatch: pytest.MonkeyPatch, stand_in: int
) -> None:
    monkeypatch.setattr(_warm, "_threads", lambda: 1)
    server = _server(_warm._code_fingerprint())
    channel = _with_spare(server, stand_in)
    assert server.spare is not None
    server.spare.ready = False  # copying its pages, at idle priority
    os.sched_setscheduler(stand_in, os.SCHED_IDLE, os.sched_param(0))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs, channel, server.listener:
        _send_request(theirs)
        assert server._serve(ours) is True
        assert stand_in in server.children  # taken although not ready
        assert os.sched_getscheduler(stand_in) == os.SCHED_OTHER
        payload, fds = _warm._receive(channel, extra=1)
        for fd in fds:
            os.close(fd)
        assert payload is not None
        server.close()
