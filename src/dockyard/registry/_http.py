"""The HTTP side of the registry client: endpoints, TLS, retries, and authentication.

httpx is imported lazily (it costs ~150 ms); nothing here is loaded by reference parsing.

Per endpoint the session first pings ``/v2/`` (as docker does) to learn the scheme (an
insecure registry is tried over HTTPS, then plain HTTP) and the authentication challenge,
so that later requests carry credentials from the start. A request answered with 401
is retried once with fresh authorization; a second 401 is an :class:`AuthError`.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from dockyard.core import (
    AuthError,
    ConfigError,
    DockyardError,
    NotFoundError,
    RegistryError,
    jsontext,
)
from dockyard.core.singleflight import SingleFlight

from ._challenge import Challenge, merge_scopes, parse_challenges
from ._config import Endpoint, HostConfig, RegistryConfig, is_loopback, normalize_host
from ._retry import RETRY_STATUSES, RegistryStatistics, RetryPolicy, TransientRegistryError
from .types import Credentials, CredentialsProvider

if TYPE_CHECKING:
    import httpx

    from ._direct import DirectPool, DirectResponse

__all__ = [
    "AnonymousDeniedError",
    "Body",
    "HttpSession",
    "error_detail",
    "iter_raw",
    "status_error",
]

#: A request body, made afresh for every attempt (streams cannot be replayed).
Body: TypeAlias = Callable[[], "bytes | AsyncIterator[bytes]"]

_now = time.monotonic  # token expiry clock (tests replace it)

_MIN_TOKEN_LIFETIME = 60.0
_TOKEN_MARGIN = 5.0
_ERROR_BODY_LIMIT = 64 * 1024


class _Answer(Protocol):
    """What the authorization flow reads of an answer (httpx's or the direct path's)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> httpx.Headers: ...

    async def aclose(self) -> None: ...


_R = TypeVar("_R", bound=_Answer)


class AnonymousDeniedError(AuthError):
    """Anonymous access was refused on a registry that offers tokens (the repository may
    not exist: Docker Hub answers so for unknown repositories)."""


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    retries: int = 0
    resumed_downloads: int = 0
    restarted_downloads: int = 0
    restarted_uploads: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    tokens_fetched: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0

    def snapshot(self) -> RegistryStatistics:
        return RegistryStatistics(**{f.name: getattr(self, f.name) for f in fields(self)})


def _ping_order(endpoint: Endpoint) -> tuple[str, ...]:
    """The schemes to ping ``endpoint`` over: its own order, except that a loopback
    registry that may speak either is asked over plain HTTP first — traffic that never
    leaves the machine, and no TLS attempt that a plain registry (the usual local one)
    refuses. The ping carries no credentials, and requests then use the scheme that
    answered, so no credential goes over plain HTTP to a registry that speaks TLS."""
    schemes = endpoint.schemes
    if len(schemes) > 1 and "http" in schemes and is_loopback(endpoint.host):
        return ("http", *(s for s in schemes if s != "http"))
    return schemes


@dataclass(slots=True)
class _HostState:
    scheme: str = ""
    challenges: list[Challenge] = field(default_factory=list)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class _DeferredCAContext(ssl.SSLContext):
    """``ssl.create_default_context()`` that loads the system's CA certificates on its
    first TLS connection instead of when made (~20 ms): a build that only talks to a
    plain-HTTP registry (loopback) never pays for them."""

    _cas_loaded = False

    def _load_cas(self) -> None:
        if not self._cas_loaded:
            self.load_default_certs(ssl.Purpose.SERVER_AUTH)
            self._cas_loaded = True

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_cas()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_cas()
        return super().wrap_socket(*args, **kwargs)


