"""A programmable HTTP file server for tests, on a free loopback port.

Each path serves a :class:`Resource`: a body with optional ``ETag`` and
``Last-Modified`` (answering ``If-None-Match``/``If-Modified-Since`` with ``304``),
extra headers, a redirect, a status, or misbehaviour — the first N answers truncated
(the full ``Content-Length`` promised, half the body sent, the connection closed) or
dropped (closed before any answer), a delay between chunks (a slow body). Every
request is logged (:attr:`HttpTestServer.requests`) with its headers, the status sent
and how many body bytes went out, so tests can assert "nothing was downloaded".

:class:`ForwardProxy` is a forward HTTP proxy for made-up host names standing for
``127.0.0.1`` (what an ``HTTP_PROXY`` test needs: only the proxy reaches them).

Tests only; nothing in ``src`` may import this module.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ForwardProxy",
    "HttpTestServer",
    "LoggedRequest",
    "QuietHTTPServer",
    "Resource",
    "Serving",
    "http_date",
]


def http_date(timestamp: float) -> str:
    """``timestamp`` as an HTTP date (``Mon, 02 Jan 2006 15:04:05 GMT``)."""
    return email.utils.formatdate(timestamp, usegmt=True)


@dataclass
class Resource:
    """What one path serves; change the fields between requests to change it."""

    body: bytes = b""
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None
    truncate: int = 0
    drop: int = 0
    delay: float = 0.0
    chunk: int = 64 * 1024
    require_auth: str | None = None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """A request the server answered: ``headers`` with lower-case names, the
    ``status`` sent (0: dropped), ``sent`` body bytes."""

    method: str
    path: str
    headers: Mapping[str, str]
    status: int
    sent: int


@dataclass
class _State:
    resources: dict[str, Resource] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _etag_value(tag: str) -> str:
    return tag.strip().removeprefix("W/")


class _Handler(BaseHTTPRequestHandler):
    server_version = "dockyard-test-http/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _log(self, status: int, sent: int) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.state.lock:
            self.state.requests.append(
                LoggedRequest(
                    method=self.command,
                    path=urlsplit(self.path).path,
                    headers=headers,
                    status=status,
                    sent=sent,
                )
            )

    def _head(self, status: int, headers: Mapping[str, str], length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _serve(self, *, body: bool) -> None:
        path = urlsplit(self.path).path
        with self.state.lock:
            res = self.state.resources.get(path)
            drop = truncate = False
            if res is not None and res.drop > 0:
                res.drop -= 1
                drop = True
            elif res is not None and res.truncate > 0 and body:
                res.truncate -= 1
                truncate = True
        if res is None:
            self._log(404, 0)
            self._head(404, {}, 0)
            return
        if drop:
            self._log(0, 0)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if res.require_auth is not None and self.headers.get("Authorization") != res.require_auth:
            self._log(401, 0)
            self._head(401, {}, 0)
            return
        if res.location is not None:
            self._log(res.status, 0)
            self._head(res.status, {"Location": res.location}, 0)
            return
        validators: dict[str, str] = {}
        if res.etag is not None:
            validators["ETag"] = res.etag
        if res.last_modified is not None:
            validators["Last-Modified"] = res.last_modified
        if res.status == 200 and self._not_modified(res):
            self._log(304, 0)
            self.send_response(304)
            for name, value in validators.items():
                self.send_header(name, value)
            self.end_headers()
            return
        headers = {**validators, **res.headers}
        self._head(res.status, headers, len(res.body))
        if not body:
            self._log(res.status, 0)
            return
        payload = res.body[: len(res.body) // 2] if truncate else res.body
        sent = 0
        try:
            for start in range(0, len(payload), max(res.chunk, 1)):
                if res.delay:
                    time.sleep(res.delay)
                piece = payload[start : start + res.chunk]
                self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
        except OSError:
            pass  # the client gave up
        self._log(res.status, sent)
        if truncate:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _not_modified(self, res: Resource) -> bool:
        wanted = self.headers.get("If-None-Match")
        if wanted is not None:
            if res.etag is None:
                return False
            tags = [_etag_value(t) for t in wanted.split(",")]
            return "*" in tags or _etag_value(res.etag) in tags
        since = self.headers.get("If-Modified-Since")
        if since is not None and res.last_modified is not None:
            try:
                a = email.utils.parsedate_to_datetime(since)
                b = email.utils.parsedate_to_datetime(res.last_modified)
            except (TypeError, ValueError):
                return False
            return b <= a
        return False


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a client goes away
    mid-request (a reset or a broken pipe is the client's business, not a server error:
    tests that assert a clean stderr would see it)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        super().handle_error(request, client_address)


class Serving:
    """``server`` served by a daemon thread (one more per request) from now until
    :meth:`stop`, which shuts it down, closes it and joins the thread."""

    def __init__(self, server: QuietHTTPServer) -> None:
        server.daemon_threads = True
        self.server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


class HttpTestServer:
    """The server (see the module docstring); a context manager, or :meth:`start` and
    :meth:`stop`."""

    def __init__(self) -> None:
        self._state = _State()
        self._serving: Serving | None = None
        self.port = 0

    def url(self, path: str, *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, body: bytes = b"", **options: object) -> Resource:
        """Serve ``body`` at ``path`` (``options`` are :class:`Resource` fields)."""
        resource = Resource(body=body, **options)  # type: ignore[arg-type]
        with self._state.lock:
            self._state.resources["/" + path.lstrip("/")] = resource
        return resource

    def redirect(self, path: str, to: str, *, status: int = 302) -> Resource:
        return self.add(path, status=status, location=to)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def requests_for(self, path: str) -> list[LoggedRequest]:
        wanted = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == wanted]

    def start(self) -> None:
        server = QuietHTTPServer(("127.0.0.1", 0), _Handler)
        server.state = self._state  # type: ignore[attr-defined]
        self._serving = Serving(server)
        self.port = self._serving.port

    def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()

    def __enter__(self) -> HttpTestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ForwardProxy:
    """A forward HTTP proxy on loopback for tests: answers absolute-form ``http://``
    requests by forwarding them to ``127.0.0.1`` when their host is one of ``names`` (made
    up names only the proxy can reach: nothing resolves them), 502 otherwise; ``heads``
    answers ``HEAD`` requests of those paths itself (status and headers). ``seen`` lists
    ``(method, absolute URL)`` of every request."""

    names: tuple[str, ...] = ()
    heads: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, absolute URL)
    port: int = 0
    _serving: Serving | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                owner.seen.append((self.command, self.path))
                target = urlsplit(self.path)
                if target.scheme != "http" or target.hostname not in owner.names:
                    self.send_error(502)
                    return
                if self.command == "HEAD" and target.path in owner.heads:
                    status, headers = owner.heads[target.path]
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection("127.0.0.1", target.port or 80)
                path = target.path + (f"?{target.query}" if target.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
                upstream.request(self.command, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._serving = Serving(QuietHTTPServer(("127.0.0.1", 0), Handler))
        self.port = self._serving.port
        return self

    def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
