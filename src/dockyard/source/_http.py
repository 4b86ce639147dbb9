"""``http://`` and ``https://`` sources: one file downloaded from a URL (``ADD URL``,
``llb.http``).

The result is a tree holding the one file: named ``http.filename``, else by the
response's ``Content-Disposition``, else by the URL's last path segment; mode
``http.perm`` (0600 by default, as BuildKit), owner ``http.uid``:``http.gid``, and the
modification time of ``Last-Modified`` (else the epoch).

Cache keys follow BuildKit's http source
    With a ``sha256:`` pin (``http.checksum``, ``ADD --checksum``) the key is made from
    the pin, the file name and the mode and owner: no network at all. Without one the
    content decides: :meth:`HttpInstance.cache_key` downloads the file (into a cache
    record that the snapshot then uses) and the key is made from its digest and
    ``Last-Modified``. Each record remembers its URL (a hash of it and the options that
    shape the file), ``ETag``, ``Last-Modified`` and digest as labels, so the next
    lookup sends ``If-None-Match``/``If-Modified-Since`` and a ``304 Not Modified``
    answers the key from the stored digest without downloading anything.

Downloads follow redirects (``Authorization`` is dropped when one leaves the origin),
respect :class:`HttpLimits` (size, connect/read/total time), and are retried when the
connection breaks, the body is truncated or the server answers 429/5xx, then fail
with a clear error. A file that does not match its pin is refused and nothing is kept.
Credentials come from session secrets as in BuildKit (``http.authheadersecret``, else
``HTTP_AUTH_HEADER_<host>`` / ``HTTP_AUTH_TOKEN_<host>``) and never reach a key, a
label or a message; URLs are shown with their credentials masked.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import posixpath
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

from dockyard.cache import CacheManager, ImmutableRef, RecordType
from dockyard.core import ContentError, Digest, DockyardError, InvalidDefinitionError, NotFoundError
from dockyard.llb import ATTR
from dockyard.session.types import SecretStore
from dockyard.solver import JobValue, VertexContext

from ._git_url import redact_url
from .types import SourceOpRequest

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HTTP_CHECKSUM_LABEL",
    "HTTP_ETAG_LABEL",
    "HTTP_FILENAME_LABEL",
    "HTTP_MODIFIED_LABEL",
    "HTTP_URL_LABEL",
    "DownloadedFile",
    "HttpInstance",
    "HttpLimits",
    "HttpSource",
    "HttpSpec",
    "HttpStatistics",
    "safe_filename",
]

HTTP_URL_LABEL = "dockyard.http.url"
HTTP_ETAG_LABEL = "dockyard.http.etag"
HTTP_MODIFIED_LABEL = "dockyard.http.lastmodified"
HTTP_CHECKSUM_LABEL = "dockyard.http.checksum"
HTTP_FILENAME_LABEL = "dockyard.http.filename"

_DEFAULT_PERM = 0o600
_FLUSH = 1 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_PROGRESS_INTERVAL = 0.1
_DISPOSITION_NAME = re.compile(
    r"""filename\*?\s*=\s*(?:UTF-8''|utf-8'')?(?:"(?P<q>[^"]*)"|(?P<t>[^;\s]+))""", re.I
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """Bounds of one download. ``max_size``: bytes of the file (``None``: no limit);
    ``connect_timeout``/``read_timeout``: seconds to connect and between received
    bytes; ``total_timeout``: seconds for the whole download (``None``: no limit);
    ``attempts``: tries for a broken connection, a truncated body or a 429/5xx answer;
    ``retry_delay``: seconds before the first retry (doubling); ``max_redirects``."""

    max_size: int | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    total_timeout: float | None = None
    attempts: int = 3
    retry_delay: float = 0.25
    max_redirects: int = 10


def safe_filename(name: str) -> str:
    """The last component of ``name`` (no directories, no ``..``); ``download`` when
    nothing usable is left (BuildKit's ``SafeFileName``)."""
    base = posixpath.basename(posixpath.normpath("/" + name.replace("\\", "/")))
    return base if base not in ("", "/", ".", "..") else "download"


