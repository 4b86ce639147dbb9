"""A loopback registry that serves blobs over real sockets, with failure knobs, for the
direct download path (``registry/_direct.py``), which a mock transport cannot reach."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from dockyard.core import Digest
from dockyard.testing.httpserver import QuietHTTPServer, Serving

BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class Seen:
    """A request the server got: path, headers (names lower-case), the client's port."""

    path: str
    headers: dict[str, str]
    client_port: int


@dataclass
class BlobServer:
    """Serves ``blobs`` at ``/v2/<repo>/blobs/<digest>`` (ranges honoured when
    ``honor_range``), a ``/v2/`` ping, and a token endpoint at ``/token``.

    ``auth``: ``None``, ``"basic"`` (``user:pass``) or ``"bearer"`` (tokens from
    ``/token``; ``expire_first_blob_token`` answers the first blob ``GET`` 401 as if its
    token expired). Knobs for the next blob ``GET`` answers: ``cut`` (that many close
    after ``cut_at`` body bytes), ``stall`` (send ``stall_at`` bytes, then wait until
    the client closes the connection: :attr:`disconnected` is set), ``hang`` (seconds to
    wait after ``stall_at`` bytes before sending on), ``fail`` (statuses to answer), ``chunked`` (send the body chunked),
    ``redirect_to`` (a base URL: 307 there, same path), ``piece`` (bytes per write),
    ``pause`` (seconds between the first pieces) and ``hangup`` (that many answers are
    followed by closing the connection without saying so, like an idle timeout),
    ``drop_reused`` (that many requests arriving on a connection that served one before
    are dropped unanswered: a server closing an idle connection as it is reused).
    """

    auth: str | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    honor_range: bool = True
    cut: int = 0
    hangup: int = 0
    drop_reused: int = 0
    cut_at: int = 1 << 20
    stall: int = 0
    stall_at: int = 1 << 20
    hang: float = 0.0
    fail: list[int] = field(default_factory=list)
    chunked: bool = False
    redirect_to: str | None = None
    piece: int = 32 * 1024
    pause: float = 0.0
    expire_first_blob_token: bool = False
    tls: tuple[Path, Path] | None = None  # (cert, key)
    seen: list[Seen] = field(default_factory=list)
    tokens_issued: int = 0
    disconnected: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _serving: Serving | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- content --------------------------------------------------------------------
    def add(self, data: bytes) -> Digest:
        digest = Digest.from_bytes(data)
        self.blobs[str(digest)] = data
        return digest

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def blob_gets(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if BLOB.match(s.path)]

    # -- running --------------------------------------------------------------------
    def start(self) -> BlobServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._serving = Serving(server)
        self.port = self._serving.port
        return self

    def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()

    # -- knobs, taken under the lock ------------------------------------------------
    def _take(self, name: str) -> bool:
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False

    def _take_hang(self) -> float:
        with self._lock:
            hang, self.hang = self.hang, 0.0
            return hang

    def _take_fail(self) -> int:
        with self._lock:
            return self.fail.pop(0) if self.fail else 0

    def _expire(self) -> bool:
        with self._lock:
            if self.expire_first_blob_token:
                self.expire_first_blob_token = False
                return True
            return False

    def _issue(self) -> str:
        with self._lock:
            self.tokens_issued += 1
            return f"token-{self.tokens_issued}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: BlobServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self) -> dict[str, str]:
        owner = self.server_owner
        if owner.auth == "basic":
            return {"WWW-Authenticate": 'Basic realm="test"'}
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{owner.base}/token",service="test",scope="repository:app:pull"'
            )
        }

    def _authorized(self) -> bool:
        owner = self.server_owner
        sent = self.headers.get("Authorization", "")
        if owner.auth is None:
            return True
        if owner.auth == "basic":
            return sent == "Basic " + base64.b64encode(b"user:pass").decode()
        return sent.startswith("Bearer token-")

    served = 0

    def do_GET(self) -> None:
        owner = self.server_owner
        path = self.path.split("?", 1)[0]
        self.served += 1
        with owner._lock:
            owner.seen.append(
                Seen(
                    path,
                    {k.lower(): v for k, v in self.headers.items()},
                    int(self.client_address[1]),
                )
            )
        if self.served > 1 and BLOB.match(path) and owner._take("drop_reused"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/token":
            token = owner._issue()
            self._send(
                200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()
            )
            return
        if path == "/v2/":
            if self._authorized():
                self._send(200, {})
            else:
                self._send(401, self._challenge(), b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return
        match = BLOB.match(path)
        if match is None:
            self._send(404, {})
            return
        if not self._authorized() or (owner.auth == "bearer" and owner._expire()):
            self._send(401, self._challenge(), b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return
        if owner.redirect_to is not None:
            self._send(307, {"Location": owner.redirect_to + self.path})
            return
        status = owner._take_fail()
        if status:
            self._send(status, {"Content-Type": "application/json"}, b'{"errors":[{"code":"X"}]}')
            return
        data = owner.blobs.get(match["digest"])
        if data is None:
            self._send(404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            return
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted and owner.honor_range:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if owner.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._body(body)

    def _body(self, body: bytes) -> None:
        owner = self.server_owner
        cut = owner._take("cut")
        stall = owner._take("stall")
        hang = owner._take_hang()
        limit = owner.cut_at if cut else len(body)
        sent = 0
        try:
            for n, begin in enumerate(range(0, min(limit, len(body)), owner.piece)):
                if (stall or hang) and sent >= owner.stall_at:
                    if stall:
                        # wait for the client to go away (its end closes)
                        self.connection.settimeout(30)
                        while self.connection.recv(65536):
                            pass
                        owner.disconnected.set()
                        self.close_connection = True
                        return
                    time.sleep(hang)
                    hang = 0.0
                if owner.pause and n < 8:
                    time.sleep(owner.pause)
                piece = body[begin : min(begin + owner.piece, limit)]
                if owner.chunked:
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
            if owner.chunked and not cut:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:
            owner.disconnected.set()
            self.close_connection = True
            return
        if cut:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif owner._take("hangup"):
            self.close_connection = True


def socket_open_from(port: int) -> bool:
    """Whether this process still has a file descriptor for its TCP socket bound to
    local port ``port`` (an IPv4 loopback connection)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    fd_dir = Path("/proc/self/fd")
    for fd in fd_dir.iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:[") and str(target)[8:-1] in inodes:
            return True
    return False
