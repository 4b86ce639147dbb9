"""Blob bodies over a direct connection, read in a thread of its own.

httpx reads a body on the event loop, ~30 KiB per step through h11: ~1,600 steps of
Python for a 48 MiB pull, each needing the GIL that the layer unpack's threads want
too. Here one ``GET`` runs in a dedicated thread on a blocking socket: the request is
written and the response head parsed there, and the body is received 1 MiB per
``recv`` (``MSG_WAITALL`` on plain TCP; over TLS a loop of ``recv_into`` into a 1 MiB
buffer), so the thread holds the GIL a few times per MiB. Each MiB is handed to the
event loop (at most :data:`_DEPTH` ahead of it), where the download hashes and writes
it as before.

What stays with :class:`~dockyard.registry._http.HttpSession`: retries, backoff,
authorization (the challenge flow, 401 refresh), the TLS context (same per-host CA /
client certificate / insecure settings as the httpx client) and error translation.
This module follows redirects like httpx does (``Authorization`` only to the same
origin or its HTTPS upgrade) and raises :class:`DirectUnsupported` where it does not
apply; the caller then sends the request through httpx:

- httpx's client would send the URL (or a redirect's target) through a proxy: it
  decides, with its own rules. (Today it never does: the client is made with a
  transport of its own, which turns httpx's environment proxies off; should that
  change, this path follows.)
- a success answer without ``Content-Length`` or with a ``Transfer-Encoding`` (chunked);
- an error answer whose body is not delimited by ``Content-Length`` or is over 64 KiB
  (httpx reads the registry's error detail from it);
- a header that cannot be sent as is (CR/LF in a value), a scheme other than http(s),
  a malformed status line or head.

Cancellation: :meth:`DirectResponse.aclose` (also what a cancelled caller runs) shuts
the socket down, which wakes a ``connect``, ``recv`` or TLS handshake blocked in the
thread, and waits for the thread to end; the thread closes the socket. No thread or
socket outlives the response.

Connections are kept alive: one read to the end of its answer goes back to a
:class:`DirectPool` (the session's) for the next ``GET`` to that origin (the next layer,
the storage host of a redirect), so a pull does not pay a TCP and TLS handshake per
layer; a reused connection the server closed meanwhile is replaced by a new one without
counting as a failure. Blobs under :data:`DIRECT_MIN_SIZE` stay with httpx.
"""

from __future__ import annotations

import asyncio
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.core.headers import header_int

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DIRECT_MIN_SIZE",
    "DirectPool",
    "DirectResponse",
    "DirectTransportError",
    "DirectUnsupported",
    "direct_get",
    "proxied",
]

#: Blobs smaller than this are fetched through httpx (its pooled connection is cheaper
#: than a new one; the per-chunk cost that this module saves is small for them).
DIRECT_MIN_SIZE = 1 << 20

_CHUNK = 1 << 20  # body bytes per hand-over to the event loop
_DEPTH = 4  # chunks the thread may receive ahead of the event loop
_HEAD_LIMIT = 64 * 1024
_ERROR_BODY_LIMIT = 64 * 1024
_MAX_REDIRECTS = 20
_POOL_PER_ORIGIN = 4  # idle connections kept per origin (3 downloads run at once)
_POOL_IDLE = 30.0  # seconds an idle connection is trusted to be still open
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DirectUnsupported(Exception):
    """The direct path does not apply to this request (see the module docstring): send
    it through httpx instead."""


class DirectTransportError(Exception):
    """The connection failed: name resolution, connect, TLS, sending, a malformed or
    missing answer, or a body that broke off (the cause is chained)."""


