"""Git repositories for tests, and real servers for them on loopback.

- :class:`TestRepo` — a work repository the test writes: deterministic commits
  (fixed author, dates counting up), branches, light and annotated tags, arbitrary refs
  (``refs/pull/1/head``), submodules.
- :class:`GitDaemon` — ``git daemon`` serving a directory of repositories over
  ``git://127.0.0.1:PORT/NAME`` (started and stopped by PID).
- :class:`GitSshServer` — OpenSSH's ``sshd`` on ``127.0.0.1:PORT`` with a host key of
  its own, letting ``root`` in with the public keys it is given: git's ssh transport
  (``ssh://root@127.0.0.1:PORT/<absolute path>``), started and stopped by PID.
- :class:`GitHttpServer` — git's smart HTTP: ``git http-backend`` run as a CGI program
  behind a small threaded HTTP server in the test process, optionally demanding an
  ``Authorization`` header, with a log of the requests it answered.

Repositories are served from their work directories (git finds ``NAME/.git``), so a
commit made by the test is visible to the next fetch. Tests only; nothing in ``src``
may import this module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from .httpserver import QuietHTTPServer, Serving

__all__ = [
    "GitDaemon",
    "GitHttpServer",
    "GitRequest",
    "GitSshServer",
    "TestRepo",
    "free_port",
    "git_env",
]

_START_TIMEOUT = 15.0
_EPOCH = 1_700_000_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for test-side git commands: no user or system configuration."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/dev/null",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "init.defaultBranch",
        "GIT_CONFIG_VALUE_0": "main",
        "GIT_CONFIG_KEY_1": "protocol.file.allow",
        "GIT_CONFIG_VALUE_1": "always",
    }
    env.update(extra or {})
    return env


class TestRepo:
    """A work repository at ``path`` (made on the default branch ``main``).

    Commits are deterministic: the same files, messages and order give the same ids
    on every run.
    """

    __test__ = False  # not a pytest class

    def __init__(self, path: Path) -> None:
        self.path = path
        self._time = _EPOCH
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "-b", "main")

    def git(self, *args: str) -> str:
        """Run git in the repository; its stdout."""
        self._time += 60
        env = git_env(
            {
                "GIT_AUTHOR_NAME": "Test Author",
                "GIT_AUTHOR_EMAIL": "author@example.com",
                "GIT_COMMITTER_NAME": "Test Committer",
                "GIT_COMMITTER_EMAIL": "committer@example.com",
                "GIT_AUTHOR_DATE": f"@{self._time} +0000",
                "GIT_COMMITTER_DATE": f"@{self._time} +0000",
            }
        )
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        """Write (``None``: delete) files of the work tree, paths relative to it."""
        for rel, content in files.items():
            path = self.path / rel
            if content is None:
                if path.is_symlink() or path.exists():
                    path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                content = content.encode()
            path.write_bytes(content)

    def commit(self, files: Mapping[str, str | bytes | None], message: str = "change") -> str:
        """Write ``files``, commit everything, return the new commit id."""
        self.write(files)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.rev_parse("HEAD")

    def rev_parse(self, ref: str) -> str:
        return self.git("rev-parse", ref).strip()

    def branch(self, name: str, at: str = "HEAD") -> None:
        self.git("branch", "--force", name, at)

    def checkout(self, name: str) -> None:
        self.git("checkout", "--quiet", name)

    def tag(self, name: str, at: str = "HEAD", *, annotated: bool = False) -> str:
        """Make (or move) tag ``name``; returns what the tag ref points at (the tag
        object for an annotated tag)."""
        if annotated:
            self.git("tag", "--force", "-a", "-m", f"tag {name}", name, at)
        else:
            self.git("tag", "--force", name, at)
        return self.rev_parse(f"refs/tags/{name}")

    def update_ref(self, name: str, at: str) -> None:
        """Point any ref (``refs/pull/1/head``) at ``at``."""
        self.git("update-ref", name, at)

    def add_submodule(self, url: str, path: str) -> None:
        """Add a submodule (not committed yet)."""
        self.git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", url, path)


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port}") from None
            time.sleep(0.02)


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """End a server this module started: SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class GitDaemon:
    """``git daemon`` exporting every repository under ``root``.

    ``url(name)`` is ``git://127.0.0.1:PORT/name``. Use as a context manager, or call
    :meth:`start` and :meth:`stop`. ``upload_packs()`` counts the fetch-side sessions
    it served per repository (``ls-remote`` and ``fetch`` both open one).
    """

    def __init__(self, root: Path, *, log: Path | None = None) -> None:
        self.root = root
        self.port = 0
        self.log = log if log is not None else root.parent / f"git-daemon-{id(self)}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.port = free_port()
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    "git", "daemon", "--reuseaddr", "--export-all", "--verbose",
                    "--informative-errors", "--listen=127.0.0.1", f"--port={self.port}",
                    f"--base-path={self.root}", "--log-destination=stderr", str(self.root),
                ],
                env=git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        try:
            _wait_listening(self.port, self._proc, "git daemon")
        except BaseException:  # a server that does not listen is stopped
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _terminate(proc)

    def upload_packs(self, name: str) -> int:
        """How many upload-pack sessions were served for repository ``name``."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(
            1
            for line in text.splitlines()
            if "Request upload-pack" in line and f"'/{name}'" in line
        )

    def __enter__(self) -> GitDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GitSshServer:
    """``sshd`` (OpenSSH, ``/usr/sbin/sshd``) serving this host's repositories to
    ``root`` over ssh on loopback, for the public keys in ``authorized_keys`` only
    (no password, no PAM, its own configuration, host key and log under ``work``).

    ``url(path)`` is ``ssh://root@127.0.0.1:PORT`` + the repository's absolute path;
    ``known_hosts()`` is the ``known_hosts`` line pinning the server's host key;
    ``accepted()`` counts the public-key logins it let in. sshd wants its privilege
    separation directory (``/run/sshd``): it is made when missing.
    """

    def __init__(self, work: Path, authorized_keys: str, *, sshd: str = "/usr/sbin/sshd") -> None:
        self.work = work
        self.authorized_keys = authorized_keys
        self.sshd = sshd
        self.port = 0
        self.log = work / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, path: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def known_hosts(self) -> str:
        key = (self.work / "host_key.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def accepted(self) -> int:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(1 for line in text.splitlines() if "Accepted publickey for root" in line)

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        host_key = self.work / "host_key"
        if not host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(host_key)],
                check=True,
            )
        keys = self.work / "authorized_keys"
        keys.write_text(self.authorized_keys)
        keys.chmod(0o600)
        self.port = self.port or free_port()  # a restart keeps its port (and URLs)
        config = self.work / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {keys}\n"
            f"PidFile {self.work / 'sshd.pid'}\n"
            "AuthenticationMethods publickey\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "AllowUsers root\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PrintMotd no\n"
            "LogLevel VERBOSE\n"
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.sshd, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            _wait_listening(self.port, self._proc, "sshd")
        except BaseException:  # a server that does not listen is stopped
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _terminate(proc)

    def __enter__(self) -> GitSshServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class GitRequest:
    """One request the smart-HTTP server answered."""

    method: str
    path: str
    query: str
    status: int
    authorization: str | None
    git_protocol: str | None


@dataclass
class _HttpState:
    root: Path
    auth: str | None
    requests: list[GitRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _GitHandler(BaseHTTPRequestHandler):
    server_version = "dockyard-test-git/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> _HttpState:
        return self.server.state  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, status: int) -> None:
        parts = urlsplit(self.path)
        with self.state.lock:
            self.state.requests.append(
                GitRequest(
                    method=self.command,
                    path=parts.path,
                    query=parts.query,
                    status=status,
                    authorization=self.headers.get("Authorization"),
                    git_protocol=self.headers.get("Git-Protocol"),
                )
            )

    def _serve(self) -> None:
        body = self._body()
        wanted = self.state.auth
        if wanted is not None and self.headers.get("Authorization") != wanted:
            self._record(401)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = urlsplit(self.path)
        env = git_env(
            {
                "GIT_PROJECT_ROOT": str(self.state.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_USER": "test",
            }
        )
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        if done.returncode != 0 and not head:
            status = 500
        self._record(status)
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHttpServer:
    """Smart HTTP for every repository under ``root`` at
    ``http://127.0.0.1:PORT/NAME``; with ``auth`` every request must carry exactly that
    ``Authorization`` header (else 401). :attr:`requests` logs what it answered."""

    def __init__(self, root: Path, *, auth: str | None = None) -> None:
        self._state = _HttpState(root=root, auth=auth)
        self._serving: Serving | None = None
        self.port = 0

    @property
    def requests(self) -> list[GitRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def url(self, name: str, *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        server = QuietHTTPServer(("127.0.0.1", 0), _GitHandler)
        server.state = self._state  # type: ignore[attr-defined]
        self._serving = Serving(server)
        self.port = self._serving.port

    def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()

    def __enter__(self) -> GitHttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