def _parse_int(value: str, what: str) -> int:
    text = value.strip()
    try:
        if len(text) > 1 and text.startswith("0") and text[1].isdigit():
            return int(text, 8)  # Go's base 0: a leading 0 means octal
        return int(text, 0)
    except ValueError:
        raise InvalidDefinitionError(f"invalid {what} {value!r}: expected a number") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSpec:
    """One http source: ``url``, an optional ``checksum`` pin, the ``filename`` asked
    for (empty: from the response or the URL), ``perm``, ``uid``, ``gid`` and the name
    of a session secret holding the ``Authorization`` header."""

    url: str
    checksum: Digest | None = None
    filename: str = ""
    perm: int = _DEFAULT_PERM
    uid: int = 0
    gid: int = 0
    auth_header_secret: str = ""

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @classmethod
    def create(
        cls,
        url: str,
        *,
        checksum: str | None = None,
        filename: str = "",
        perm: int | None = None,
        uid: int = 0,
        gid: int = 0,
        auth_header_secret: str = "",
    ) -> HttpSpec:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidDefinitionError(f"not an http(s) URL: {redact_url(url)!r}")
        pin: Digest | None = None
        if checksum:
            try:
                pin = Digest.parse(checksum)
            except ValueError as exc:
                raise InvalidDefinitionError(
                    f"invalid checksum for {redact_url(url)}: {exc}"
                ) from None
        mode = perm if perm else _DEFAULT_PERM
        if not 0 <= mode <= 0o7777:
            raise InvalidDefinitionError(f"invalid file mode {mode:o} for {redact_url(url)}")
        if uid < 0 or gid < 0:
            raise InvalidDefinitionError(f"invalid owner {uid}:{gid} for {redact_url(url)}")
        return cls(
            url=parts._replace(fragment="").geturl(),
            checksum=pin,
            filename=filename,
            perm=mode,
            uid=uid,
            gid=gid,
            auth_header_secret=auth_header_secret,
        )

    @classmethod
    def from_request(cls, request: SourceOpRequest) -> HttpSpec:
        attrs = request.attrs
        perm = attrs.get(ATTR.HTTP_PERM)
        uid = attrs.get(ATTR.HTTP_UID)
        gid = attrs.get(ATTR.HTTP_GID)
        return cls.create(
            request.identifier,
            checksum=attrs.get(ATTR.HTTP_CHECKSUM) or None,
            filename=attrs.get(ATTR.HTTP_FILENAME, ""),
            perm=_parse_int(perm, ATTR.HTTP_PERM) if perm else None,
            uid=_parse_int(uid, ATTR.HTTP_UID) if uid else 0,
            gid=_parse_int(gid, ATTR.HTTP_GID) if gid else 0,
            auth_header_secret=attrs.get(ATTR.HTTP_AUTH_HEADER_SECRET, ""),
        )

    def url_key(self) -> str:
        """What identifies "this URL, shaped this way" in the labels (a hash: the URL may
        hold credentials)."""
        data = json.dumps(
            [self.url, self.filename, self.perm, self.uid, self.gid, self.auth_header_secret]
        )
        return hashlib.sha256(data.encode()).hexdigest()

    def name_for(self, disposition: str | None) -> str:
        if self.filename:
            return safe_filename(self.filename)
        if disposition:
            match = _DISPOSITION_NAME.search(disposition)
            if match is not None:
                name = unquote(match["q"] if match["q"] is not None else match["t"])
                if name and not name.endswith("/"):
                    return safe_filename(name)
        path = urlsplit(self.url).path
        base = posixpath.basename(unquote(path))
        return safe_filename(base) if base else "download"


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadedFile:
    """What a URL resolved to: the file's ``digest``, ``filename`` and
    ``Last-Modified`` (HTTP date, normalized; ``None`` if absent), and the cache
    ``record`` holding it (``None`` until downloaded)."""

    digest: Digest
    filename: str
    last_modified: str | None = None
    record: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpStatistics:
    """Counters since the source was made: ``requests`` sent, ``downloads`` completed
    bodies, ``not_modified`` 304 answers, ``retries``, ``bytes`` received."""

    requests: int
    downloads: int
    not_modified: int
    retries: int
    bytes: int


@dataclass(slots=True)
class _Known:
    record: str
    digest: Digest
    filename: str
    etag: str | None
    last_modified: str | None


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    downloads: int = 0
    not_modified: int = 0
    retries: int = 0
    bytes: int = 0