def proxied(client: httpx.AsyncClient, url: httpx.URL) -> bool:
    """Whether httpx's ``client`` would send a request for ``url`` through a proxy (or
    any transport but its default one, or its default one is a proxy router that sends
    ``url`` through a proxy: ``_proxy.ProxyRouter``)."""
    # httpx has no public API for it; test_direct.py fails if these names move
    pick = getattr(client, "_transport_for_url", None)
    default = getattr(client, "_transport", None)
    if pick is None or default is None:
        return True
    transport = pick(url)
    if transport is not default:
        return True
    from ._proxy import ProxyRouter

    return isinstance(transport, ProxyRouter) and transport.proxy_for(url) is not None


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    length: int | None  # Content-Length of a body to stream; None: not streamable
    body: bytes | None  # the whole (small) body of another answer, when delimited
    reusable: bool  # HTTP/1.1 without "Connection: close" (and, for `body`, read whole)


class _End:
    pass


class _NoAnswer(DirectTransportError):
    """The connection closed before any byte of an answer (a reused one may have been
    closed by the server while idle)."""


_END = _End()


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class DirectPool:
    """Idle keep-alive connections of the direct path, by origin and TLS context, for
    the next ``GET`` to the same origin (a blob per layer, a redirect to storage): at
    most :data:`_POOL_PER_ORIGIN` each, dropped after :data:`_POOL_IDLE` seconds.
    Thread-safe (the download threads take and give back); :meth:`close` closes all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[object, ...], list[tuple[socket.socket, float]]] = {}
        self._closed = False

    def take(self, key: tuple[object, ...]) -> socket.socket | None:
        """An idle connection to ``key``'s origin that still looks open, if any."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                sock, since = idle.pop()
            if time.monotonic() - since < _POOL_IDLE and _looks_open(sock):
                return sock
            sock.close()

    def give(self, key: tuple[object, ...], sock: socket.socket) -> None:
        now = time.monotonic()
        expired: list[socket.socket] = []
        with self._lock:
            # connections idle too long go now (a long-running daemon would otherwise
            # keep sockets its registries closed long ago)
            for origin, idle in list(self._idle.items()):
                expired += [s for s, since in idle if now - since >= _POOL_IDLE]
                kept = [(s, since) for s, since in idle if now - since < _POOL_IDLE]
                if kept:
                    self._idle[origin] = kept
                else:
                    del self._idle[origin]
            pooled = False
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < _POOL_PER_ORIGIN:
                    idle.append((sock, now))
                    pooled = True
        for old in expired:
            old.close()
        if not pooled:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for sock, _ in connections:
                sock.close()