def _is_cert_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for current in _chain(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
    return None


_PERMANENT_TLS = ("ALERT", "CERTIFICATE", "WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL")


def _has_dns_error(exc: BaseException) -> bool:
    """The registry's host name did not resolve: another try seconds later will not help,
    and a mistyped image name must fail at once (as BuildKit does), not after backoff."""
    return any(
        isinstance(current, socket.gaierror) and current.errno != socket.EAI_AGAIN
        for current in _chain(exc)
    )


def _has_refused(exc: BaseException) -> bool:
    """Nothing listens at the registry's address (``ECONNREFUSED``). On first contact
    (the ``/v2/`` ping) that fails at once, as BuildKit does: waiting out every retry
    only delays the error. A registry that answered before and then refuses is
    restarting: that is retried (a push resumes)."""
    return any(isinstance(current, ConnectionRefusedError) for current in _chain(exc))


def _has_ssl_error(exc: BaseException) -> bool:
    """A TLS failure that another try will not fix (a refused or untrusted certificate,
    a plain-HTTP server); end-of-stream errors on a dying connection are not."""
    for current in _chain(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if isinstance(current, ssl.SSLError) and not isinstance(current, ssl.SSLEOFError):
            text = f"{current.reason or ''} {current}".upper()
            if any(marker in text for marker in _PERMANENT_TLS):
                return True
    return False


def _is_tls_error(exc: BaseException) -> bool:
    if any(isinstance(current, ssl.SSLError) for current in _chain(exc)):
        return True
    return "ssl" in str(exc).lower() or "tls" in str(exc).lower()


async def iter_raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The undecoded body bytes (also of a response a mock transport already read)."""
    if response.is_stream_consumed:
        if response.content:
            yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def _retry_after(response: _Answer) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return float(value) if value else None
    except ValueError:
        return None


async def error_detail(response: httpx.Response) -> str:
    """The registry's error codes and messages from a failed response, for messages."""
    try:
        raw = b""
        async for chunk in iter_raw(response):
            raw += chunk
            if len(raw) > _ERROR_BODY_LIMIT:
                break
    except Exception:  # the status line is the message then
        raw = b""
    finally:
        await response.aclose()
    text = ""
    try:
        doc = jsontext.loads(raw)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list):
            parts = []
            for err in errors:
                if isinstance(err, dict):
                    code = str(err.get("code", "")).strip()
                    message = str(err.get("message", "")).strip()
                    parts.append(f"{code}: {message}" if code and message else code or message)
            text = "; ".join(p for p in parts if p)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()[:200]
    status = f"{response.status_code} {response.reason_phrase}".strip()
    return f"{status} ({text})" if text else status


async def status_error(response: httpx.Response, host: str, what: str) -> DockyardError:
    """The error for an unexpected status: 401/403 → AuthError, 404 → NotFoundError,
    5xx/429 → TransientRegistryError, else RegistryError (each with the registry's detail)."""
    detail = await error_detail(response)
    status = response.status_code
    if status in (401, 403):
        return AuthError(f"{what}: access denied by registry {host}: {detail}")
    if status == 404:
        return NotFoundError(f"{what}: not found on registry {host}: {detail}")
    if status >= 500 or status == 429:
        return TransientRegistryError(f"{what}: registry {host} failed: {detail}")
    return RegistryError(f"{what}: registry {host} answered {detail}")


def _import_httpx() -> None:
    """Import httpx without its command-line client: ``httpx/__init__`` imports
    ``httpx._main`` when click, rich and pygments are installed (rich is ours), which
    costs about as much as the rest of httpx. With that module blocked httpx binds its own
    stub ``httpx.main``; nothing here uses it, and the block is lifted right after."""
    if "httpx" in sys.modules:
        return
    blocked = "httpx._main" not in sys.modules
    if blocked:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx  # noqa: F401
    finally:
        if blocked and sys.modules.get("httpx._main") is None:
            sys.modules.pop("httpx._main", None)


class HttpSession:
    """Sends registry API requests for :class:`~dockyard.registry.RegistryClient`."""

    def __init__(
        self,
        *,
        config: RegistryConfig,
        credentials: CredentialsProvider | None,
        retry: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str,
        timeout: float = 60.0,
    ) -> None:
        _import_httpx()
        self.config = config
        self.retry = retry
        self.counters = _Counters()
        self._provider = credentials
        self._transport = transport
        self._user_agent = user_agent
        self._timeout = timeout
        self._clients: dict[tuple[Any, ...], httpx.AsyncClient] = {}
        self._contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
        # endpoints whose blob answers the direct path could not read (see _direct)
        self._no_direct: set[Endpoint] = set()
        self._direct_pool: DirectPool | None = None
        self._hosts: dict[Endpoint, _HostState] = {}
        # endpoints that answered once: a refusal from one of them is a restart, retried
        self._reached: set[Endpoint] = set()
        self._pings: SingleFlight[Endpoint, _HostState] = SingleFlight()
        self._creds: dict[str, Credentials | None] = {}
        self._creds_flights: SingleFlight[str, Credentials | None] = SingleFlight()
        self._tokens: dict[tuple[Any, ...], tuple[str, float]] = {}
        self._token_flights: SingleFlight[tuple[Any, ...], str] = SingleFlight()
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        if self._direct_pool is not None:
            self._direct_pool.close()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    # -- connections ------------------------------------------------------------------

    def client(self, settings: HostConfig, verify: bool) -> httpx.AsyncClient:
        """The httpx client for one set of TLS settings (made on first use)."""
        import httpx

        if self._closed:
            raise RegistryError("the registry client is closed")
        key = _tls_key(settings, verify)
        found = self._clients.get(key)
        if found is not None:
            return found
        if self._transport is not None:
            client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=True,
                timeout=httpx.Timeout(self._timeout),
                headers={"User-Agent": self._user_agent},
            )
        else:
            from ._network import closing_transport
            from ._proxyenv import ProxyConfig

            context = self._ssl_context(settings, verify)
            self._contexts[key] = context
            transport: httpx.AsyncBaseTransport = closing_transport(context)
            proxies = ProxyConfig.from_environment()
            if proxies:  # httpx reads no proxy for a client given its own transport
                from ._proxy import ProxyRouter

                transport = ProxyRouter(transport, proxies, context)
            client = httpx.AsyncClient(
                transport=transport,
                verify=context,
                follow_redirects=True,
                timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 30.0)),
                headers={"User-Agent": self._user_agent},
            )
        self._clients[key] = client
        return client

    @staticmethod
    def _ssl_context(settings: HostConfig, verify: bool) -> ssl.SSLContext:
        if verify:
            ctx: ssl.SSLContext = _DeferredCAContext(ssl.PROTOCOL_TLS_CLIENT)  # host + chain
        else:  # no need to load the system's CA certificates (tens of ms)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for ca in settings.ca_files:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load registry CA certificate {ca}: {exc}") from exc
        if settings.client_cert is not None:
            from dockyard.core.tlsfiles import PassphraseWanted, load_cert_chain

            try:
                load_cert_chain(ctx, str(settings.client_cert), str(settings.client_key or ""))
            except PassphraseWanted:
                key = settings.client_key or settings.client_cert
                raise ConfigError(
                    f"registry client key {key}: protected by a passphrase (a client key "
                    "without one is needed, as for docker)"
                ) from None
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load registry client certificate {settings.client_cert}: {exc}"
                ) from exc
        return ctx

    def _endpoint_client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        return self.client(endpoint.settings, endpoint.verify)

    # -- sending with retries -----------------------------------------------------------

    async def send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | list[str]] | None = None,
        body: Body | None = None,
        stream: bool = False,
        attempts: int | None = None,
        retry_refused: bool = True,
    ) -> httpx.Response:
        """Send with retries on transport errors and retryable statuses (a refused
        connection only with ``retry_refused``).

        Returns the last response (possibly a 5xx when attempts ran out); raises
        ``httpx.TransportError`` when the last attempt failed to connect or read.
        """
        import httpx

        tries = attempts if attempts is not None else self.retry.attempts
        for attempt in range(tries):
            last = attempt == tries - 1
            content = body() if body is not None else None
            request = client.build_request(
                method, url, headers=dict(headers or {}), params=params, content=content
            )
            self.counters.requests += 1
            try:
                try:
                    response = await client.send(request, stream=stream)
                except ssl.SSLError as exc:
                    # A TLS alert after the handshake (TLS 1.3 refuses client certificates
                    # on first read) can escape httpx's exception mapping.
                    raise httpx.ConnectError(str(exc), request=request) from exc
            except httpx.TransportError as exc:
                if last or not self._retryable(exc) or (not retry_refused and _has_refused(exc)):
                    raise
                await self._backoff(attempt)
                continue
            finally:
                if content is not None and not isinstance(content, bytes):
                    aclose = getattr(content, "aclose", None)
                    if aclose is not None:
                        await aclose()
            if response.status_code in RETRY_STATUSES and not last:
                retry_after = _retry_after(response)
                await response.aclose()
                await self._backoff(attempt, retry_after)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _retryable(self, exc: Exception) -> bool:
        import httpx

        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return False
        return not _has_ssl_error(exc) and not _has_dns_error(exc)

    async def _backoff(self, attempt: int, retry_after: float | None = None) -> None:
        self.counters.retries += 1
        delay = self.retry.delay(attempt, retry_after)
        if delay:
            await asyncio.sleep(delay)

    def transport_error(self, endpoint: Endpoint, exc: Exception, action: str) -> RegistryError:
        """A user-facing error for a request that could not be completed."""
        cert = _is_cert_error(exc)
        if cert is not None:
            return RegistryError(
                f"TLS certificate of registry {endpoint.host} is not trusted "
                f"({cert.verify_message or cert}); configure its CA certificate, or mark the "
                "registry insecure"
            )
        reason = str(exc) or type(exc).__name__
        if _has_ssl_error(exc):
            return RegistryError(
                f"{action}: TLS connection to registry {endpoint.host} failed: {reason} (does "
                "it need a client certificate, or is it plain HTTP?)"
            )
        if _has_dns_error(exc):
            return RegistryError(
                f"{action}: registry host {endpoint.host} does not resolve ({reason}); "
                "check the image name"
            )
        if _has_refused(exc):
            reason = "connection refused (is a registry listening there?)"
        return TransientRegistryError(f"{action}: cannot reach registry {endpoint.host}: {reason}")

    # -- ping -------------------------------------------------------------------------

    async def ready(self, endpoint: Endpoint) -> _HostState:
        """The endpoint's scheme and challenges, pinging ``/v2/`` on first use."""
        state = self._hosts.get(endpoint)
        if state is not None and state.scheme:
            return state
        return await self._pings.do(endpoint, lambda: self._ping(endpoint))

    async def _ping(self, endpoint: Endpoint) -> _HostState:
        import httpx

        client = self._endpoint_client(endpoint)
        failures: list[str] = []
        first_error: Exception | None = None
        schemes = _ping_order(endpoint)
        for i, scheme in enumerate(schemes):
            fallback = i + 1 < len(schemes)
            try:
                response = await self.send(
                    client,
                    "GET",
                    endpoint.url(scheme, "/v2/"),
                    attempts=1 if fallback else None,
                    retry_refused=endpoint in self._reached,
                )
            except httpx.TransportError as exc:
                first_error = first_error or exc
                failures.append(f"{scheme}: {exc or type(exc).__name__}")
                if fallback:
                    continue
                if _has_refused(exc) and endpoint not in self._reached:
                    raise RegistryError(
                        f"GET {endpoint.host}/v2/: cannot reach registry {endpoint.host}: "
                        "connection refused (is a registry listening there?)"
                    ) from exc
                if len(failures) > 1 and _is_tls_error(first_error):
                    raise RegistryError(
                        f"cannot reach registry {endpoint.host} ({'; '.join(failures)})"
                    ) from exc
                raise self.transport_error(endpoint, exc, f"GET {endpoint.host}/v2/") from exc
            await response.aclose()
            if scheme == "http" and fallback and response.status_code == 400:
                # a TLS server answering plain HTTP ("Client sent an HTTP request to an
                # HTTPS server"): the next scheme is the registry's
                failures.append(f"http: {response.status_code} {response.reason_phrase}")
                continue
            if response.status_code >= 500:
                raise TransientRegistryError(
                    f"registry {endpoint.host} is unavailable: "
                    f"{response.status_code} {response.reason_phrase}"
                )
            state = _HostState(
                scheme=scheme,
                challenges=parse_challenges(response.headers.get_list("www-authenticate"))
                if response.status_code == 401
                else [],
            )
            self._hosts[endpoint] = state
            self._reached.add(endpoint)
            return state
        raise AssertionError("unreachable")  # pragma: no cover

    def forget(self, endpoint: Endpoint) -> None:
        """Ping again next time (after the registry went away)."""
        self._hosts.pop(endpoint, None)

    # -- requests ---------------------------------------------------------------------

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        target: str | httpx.URL,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | list[str]] | None = None,
        body: Body | None = None,
        stream: bool = False,
        attempts: int | None = None,
    ) -> httpx.Response:
        """Send an authorized request; ``target`` is a ``/v2/...`` path or an absolute URL
        (an upload ``Location``). Raises :class:`AuthError` when access is refused and
        :class:`RegistryError` when the registry cannot be reached."""
        import httpx

        state = await self.ready(endpoint)
        client = self._endpoint_client(endpoint)
        url = endpoint.url(state.scheme, target) if isinstance(target, str) else target
        if isinstance(target, str) and target.startswith(("http://", "https://")):
            url = target
        action = f"{method} {url}"

        async def attempt(sent: Mapping[str, str]) -> httpx.Response:
            return await self.send(
                client,
                method,
                url,
                headers=sent,
                params=params,
                body=body,
                stream=stream,
                attempts=attempts,
            )

        try:
            return await self._authorized(endpoint, state, scopes, headers, attempt)
        except httpx.TransportError as exc:
            self.forget(endpoint)
            raise self.transport_error(endpoint, exc, action) from exc

    async def get_direct(
        self,
        endpoint: Endpoint,
        target: str,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str],
    ) -> httpx.Response | DirectResponse | None:
        """:meth:`request` of a ``GET`` of the ``/v2/...`` path ``target`` over the direct
        path of :mod:`._direct` (a blob body read in a thread of its own), with the same
        retries, authorization and TLS settings. ``None`` when the direct path does not
        apply (a test transport, a proxy for the URL, an endpoint whose answers it could
        not read before): use :meth:`request`. A 200 or 206 answer is a
        :class:`~._direct.DirectResponse`; other answers are ``httpx.Response``."""
        import httpx

        from ._direct import (
            DirectPool,
            DirectTransportError,
            DirectUnsupported,
            direct_get,
            proxied,
        )

        if self._transport is not None or endpoint in self._no_direct:
            return None
        if self._direct_pool is None:
            self._direct_pool = DirectPool()
        pool = self._direct_pool
        state = await self.ready(endpoint)
        client = self._endpoint_client(endpoint)
        context = self._contexts.get(_tls_key(endpoint.settings, endpoint.verify))
        url = httpx.URL(endpoint.url(state.scheme, target))
        if context is None or proxied(client, url):
            return None
        base = {"User-Agent": self._user_agent, "Accept": "*/*", **headers}
        tries = self.retry.attempts

        async def attempt(sent: Mapping[str, str]) -> httpx.Response | DirectResponse:
            for n in range(tries):
                last = n == tries - 1
                self.counters.requests += 1
                try:
                    response = await direct_get(
                        url,
                        sent,
                        client=client,
                        context=context,
                        io_timeout=self._timeout,
                        pool=pool,
                    )
                except DirectTransportError as exc:
                    if last or not self._retryable(exc):
                        raise
                    await self._backoff(n)
                    continue
                if response.status_code in RETRY_STATUSES and not last:
                    retry_after = _retry_after(response)
                    await response.aclose()
                    await self._backoff(n, retry_after)
                    continue
                return response
            raise AssertionError("unreachable")  # pragma: no cover

        try:
            return await self._authorized(endpoint, state, scopes, base, attempt)
        except DirectUnsupported:
            self._no_direct.add(endpoint)
            return None
        except DirectTransportError as exc:
            self.forget(endpoint)
            raise self.transport_error(endpoint, exc, f"GET {url}") from exc

    async def _authorized(
        self,
        endpoint: Endpoint,
        state: _HostState,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None,
        attempt: Callable[[Mapping[str, str]], Awaitable[_R]],
    ) -> _R:
        """``attempt(headers with authorization)``; on a 401 once more with fresh
        authorization (the challenge it carried); a second 401 is an AuthError."""
        host = normalize_host(endpoint.host)
        authorization = await self.authorization(host, state.challenges, scopes)
        response = await attempt(_with_auth(headers, authorization))
        if response.status_code != 401:
            return response
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        await response.aclose()
        if challenges:
            state.challenges = challenges
        wanted = merge_scopes(
            scopes + tuple(s for c in state.challenges if c.scheme == "bearer" for s in c.scopes)
        )
        retry_auth = await self.authorization(host, state.challenges, wanted, refresh=True)
        if retry_auth is None or (retry_auth == authorization and not _is_bearer(retry_auth)):
            raise await self._refused(host, state.challenges, authorization, wanted)
        response = await attempt(_with_auth(headers, retry_auth))
        if response.status_code == 401:
            await response.aclose()
            raise await self._refused(host, state.challenges, retry_auth, wanted)
        return response

    # -- authentication ---------------------------------------------------------------

    async def credentials(self, host: str) -> Credentials | None:
        if host in self._creds:
            return self._creds[host]
        if self._provider is None:
            return None
        provider = self._provider

        async def lookup() -> Credentials | None:
            found = await provider.get(host)
            self._creds[host] = found
            return found

        return await self._creds_flights.do(host, lookup)

    async def authorization(
        self,
        host: str,
        challenges: list[Challenge],
        scopes: tuple[str, ...],
        *,
        refresh: bool = False,
    ) -> str | None:
        """The ``Authorization`` header value for a request to ``host`` (or ``None``)."""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is None and basic is None:
            return None
        creds = await self.credentials(host)
        if bearer is not None:
            if creds is not None and creds.registry_token:
                return "Bearer " + _header_token(creds.registry_token, host, "the registry token")
            token = await self._token(host, bearer, merge_scopes(scopes), creds, refresh)
            return "Bearer " + _header_token(token, host, "the token server's token")
        if creds is not None and (creds.username or creds.password):
            pair = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None

    async def _token(
        self,
        host: str,
        challenge: Challenge,
        scopes: tuple[str, ...],
        creds: Credentials | None,
        refresh: bool,
    ) -> str:
        account = creds.username if creds is not None else ""
        key = (challenge.realm, challenge.service, scopes, account, bool(creds))
        cached = self._tokens.get(key)
        if cached is not None and not refresh and cached[1] > _now():
            return cached[0]

        async def fetch() -> str:
            token, lifetime = await self._fetch_token(host, challenge, scopes, creds)
            self._tokens[key] = (token, _now() + lifetime - _TOKEN_MARGIN)
            return token

        return await self._token_flights.do(key, fetch)

    async def _fetch_token(
        self,
        host: str,
        challenge: Challenge,
        scopes: tuple[str, ...],
        creds: Credentials | None,
    ) -> tuple[str, float]:
        import httpx

        realm = challenge.realm
        try:
            realm_url = httpx.URL(realm)
        except Exception as exc:
            raise AuthError(f"registry {host} named an invalid token realm {realm!r}") from exc
        if realm_url.scheme not in ("http", "https"):
            raise AuthError(f"registry {host} named an invalid token realm {realm!r}")
        settings = self.config.host(realm_url.netloc.decode("ascii"))
        secret = creds is not None and bool(
            creds.identity_token or creds.username or creds.password
        )
        if (
            secret
            and realm_url.scheme == "http"
            and not self._cleartext_realm_allowed(host, realm_url)
        ):
            # the registry chose where the credentials go: over plain HTTP anyone on the
            # way (or a registry naming another host) would read them
            raise AuthError(
                f"registry {host} named the token realm {realm} over plain HTTP: its "
                f"credentials are not sent unencrypted (configure {realm_url.host} as an "
                "http or insecure registry host to allow it)"
            )
        client = self.client(settings, verify=not settings.insecure)
        self.counters.tokens_fetched += 1
        response: httpx.Response | None = None
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": challenge.service,
                    "scope": " ".join(scopes),
                    "client_id": "dockyard",
                    "access_type": "offline",
                }
                encoded = urllib.parse.urlencode(form).encode()
                response = await self.send(
                    client,
                    "POST",
                    realm_url,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    body=lambda: encoded,
                )
                if response.status_code in (404, 405):
                    await response.aclose()
                    response = None
            if response is None:
                params: dict[str, str | list[str]] = {}
                if challenge.service:
                    params["service"] = challenge.service
                if scopes:
                    params["scope"] = list(scopes)
                headers: dict[str, str] = {}
                if creds is not None and (creds.username or creds.password):
                    params["account"] = creds.username
                    pair = f"{creds.username}:{creds.password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
                response = await self.send(client, "GET", realm_url, headers=headers, params=params)
        except httpx.TransportError as exc:
            raise AuthError(
                f"cannot get a token for registry {host} from {realm}: {exc or type(exc).__name__}"
            ) from exc
        if response.status_code in (401, 403):
            detail = await error_detail(response)
            if creds is not None:
                self._creds.pop(host, None)
                raise AuthError(
                    f"authentication to registry {host} failed: the token server refused the "
                    f"credentials{_for_user(creds)} ({detail})"
                )
            raise AuthError(
                f"registry {host} requires authentication and no credentials were found "
                f"(docker login {host})"
            )
        if response.status_code != 200:
            detail = await error_detail(response)
            raise AuthError(f"cannot get a token for registry {host} from {realm}: {detail}")
        try:
            await response.aread()
            doc = jsontext.loads(response.content)
        except ValueError as exc:
            raise AuthError(f"token server {realm} of registry {host} sent invalid JSON") from exc
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token server {realm} of registry {host} sent no token")
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) else _MIN_TOKEN_LIFETIME
        return token, max(lifetime, _MIN_TOKEN_LIFETIME)

    def _cleartext_realm_allowed(self, host: str, realm_url: httpx.URL) -> bool:
        """Whether credentials of ``host`` may go to the plain-HTTP token realm
        ``realm_url``: its host is configured (or, on loopback, defaults to) http or
        insecure, or it is on the same machine as ``host``, itself reached that way."""
        realm = self.config.host(realm_url.netloc.decode("ascii"))
        if realm.http or realm.insecure:
            return True
        registry = self.config.host(host)
        registry_name = urllib.parse.urlsplit(f"//{host}").hostname or ""
        same_machine = realm_url.host.lower() == registry_name.lower()
        return same_machine and (registry.http or registry.insecure)

    async def _refused(
        self,
        host: str,
        challenges: list[Challenge],
        sent: str | None,
        scopes: tuple[str, ...],
    ) -> AuthError:
        creds = self._creds.get(host)
        self._creds.pop(host, None)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if creds is None or not (creds.username or creds.password or creds.identity_token):
            if bearer is not None and sent is not None:
                what = ", ".join(scopes) or "the request"
                return AnonymousDeniedError(
                    f"access to {what} on registry {host} was denied: the repository does not "
                    "exist or requires authentication"
                )
            return AuthError(
                f"registry {host} requires authentication and no credentials were found "
                f"(docker login {host})"
            )
        if bearer is not None and bearer.error == "insufficient_scope":
            return AuthError(
                f"registry {host} denied{_for_user(creds)} access to {', '.join(scopes)}"
            )
        return AuthError(
            f"authentication to registry {host} failed: the credentials{_for_user(creds)} "
            "were refused"
        )


def _for_user(creds: Credentials) -> str:
    return f" of user {creds.username!r}" if creds.username else ""


def _is_bearer(value: str) -> bool:
    return value.startswith("Bearer ")


def _with_auth(headers: Mapping[str, str] | None, authorization: str | None) -> dict[str, str]:
    out = dict(headers or {})
    if authorization:
        out["Authorization"] = authorization
    return out


def _tls_key(settings: HostConfig, verify: bool) -> tuple[Any, ...]:
    """What tells the TLS settings of two hosts apart (one httpx client and SSL context
    each)."""
    return (verify, settings.ca_files, settings.client_cert, settings.client_key)


def _header_token(token: str, host: str, what: str) -> str:
    """``token`` as it may go into an ``Authorization`` header: visible ASCII only (a
    client's credentials answer, a docker config or a token server may hold anything;
    httpx cannot encode other characters, and a line break would end the header)."""
    if not all(" " <= c <= "~" for c in token):
        raise AuthError(
            f"authentication to registry {host} failed: {what} holds a character that "
            "cannot be sent in an HTTP header (a control or non-ASCII character)"
        )
    return token