class _Retry(Exception):
    """A failed attempt worth repeating."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Progress = Callable[[int, int, bool], None]


class HttpSource:
    """The ``http``/``https`` resolver (register it under both schemes).

    ``cache`` holds the downloaded files. ``secrets_key`` is the engine's job value of
    the session's secret store (``dockyard.llbsolver.SECRETS``). ``limits`` bound each
    download; ``user_agent`` is sent with every request. Each download uses a client
    of its own (downloads are few; nothing is left open between builds, so there is
    nothing to close), sharing one TLS context.
    """

    def __init__(
        self,
        *,
        cache: CacheManager,
        secrets_key: JobValue[SecretStore] | None = None,
        limits: HttpLimits | None = None,
        user_agent: str = "dockyard",
    ) -> None:
        self.cache = cache
        self.limits = limits if limits is not None else HttpLimits()
        self._secrets_key = secrets_key
        self._user_agent = user_agent
        self._tls: ssl.SSLContext | None = None
        self._counters = _Counters()
        self._locks: dict[str, asyncio.Lock] = {}

    def statistics(self) -> HttpStatistics:
        c = self._counters
        return HttpStatistics(
            requests=c.requests,
            downloads=c.downloads,
            not_modified=c.not_modified,
            retries=c.retries,
            bytes=c.bytes,
        )

    def secrets(self, ctx: VertexContext) -> tuple[SecretStore, ...]:
        return tuple(ctx.values(self._secrets_key)) if self._secrets_key is not None else ()

    # -- the SourceResolver ----------------------------------------------------------------
    async def resolve(self, request: SourceOpRequest, ctx: VertexContext) -> HttpInstance:
        return HttpInstance(self, HttpSpec.from_request(request))

    # -- keys ------------------------------------------------------------------------------
    @staticmethod
    def cache_key(spec: HttpSpec, file: DownloadedFile) -> str:
        """BuildKit's key: the file name, mode, owner, digest and ``Last-Modified``."""
        data: dict[str, object] = {
            "Filename": file.filename,
            "Perm": spec.perm,
            "UID": spec.uid,
            "GID": spec.gid,
            "Checksum": str(file.digest),
        }
        if file.last_modified:
            data["LastModTime"] = file.last_modified
        if spec.auth_header_secret:
            data["AuthHeaderSecret"] = spec.auth_header_secret
        text = json.dumps(data, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    # -- resolving and fetching --------------------------------------------------------------
    async def resolve_file(
        self,
        spec: HttpSpec,
        *,
        secrets: Sequence[SecretStore] = (),
        progress: Progress | None = None,
    ) -> DownloadedFile:
        """What ``spec``'s URL holds now: from the pin (no network), from a ``304`` for
        a file downloaded before, or by downloading it into a new record."""
        if spec.checksum is not None:
            return DownloadedFile(digest=spec.checksum, filename=spec.name_for(None))
        async with self._lock(spec):
            known = await self._known(spec)
            return await self._download(spec, known, secrets=secrets, progress=progress)

    async def snapshot(
        self,
        spec: HttpSpec,
        file: DownloadedFile,
        *,
        secrets: Sequence[SecretStore] = (),
        progress: Progress | None = None,
    ) -> ImmutableRef:
        """The tree holding ``file`` as a new handle the caller owns: its record if it
        still exists, a record of the same pinned content, or a new download (which
        must have the digest ``file`` promised)."""
        if file.record is not None:
            try:
                return await self.cache.get(file.record)
            except NotFoundError:
                pass  # pruned since it was resolved
        async with self._lock(spec):
            for known in await self._known(spec):
                if known.digest == file.digest and known.filename == file.filename:
                    try:
                        return await self.cache.get(known.record)
                    except NotFoundError:
                        continue
            fetched = await self._download(spec, [], secrets=secrets, progress=progress)
        ref = await self.cache.get(fetched.record or "")
        if fetched.digest != file.digest:
            await ref.release()
            raise ContentError(
                f"{spec.redacted} changed during the build: {fetched.digest}"
                f" (expected: {file.digest})"
            )
        return ref

    async def fetch(
        self,
        spec: HttpSpec,
        *,
        secrets: Sequence[SecretStore] = (),
        progress: Progress | None = None,
    ) -> tuple[DownloadedFile, ImmutableRef]:
        """Resolve and fetch in one call (remote build contexts)."""
        file = await self.resolve_file(spec, secrets=secrets, progress=progress)
        return file, await self.snapshot(spec, file, secrets=secrets, progress=progress)

    # -- internals ---------------------------------------------------------------------------
    def _lock(self, spec: HttpSpec) -> asyncio.Lock:
        # one download per URL at a time, so concurrent ops share the first one's record
        return self._locks.setdefault(spec.url_key(), asyncio.Lock())

    async def _known(self, spec: HttpSpec) -> list[_Known]:
        out: list[_Known] = []
        for record in self.cache.records_with_label(HTTP_URL_LABEL, spec.url_key()):
            try:
                ref = await self.cache.get(record)
            except NotFoundError:
                continue
            labels = ref.labels
            await ref.release()
            digest = labels.get(HTTP_CHECKSUM_LABEL)
            if not digest:
                continue
            out.append(
                _Known(
                    record=record,
                    digest=Digest.parse(digest),
                    filename=labels.get(HTTP_FILENAME_LABEL, ""),
                    etag=labels.get(HTTP_ETAG_LABEL) or None,
                    last_modified=labels.get(HTTP_MODIFIED_LABEL) or None,
                )
            )
        return out

    def _http(self) -> httpx.AsyncClient:
        import httpx

        from dockyard.registry import ProxyConfig

        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's trust store
        limits = self.limits
        # the environment's proxies by the registry client's rule (Go's, as BuildKit's
        # http source: loopback never proxied, NO_PROXY with CIDRs), not httpx's own
        transport: httpx.AsyncBaseTransport | None = None
        proxies = ProxyConfig.from_environment()
        if proxies:
            from dockyard.registry import ProxyRouter

            transport = ProxyRouter(httpx.AsyncHTTPTransport(verify=self._tls), proxies, self._tls)
        return httpx.AsyncClient(
            transport=transport,
            trust_env=False,
            follow_redirects=True,
            max_redirects=limits.max_redirects,
            timeout=httpx.Timeout(
                connect=limits.connect_timeout,
                read=limits.read_timeout,
                write=limits.read_timeout,
                pool=limits.connect_timeout,
            ),
            verify=self._tls,
            headers={"User-Agent": self._user_agent},
        )

    async def _auth(self, spec: HttpSpec, secrets: Sequence[SecretStore]) -> str | None:
        names: list[tuple[str, bool]]
        if spec.auth_header_secret:
            names = [(spec.auth_header_secret, False)]
        else:
            names = [
                (f"HTTP_AUTH_HEADER_{spec.host}", False),
                (f"HTTP_AUTH_TOKEN_{spec.host}", True),
            ]
        failure: DockyardError | None = None
        for name, is_token in names:
            for store in secrets:
                try:
                    value = (await store.get(name)).decode("utf-8", "replace").strip()
                except NotFoundError:
                    continue
                except DockyardError as exc:  # a client failing to answer: the next is asked
                    failure = failure or exc
                    continue
                if value:
                    return "Bearer " + value if is_token else value
        if failure is not None:
            raise failure
        if spec.auth_header_secret:
            raise NotFoundError(
                f"secret {spec.auth_header_secret!r} for the Authorization header of"
                f" {spec.redacted} was not provided"
            )
        return None

    async def _download(
        self,
        spec: HttpSpec,
        known: list[_Known],
        *,
        secrets: Sequence[SecretStore],
        progress: Progress | None,
    ) -> DownloadedFile:
        """GET the URL (conditionally when ``known`` has validators), retrying broken
        attempts; a 304 answers from ``known``, a body becomes a new record."""
        headers: dict[str, str] = {}
        auth = await self._auth(spec, secrets)
        if auth is not None:
            headers["Authorization"] = auth
        etags = {k.etag: k for k in known if k.etag}
        dated = next((k for k in known if k.last_modified), None)
        if etags:
            headers["If-None-Match"] = ", ".join(etags)
        if dated is not None and dated.last_modified:
            headers["If-Modified-Since"] = dated.last_modified
        limits = self.limits
        failures: list[str] = []
        for attempt in range(max(limits.attempts, 1)):
            if attempt:
                self._counters.retries += 1
                await asyncio.sleep(limits.retry_delay * (2 ** (attempt - 1)))
            try:
                async with asyncio.timeout(limits.total_timeout):
                    return await self._attempt(spec, headers, etags, dated, progress)
            except _Retry as exc:
                failures.append(exc.reason)
            except TimeoutError:
                raise DockyardError(
                    f"downloading {spec.redacted} took longer than {limits.total_timeout:g}s"
                ) from None
        raise DockyardError(
            f"downloading {spec.redacted} failed after {len(failures)} attempts: {failures[-1]}"
        )

    async def _attempt(
        self,
        spec: HttpSpec,
        headers: Mapping[str, str],
        etags: Mapping[str, _Known],
        dated: _Known | None,
        progress: Progress | None,
    ) -> DownloadedFile:
        import httpx

        self._counters.requests += 1
        try:
            async with (
                self._http() as client,
                client.stream("GET", spec.url, headers=dict(headers)) as response,
            ):
                if response.status_code == 304:
                    return self._not_modified(spec, response, etags, dated)
                _check_status(spec, response)
                return await self._save(spec, response, progress)
        except httpx.TooManyRedirects as exc:
            raise DockyardError(
                f"downloading {spec.redacted}: more than {self.limits.max_redirects} redirects"
            ) from exc
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(_transport_reason(exc)) from exc

    def _not_modified(
        self,
        spec: HttpSpec,
        response: httpx.Response,
        etags: Mapping[str, _Known],
        dated: _Known | None,
    ) -> DownloadedFile:
        tag = _etag_value(response.headers.get("ETag", ""))
        match: _Known | None = None
        if tag:
            match = next((k for t, k in etags.items() if _etag_value(t) == tag), None)
        elif len(etags) == 1:
            match = next(iter(etags.values()))
        elif not etags:
            match = dated
        if match is None:
            raise DockyardError(
                f"{spec.redacted} answered 304 Not Modified for an unknown ETag {tag!r}"
            )
        self._counters.not_modified += 1
        return DownloadedFile(
            digest=match.digest,
            filename=match.filename,
            last_modified=match.last_modified,
            record=match.record,
        )

    async def _save(
        self, spec: HttpSpec, response: httpx.Response, progress: Progress | None
    ) -> DownloadedFile:
        import httpx

        limits = self.limits
        declared = _content_length(response)
        if limits.max_size is not None and declared is not None and declared > limits.max_size:
            raise DockyardError(
                f"{spec.redacted} is {declared} bytes, more than the limit of"
                f" {limits.max_size} bytes"
            )
        name = spec.name_for(response.headers.get("Content-Disposition"))
        modified = _http_date(response.headers.get("Last-Modified"))
        algorithm = spec.checksum.algorithm if spec.checksum is not None else "sha256"
        hasher = hashlib.new(algorithm)
        mutable = await self.cache.new_mutable(
            None, record_type=RecordType.REGULAR, description=f"http url {spec.redacted}"
        )
        try:
            async with mutable.mount() as root:
                path = Path(root, name)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                except (OSError, ValueError) as exc:  # a NUL, a name too long
                    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                    raise DockyardError(
                        f"downloading {spec.redacted}: cannot create a file named {name!r}: "
                        f"{reason}"
                    ) from exc
                with os.fdopen(fd, "wb") as out:
                    received = await _copy_body(
                        response, out, hasher, limits.max_size, spec, progress, declared
                    )
                if declared is not None and received != declared:
                    raise _Retry(f"the body was truncated ({received} of {declared} bytes arrived)")
                await asyncio.to_thread(_finish_file, path, spec, modified)
            digest = Digest.from_hex(hasher.hexdigest(), algorithm)
            if spec.checksum is not None and digest != spec.checksum:
                raise ContentError(
                    f"digest mismatch for {spec.redacted}: {digest} (expected: {spec.checksum})"
                )
            ref = await mutable.commit()
        except httpx.TransportError as exc:
            await mutable.release()
            raise _Retry(_transport_reason(exc)) from exc
        except BaseException:
            await mutable.release()
            raise
        try:
            ref.set_label(HTTP_URL_LABEL, spec.url_key())
            ref.set_label(HTTP_CHECKSUM_LABEL, str(digest))
            ref.set_label(HTTP_FILENAME_LABEL, name)
            etag = _etag_value(response.headers.get("ETag", ""))
            if etag:
                ref.set_label(HTTP_ETAG_LABEL, response.headers["ETag"])
            if modified:
                ref.set_label(HTTP_MODIFIED_LABEL, modified)
        finally:
            await ref.release()
        self._counters.downloads += 1
        self._counters.bytes += received
        return DownloadedFile(digest=digest, filename=name, last_modified=modified, record=ref.id)


class HttpInstance:
    """One http(s) op (a ``dockyard.llbsolver.SourceInstance``)."""

    def __init__(self, source: HttpSource, spec: HttpSpec) -> None:
        self.source = source
        self.spec = spec
        self.file: DownloadedFile | None = None
        self._lock = asyncio.Lock()

    async def _file(self, ctx: VertexContext) -> DownloadedFile:
        async with self._lock:
            if self.file is None:
                self.file = await self.source.resolve_file(
                    self.spec, secrets=self.source.secrets(ctx), progress=_progress(ctx, self.spec)
                )
            return self.file

    async def cache_key(self, ctx: VertexContext) -> str:
        return self.source.cache_key(self.spec, await self._file(ctx))

    async def snapshot(self, ctx: VertexContext) -> ImmutableRef:
        file = await self._file(ctx)
        return await self.source.snapshot(
            self.spec, file, secrets=self.source.secrets(ctx), progress=_progress(ctx, self.spec)
        )


# -- helpers -----------------------------------------------------------------------------


def _progress(ctx: VertexContext, spec: HttpSpec) -> Progress:
    started = time.time()
    last = [0.0]
    name = f"downloading {spec.redacted}"
    id = "http " + spec.url_key()[:16]

    def report(current: int, total: int, done: bool) -> None:
        now = time.time()
        if not done and now - last[0] < _PROGRESS_INTERVAL:
            return
        last[0] = now
        ctx.progress(
            id, name, current, total=total, started=started, completed=now if done else None
        )

    return report


def _check_status(spec: HttpSpec, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status in _RETRY_STATUS:
        raise _Retry(reason)
    if status in (404, 410):
        raise NotFoundError(f"{spec.redacted} not found ({reason})")
    raise DockyardError(f"downloading {spec.redacted} failed: {reason}")


def _transport_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "incomplete" in text.lower() or "without sending complete message body" in text:
        return f"the connection closed before the whole body arrived ({redact_url(text)})"
    return redact_url(text)


def _content_length(response: httpx.Response) -> int | None:
    if response.headers.get("Content-Encoding", "identity") not in ("", "identity"):
        return None  # the length of the encoded body
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _etag_value(value: str) -> str:
    return value.strip().removeprefix("W/")


def _http_date(value: str | None) -> str | None:
    """An HTTP date normalized to ``Mon, 02 Jan 2006 15:04:05 GMT``; ``None`` if absent
    or unparsable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _mtime(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC).timestamp()


async def _copy_body(
    response: httpx.Response,
    out: BinaryIO,
    hasher: hashlib._Hash,
    max_size: int | None,
    spec: HttpSpec,
    progress: Progress | None,
    total: int | None,
) -> int:
    received = 0
    buffer = bytearray()

    def flush(data: bytes) -> None:
        out.write(data)
        hasher.update(data)

    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if max_size is not None and received > max_size:
            raise DockyardError(f"{spec.redacted} is larger than the limit of {max_size} bytes")
        buffer += chunk
        if len(buffer) >= _FLUSH:
            data, buffer = bytes(buffer), bytearray()
            await asyncio.to_thread(flush, data)
        if progress is not None:
            progress(received, total or 0, False)
    if buffer:
        await asyncio.to_thread(flush, bytes(buffer))
    if progress is not None:
        progress(received, total or received, True)
    return received


def _finish_file(path: Path, spec: HttpSpec, modified: str | None) -> None:
    os.chmod(path, spec.perm)
    if spec.uid or spec.gid:
        os.lchown(path, spec.uid, spec.gid)
        os.chmod(path, spec.perm)  # chown clears set-id bits
    stamp = _mtime(modified)
    os.utime(path, (stamp, stamp), follow_symlinks=False)