def _looks_open(sock: socket.socket) -> bool:
    """An idle HTTP connection has nothing to read: readable means the server closed it
    (or sent something unasked); either way it is not reused."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class _Exchange:
    """One request and its answer, on one connection (taken from ``pool`` when it has
    one, given back when the answer was read to its end), in a thread of its own."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        addresses: Sequence[tuple[Any, ...]],
        server_hostname: str | None,
        context: ssl.SSLContext | None,
        request: bytes,
        timeout: float,
        connect_timeout: float,
        pool: DirectPool,
        pool_key: tuple[object, ...],
    ) -> None:
        self._loop = loop
        self._pool = pool
        self._pool_key = pool_key
        self._addresses = addresses
        self._server_hostname = server_hostname
        self._context = context
        self._request = request
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stopped = False
        # tokens for chunks the thread may receive ahead of the event loop (a C-level
        # queue: taking and giving back one costs no Condition)
        self._room: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(_DEPTH):
            self._room.put(None)
        self._queue: asyncio.Queue[_Head | bytes | _End | BaseException] = asyncio.Queue()
        self._ended: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="blob-download", daemon=True)
        self._thread.start()

    # -- the event loop's side ---------------------------------------------------------
    async def head(self) -> _Head:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, _Head)
        return item

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if isinstance(item, bytes):
                self._room.put(None)
                yield item
                continue
            if isinstance(item, BaseException):
                raise item
            return

    def interrupt(self) -> None:
        """Stop the thread soon: shut the socket down (waking a blocked call)."""
        with self._lock:
            self._stopped = True
            if self._sock is not None:
                try:
                    # the TCP socket's own shutdown (an SSLSocket's would drop its state
                    # under the thread reading it)
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected (yet), or already down
        self._room.put(None)  # wake a thread waiting for room

    async def aclose(self) -> None:
        """Stop the thread and wait for its end (even when cancelled meanwhile)."""
        self.interrupt()
        cancelled = False
        while not self._ended.done():
            try:
                await asyncio.shield(self._ended)
            except asyncio.CancelledError:
                cancelled = True
        self._thread.join()  # it is past its last step: returning from its function
        if cancelled:
            raise asyncio.CancelledError

    # -- the thread's side -------------------------------------------------------------
    def _post(self, item: _Head | bytes | _End | BaseException) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        try:
            self._exchange()
        except BaseException as exc:  # handed to the event loop
            error: BaseException = exc
            if self._stopped:
                error = DirectTransportError("the download was stopped")
                error.__cause__ = exc
            elif isinstance(exc, BlockingIOError):  # the kernel's receive/send timeout
                error = DirectTransportError(f"timed out after {self._timeout:g} s")
                error.__cause__ = exc
            elif isinstance(exc, OSError):  # ssl.SSLError and TimeoutError included
                error = DirectTransportError(str(exc) or type(exc).__name__)
                error.__cause__ = exc
            self._post(error)
        finally:
            with self._lock:
                sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()
            try:
                self._loop.call_soon_threadsafe(self._set_ended)
            except RuntimeError:  # pragma: no cover - the loop closed under us
                pass

    def _set_ended(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)

    def _connect(self) -> socket.socket:
        last: BaseException | None = None
        for family, kind, proto, _, address in self._addresses:
            sock = socket.socket(family, kind, proto)
            with self._lock:
                if self._stopped:
                    sock.close()
                    raise DirectTransportError("the download was stopped")
                self._sock = sock
            try:
                sock.settimeout(self._connect_timeout)
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                last = exc
                with self._lock:
                    self._sock = None
                sock.close()
                if self._stopped:
                    raise DirectTransportError("the download was stopped") from exc
        if last is not None:
            raise last
        raise DirectTransportError("the host name resolved to no address")

    def _exchange(self) -> None:
        pooled = self._pool.take(self._pool_key)
        if pooled is not None:
            with self._lock:
                if self._stopped:
                    pooled.close()
                    raise DirectTransportError("the download was stopped")
                self._sock = pooled
            try:
                pooled.sendall(self._request)
                head, rest = self._read_head(pooled)
            except (OSError, _NoAnswer):
                # the server closed the idle connection as it was reused: a new one
                with self._lock:
                    self._sock = None
                    stopped = self._stopped
                pooled.close()
                if stopped:
                    raise DirectTransportError("the download was stopped") from None
            else:
                self._answer(pooled, head, rest)
                return
        sock = self._open()
        sock.sendall(self._request)
        head, rest = self._read_head(sock)
        self._answer(sock, head, rest)

    def _open(self) -> socket.socket:
        sock = self._connect()
        if self._context is not None:
            tls = self._context.wrap_socket(
                sock, server_hostname=self._server_hostname, do_handshake_on_connect=False
            )
            with self._lock:
                self._sock = tls  # the plain socket object is detached now
                stopped = self._stopped
            if stopped:
                raise DirectTransportError("the download was stopped")
            tls.do_handshake()
            tls.settimeout(self._timeout)
            sock = tls
        else:
            # blocking, with the kernel's timeouts: recv(MSG_WAITALL) waits for a whole
            # chunk in one call (Python's own timeouts make the socket non-blocking)
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(self._timeout))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self._timeout))
        return sock

    def _answer(self, sock: socket.socket, head: _Head, rest: bytes) -> None:
        if head.length is None:
            if head.reusable and not rest:
                self._give_back(sock)  # before the head: the caller closes on it
            self._post(head)
            return
        # a body to stream: the head goes first, then the body in chunks, then the end
        self._post(head)
        left = head.length
        reusable = head.reusable and len(rest) <= left
        if rest:
            first = rest[:left]
            self._room.get()
            if self._stopped:
                return
            self._post(first)
            left -= len(first)
        encrypted = self._context is not None
        while left > 0:
            self._room.get()
            if self._stopped:
                return
            want = min(_CHUNK, left)
            data = _recv_tls(sock, want) if encrypted else _recv_plain(sock, want)
            if data:
                self._post(data)
                left -= len(data)
            if len(data) < want:
                raise DirectTransportError(
                    f"the connection closed {left} bytes before the end of the body"
                )
        if reusable:
            self._give_back(sock)
        self._post(_END)

    def _give_back(self, sock: socket.socket) -> None:
        """The answer was read to its end: the connection serves the next request."""
        with self._lock:
            if self._stopped or self._sock is not sock:
                return
            self._sock = None
        self._pool.give(self._pool_key, sock)

    def _read_head(self, sock: socket.socket) -> tuple[_Head, bytes]:
        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                head_bytes, rest = buffer[:end], buffer[end + 4 :]
                version, status, reason, headers = _parse_head(head_bytes)
                if 100 <= status < 200:  # an interim answer: the real one follows
                    buffer = rest
                    continue
                break
            if len(buffer) > _HEAD_LIMIT:
                raise DirectTransportError("the answer's head is larger than 64 KiB")
            data = sock.recv(65536)
            if not data:
                if not buffer:
                    raise _NoAnswer("the server closed the connection without an answer")
                raise DirectTransportError(
                    "the connection closed in the middle of the answer's head"
                )
            buffer += data
        length = _content_length(headers)
        chunked = any(name == "transfer-encoding" for name, _ in headers)
        keep = version == "HTTP/1.1" and not any(
            name == "connection" and "close" in value.lower() for name, value in headers
        )
        if status in (200, 206):  # a blob (or the range asked for): streamed
            if chunked or length is None:
                raise DirectUnsupported("the body has no Content-Length")
            return _Head(status, reason, headers, length, None, keep), rest
        body: bytes | None = None
        if not chunked and length is not None and length <= _ERROR_BODY_LIMIT:
            body = rest[:length]
            while len(body) < length:
                data = sock.recv(length - len(body))
                if not data:
                    body = None  # the detail is lost; the status still counts
                    break
                body += data
        reusable = keep and body is not None and len(rest) <= len(body)
        return _Head(status, reason, headers, None, body, reusable), b""


def _recv_plain(sock: socket.socket, want: int) -> bytes:
    """Up to ``want`` bytes, fewer only at the end of the stream (or a timeout)."""
    data = sock.recv(want, socket.MSG_WAITALL)
    if len(data) == want or not data:
        return data
    parts = [data]
    got = len(data)
    while got < want:
        more = sock.recv(want - got, socket.MSG_WAITALL)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _recv_tls(sock: socket.socket, want: int) -> bytes:
    buffer = bytearray(want)
    view = memoryview(buffer)
    got = 0
    while got < want:
        n = sock.recv_into(view[got:], want - got)
        if not n:
            break
        got += n
    view.release()
    if got < want:
        del buffer[got:]
    return bytes(buffer)


def _parse_head(data: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise DirectUnsupported("the answer's head is not text") from exc
    lines = text.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or header_int(code) is None:
        raise DirectUnsupported(f"unexpected status line {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # obsolete line folding
            raise DirectUnsupported("the answer folds a header line")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise DirectUnsupported(f"malformed header line {line[:80]!r}")
        headers.append((name.lower(), value.strip()))
    return version, int(code), reason.strip(), headers


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    values = {value for name, value in headers if name == "content-length"}
    if len(values) != 1:
        return None
    value = values.pop()
    return header_int(value)


class DirectResponse:
    """A 200 or 206 answer whose body :meth:`chunks` yields in pieces of up to 1 MiB
    (exactly the ``Content-Length``; a shorter body raises
    :class:`DirectTransportError` after its last bytes). Always :meth:`aclose` it."""

    def __init__(
        self, exchange: _Exchange, head: _Head, url: httpx.URL, headers: httpx.Headers
    ) -> None:
        self._exchange = exchange
        self.status_code = head.status
        self.reason_phrase = head.reason
        self.headers = headers
        self.url = url
        self.content_length = head.length or 0

    def chunks(self) -> AsyncIterator[bytes]:
        return self._exchange.chunks()

    async def aclose(self) -> None:
        await self._exchange.aclose()


def _request_bytes(url: httpx.URL, headers: Mapping[str, str]) -> bytes:
    lines = [f"GET {url.raw_path.decode('ascii')} HTTP/1.1", f"Host: {url.netloc.decode('ascii')}"]
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0") or ":" in name:
            raise DirectUnsupported(f"header {name!r} cannot be sent as is")
        lines.append(f"{name}: {value}")
    lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return a.scheme == b.scheme and a.host == b.host and _port(a) == _port(b)


def _https_upgrade(a: httpx.URL, b: httpx.URL) -> bool:
    return (
        a.host == b.host
        and a.scheme == "http"
        and _port(a) == 80
        and b.scheme == "https"
        and _port(b) == 443
    )


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def direct_get(
    url: httpx.URL,
    headers: Mapping[str, str],
    *,
    client: httpx.AsyncClient,
    context: ssl.SSLContext,
    io_timeout: float,
    pool: DirectPool,
) -> httpx.Response | DirectResponse:
    """``GET`` ``url`` with ``headers`` (also ``Host`` and ``Connection`` are set here),
    following redirects; ``io_timeout``: seconds a connect, send or receive may wait
    (as httpx's timeout). A 200 or 206 answer comes back as a :class:`DirectResponse`
    streaming its body; any other as an ``httpx.Response`` with its (small) body read.

    Raises :class:`DirectUnsupported` when the request must go through httpx instead
    (nothing of the body was consumed) and :class:`DirectTransportError` when the
    connection failed.
    """
    import httpx

    loop = asyncio.get_running_loop()
    current = dict(headers)
    for _ in range(_MAX_REDIRECTS + 1):
        if url.scheme not in ("http", "https"):
            raise DirectUnsupported(f"scheme {url.scheme!r}")
        if proxied(client, url):
            raise DirectUnsupported("a proxy applies to the URL")
        request = _request_bytes(url, current)
        host = url.host
        try:
            addresses = await loop.getaddrinfo(host, _port(url), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DirectTransportError(f"cannot resolve {host}: {exc}") from exc
        exchange = _Exchange(
            loop=loop,
            addresses=addresses,
            server_hostname=host if url.scheme == "https" else None,
            context=context if url.scheme == "https" else None,
            request=request,
            timeout=io_timeout,
            connect_timeout=min(io_timeout, 30.0),
            pool=pool,
            pool_key=(url.scheme, host, _port(url), id(context)),
        )
        try:
            head = await exchange.head()
        except BaseException:
            await exchange.aclose()
            raise
        response_headers = httpx.Headers(head.headers)
        if head.length is not None:
            return DirectResponse(exchange, head, url, response_headers)
        await exchange.aclose()
        location = response_headers.get("location")
        if head.status in _REDIRECTS and location:
            try:
                target = httpx.URL(location)
                if target.scheme and not target.host:
                    target = target.copy_with(host=url.host)
                if target.is_relative_url:
                    target = url.join(target)
            except httpx.InvalidURL as exc:
                raise DirectUnsupported(f"invalid redirect location {location!r}") from exc
            if not _same_origin(url, target) and not _https_upgrade(url, target):
                current = {k: v for k, v in current.items() if k.lower() != "authorization"}
            url = target.copy_with(fragment=None)
            continue
        if head.body is None and head.status not in (401, 404):
            raise DirectUnsupported("the error answer's body is not delimited")
        return httpx.Response(
            head.status,
            headers=response_headers,
            content=head.body or b"",
            request=httpx.Request("GET", url),
        )
    raise DirectUnsupported("too many redirects")
