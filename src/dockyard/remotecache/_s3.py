"""A small S3 client over httpx: what BuildKit's s3 cache asks of the AWS SDK.

``HeadObject``, ``GetObject`` (streamed), ``PutObject`` (a single PUT up to
:data:`MULTIPART_THRESHOLD`, a multipart upload — ``CreateMultipartUpload``,
``UploadPart``, ``CompleteMultipartUpload``, ``AbortMultipartUpload`` on failure — beyond
it, parts of :data:`PART_SIZE` as the SDK's transfer manager makes them) and
``CopyObject`` of an object onto itself with new metadata (BuildKit's *touch*; over
5 GiB by ``UploadPartCopy`` ranges). Every request is signed with SigV4
(:mod:`._sigv4`) and carries its payload hash. Addresses: virtual-host style
(``https://BUCKET.s3.REGION.amazonaws.com/KEY``) by default, path style
(``ENDPOINT/BUCKET/KEY``) with ``use_path_style`` and an ``endpoint_url``, as the SDK
does.

Retries as the SDK's *standard* mode: up to ``max_attempts`` tries (3) of a request
that failed with a connection error, a 5xx, a 429 or a throttling code, waiting a random
time up to 1, 2, 4… seconds (at most 20) between them.

Credentials: fixed ones, or a :class:`~._awscreds.CachedCredentials` asked before each
request (temporary credentials are replaced before they expire: a long build never signs
with expired ones). Errors name the bucket, key and S3's error code and message; never a
secret, a signature or a request header.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import AuthError, ConfigError, DockyardError, NotFoundError
from dockyard.core.headers import header_int

from ._httpio import (
    Retry,
    download_verified,
    file_sha256,
    last_modified,
    pread,
    printable,
    read_file,
    read_limited,
    read_small,
    send_retrying,
    xml_text,
)
from ._options import _endpoint_has_userinfo
from ._sigv4 import EMPTY_SHA256, AwsCredentials, canonical_query, sign, uri_encode

if TYPE_CHECKING:
    import httpx

    from dockyard.registry import BlobSink

    from ._awscreds import CachedCredentials

__all__ = [
    "COPY_LIMIT",
    "MULTIPART_THRESHOLD",
    "PART_SIZE",
    "ObjectInfo",
    "S3Client",
]

#: a blob up to this size is one PUT; a larger one a multipart upload (the SDK's
#: transfer manager's threshold)
MULTIPART_THRESHOLD = 16 << 20
#: the parts of a multipart upload (the transfer manager's default)
PART_SIZE = 8 << 20
#: the largest object a CopyObject copies (S3's limit); beyond it, UploadPartCopy ranges
COPY_LIMIT = 5 << 30
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRY_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError"}
)
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """What a HEAD says of an object: its size and when it was last written (epoch
    seconds; 0 if the server did not say)."""

    size: int
    last_modified: float


def _error_code(body: bytes) -> tuple[str, str]:
    """S3's ``<Error><Code>`` and ``<Message>`` (empty when the body is not one)."""
    if not body.lstrip().startswith(b"<"):
        return "", ""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    if root.tag.removeprefix(_NS) != "Error":
        return "", ""
    code = root.findtext("Code") or root.findtext(f"{_NS}Code") or ""
    message = root.findtext("Message") or root.findtext(f"{_NS}Message") or ""
    return printable(code.strip(), 100), printable(message.strip(), 500)


def _find(root: ET.Element, name: str) -> str:
    return (root.findtext(name) or root.findtext(f"{_NS}{name}") or "").strip()


Body = Callable[[], AsyncIterator[bytes]] | bytes


class S3Client:
    """One bucket of one S3 service (see the module docstring). Close it with
    :meth:`aclose` (or use it as an async context manager)."""

    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        credentials: AwsCredentials | CachedCredentials,
        endpoint_url: str = "",
        use_path_style: bool = False,
        max_attempts: int = 3,
        accept_encoding: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 1.0,
        timeout: float = 300.0,
        touch_refresh: float | None = None,
    ) -> None:
        import httpx

        if not bucket:
            raise ConfigError("s3: no bucket")
        self.bucket = bucket
        self.region = region
        self._credentials = credentials
        self._path_style = use_path_style
        self._max_attempts = max(1, max_attempts)
        self._accept_encoding = accept_encoding
        self._backoff = backoff
        self._touch_refresh = touch_refresh
        if endpoint_url:
            if "://" not in endpoint_url:
                endpoint_url = f"https://{endpoint_url}"
            try:
                endpoint = httpx.URL(endpoint_url)
            except (httpx.InvalidURL, ValueError):
                endpoint = None
            if _endpoint_has_userinfo(endpoint_url) or (endpoint is not None and endpoint.userinfo):
                # never used (requests are signed), and a password to keep out of messages
                raise ConfigError("s3: endpoint_url holds a user name or password")
            if endpoint is None or endpoint.scheme not in ("http", "https") or not endpoint.host:
                raise ConfigError(f"s3: invalid endpoint_url {endpoint_url!r}")
        else:
            endpoint = httpx.URL(f"https://s3.{region}.amazonaws.com")
            if "." in bucket:  # a dotted bucket breaks the TLS name of its host
                self._path_style = True
        self._endpoint = endpoint
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- addresses ----------------------------------------------------------------------

    def address(self, key: str) -> tuple[str, str, str]:
        """``(url, host, canonical path)`` of ``key`` (``""``: the bucket)."""
        endpoint = self._endpoint
        base_path = endpoint.raw_path.decode().rstrip("/")
        encoded_key = uri_encode(key, slash=False)
        if self._path_style:
            host = endpoint.netloc.decode()
            path = f"{base_path}/{uri_encode(self.bucket)}/{encoded_key}"
        else:
            host = f"{self.bucket}.{endpoint.netloc.decode()}"
            path = f"{base_path}/{encoded_key}"
        return f"{endpoint.scheme}://{host}{path}", host, path

    def describe(self, key: str) -> str:
        """``s3://BUCKET/KEY`` for messages."""
        return f"s3://{self.bucket}/{key}"

    # -- requests -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _send(
        self,
        method: str,
        key: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = b"",
        payload_hash: str | None = None,
        size: int | None = None,
        missing_ok: bool = False,
    ) -> AsyncIterator[httpx.Response]:
        """One signed request, retried as the module docstring says; the response (a
        2xx, or a 404 with ``missing_ok`` — any other status is an error) streams in the
        block."""
        what = f"{method} {self.describe(key)}"
        url, host, path = self.address(key)

        async def make() -> httpx.Request:
            credentials = await self._current_credentials(what)
            if isinstance(body, bytes):
                digest = payload_hash or hashlib.sha256(body).hexdigest()
                content: bytes | AsyncIterator[bytes] = body
                length = len(body)
            else:
                digest = payload_hash or "UNSIGNED-PAYLOAD"
                content = body()
                length = size if size is not None else -1
            signed_headers: dict[str, str] = {"host": host}
            for name, value in (headers or {}).items():
                signed_headers[name.lower()] = value
            signature = sign(
                method,
                path,
                params,
                signed_headers,
                payload_hash=digest,
                credentials=credentials,
                region=self.region,
                service="s3",
                when=datetime.datetime.now(datetime.UTC),
            )
            sent = {**signed_headers, **signature.headers}
            sent["accept-encoding"] = "identity"
            if method in ("PUT", "POST") and length >= 0:
                sent["content-length"] = str(length)
            # the query encoded as signed (httpx would encode its own way)
            target = f"{url}?{canonical_query(params)}" if params else url
            request = self._http.build_request(
                method,
                target,
                headers=sent,
                content=content if method in ("PUT", "POST") else None,
            )
            if not self._accept_encoding:
                del request.headers["accept-encoding"]
            return request

        async with send_retrying(
            self._http,
            make,
            unreachable=lambda why: DockyardError(f"s3 {what}: cannot reach {host}: {why}"),
            failure=lambda response, raw: self._failure(what, response.status_code, raw),
            ok_missing=missing_ok,
            max_attempts=self._max_attempts,
            backoff_base=self._backoff,
        ) as response:
            yield response

    async def _current_credentials(self, what: str) -> AwsCredentials:
        """The credentials to sign the next request with (fetched again before they
        expire); a failure to get them names the request."""
        if isinstance(self._credentials, AwsCredentials):
            credentials = self._credentials
        else:
            try:
                credentials = await self._credentials.get()
            except DockyardError as exc:
                exc.message = f"s3 {what}: {exc.message}"
                raise
        # both go into headers as they are (neither is quoted: the token is a secret)
        for name, value in (
            ("access key id", credentials.access_key_id),
            ("session token", credentials.session_token),
        ):
            if not (value.isascii() and all(" " <= c <= "~" for c in value)):
                raise AuthError(
                    f"s3 {what}: the credentials' {name} holds a character an HTTP header "
                    "cannot carry"
                )
        return credentials

    def _failure(self, what: str, status: int, body: bytes) -> DockyardError | Retry:
        code, message = _error_code(body)
        detail = f"{status} {code}: {message}" if code else f"HTTP {status}"
        detail = detail.rstrip(": ")
        if status in (401, 403) or code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "ExpiredToken",
            "InvalidToken",
        ):
            return AuthError(f"s3 {what}: access denied ({detail}); check the credentials")
        if code == "NoSuchBucket":
            return NotFoundError(f"s3 {what}: bucket {self.bucket!r} does not exist")
        error = DockyardError(f"s3 {what}: {detail}")
        if status in _RETRY_STATUS or code in _RETRY_CODES:
            return Retry(error)
        return error

    # -- operations ---------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        """HeadObject; ``None`` when there is no such object."""
        async with self._send("HEAD", key, payload_hash=EMPTY_SHA256, missing_ok=True) as response:
            if response.status_code == 404:
                return None
            length = response.headers.get("content-length", "0")
            return ObjectInfo(
                size=header_int(length) or 0,
                last_modified=last_modified(response.headers.get("last-modified")),
            )

    async def has_blob(self, key: str, size: int) -> bool:
        """Whether ``key`` holds ``size`` bytes; one that does and was last written more
        than ``touch_refresh`` seconds ago (when given) is touched (:meth:`touch`)."""
        info = await self.head(key)
        if info is None or info.size != size:
            return False
        refresh = self._touch_refresh
        if refresh is not None and time.time() - info.last_modified > refresh:
            await self.touch(key, info.size)
        return True

    async def get_bytes(self, key: str, *, limit: int) -> bytes | None:
        """GetObject of a small object (at most ``limit`` bytes); ``None`` when missing."""
        async with self._send("GET", key, payload_hash=EMPTY_SHA256, missing_ok=True) as response:
            if response.status_code == 404:
                _raise_no_bucket(self, key, await read_small(response))
                return None
            return await read_limited(response, limit, f"s3 GET {self.describe(key)}")

    async def download(
        self,
        key: str,
        sink: BlobSink,
        *,
        digest: str,
        size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """GetObject into ``sink`` (committed with ``digest``/``size``, which its commit
        verifies; aborted on any failure). A transfer cut short is tried again from the
        start, ``max_attempts`` times in all."""

        async def missing(response: httpx.Response) -> None:
            _raise_no_bucket(self, key, await read_small(response))
            raise NotFoundError(f"s3: {self.describe(key)} does not exist")

        await download_verified(
            lambda: self._send("GET", key, payload_hash=EMPTY_SHA256, missing_ok=True),
            sink,
            digest=digest,
            size=size,
            what=f"s3 GET {self.describe(key)}",
            missing=missing,
            max_attempts=self._max_attempts,
            backoff_base=self._backoff,
            on_progress=on_progress,
        )

    async def put_bytes(self, key: str, data: bytes) -> None:
        """PutObject of ``data``."""
        async with self._send("PUT", key, body=data):
            pass

    async def put_file(
        self,
        path: Path,
        key: str,
        *,
        size: int,
        sha256: str | None = None,
        part_size: int = PART_SIZE,
        threshold: int = MULTIPART_THRESHOLD,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Upload the file ``path`` (``size`` bytes; ``sha256``: its hash, when known,
        signs the single PUT) as ``key``: one PUT up to ``threshold``, else a multipart
        upload of ``part_size`` parts."""
        if size <= threshold:
            payload = sha256 or await asyncio.to_thread(file_sha256, path)

            def body() -> AsyncIterator[bytes]:
                return read_file(path, 0, size, on_progress)

            async with self._send("PUT", key, body=body, payload_hash=payload, size=size):
                pass
            return
        await self._multipart(path, key, size=size, part_size=part_size, on_progress=on_progress)

    async def _multipart(
        self,
        path: Path,
        key: str,
        *,
        size: int,
        part_size: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        upload_id = await self._create_multipart(key)
        try:
            etags: list[str] = []
            offset = 0
            number = 0
            while offset < size:
                number += 1
                length = min(part_size, size - offset)
                data = await asyncio.to_thread(pread, path, offset, length)
                params = [("partNumber", str(number)), ("uploadId", upload_id)]
                async with self._send("PUT", key, params=params, body=data) as response:
                    etags.append(response.headers.get("etag", ""))
                offset += length
                if on_progress is not None:
                    on_progress(offset)
            await self._complete(key, upload_id, etags)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._abort(key, upload_id))
            raise

    async def _create_multipart(self, key: str) -> str:
        async with self._send("POST", key, params=[("uploads", "")]) as response:
            body = await read_small(response)
        try:
            upload_id = _find(ET.fromstring(body), "UploadId")
        except ET.ParseError:
            upload_id = ""
        if not upload_id:
            raise DockyardError(f"s3 POST {self.describe(key)}: no upload id in the answer")
        return upload_id

    async def _complete(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        parts = "".join(
            f"<Part><ETag>{xml_text(etag)}</ETag><PartNumber>{n}</PartNumber></Part>"
            for n, etag in enumerate(etags, 1)
        )
        xml = (
            f'<CompleteMultipartUpload xmlns="{_NS[1:-1]}">{parts}</CompleteMultipartUpload>'
        ).encode()
        async with self._send("POST", key, params=[("uploadId", upload_id)], body=xml) as response:
            self._check_body(f"POST {self.describe(key)}", await read_small(response))

    async def _abort(self, key: str, upload_id: str) -> None:
        async with self._send("DELETE", key, params=[("uploadId", upload_id)]):
            pass

    def _check_body(self, what: str, body: bytes) -> None:
        """A 200 whose body is an ``<Error>`` (CopyObject, CompleteMultipartUpload)."""
        code, message = _error_code(body)
        if code:
            raise DockyardError(f"s3 {what}: {code}: {message}")

    async def touch(self, key: str, size: int) -> None:
        """Copy ``key`` onto itself with new metadata (``x-amz-meta-updated-at``), so
        that its last-modified time is now — what BuildKit does to keep a blob an
        expiry rule would otherwise remove. Over :data:`COPY_LIMIT`, by a multipart copy."""
        source = f"/{uri_encode(self.bucket)}/{uri_encode(key, slash=False)}"
        stamp = datetime.datetime.now(datetime.UTC).isoformat()
        if size < COPY_LIMIT:
            headers = {
                "x-amz-copy-source": source,
                "x-amz-metadata-directive": "REPLACE",
                "x-amz-meta-updated-at": stamp,
            }
            async with self._send("PUT", key, headers=headers) as response:
                self._check_body(f"PUT {self.describe(key)} (copy)", await read_small(response))
            return
        upload_id = await self._create_multipart(key)
        try:
            etags: list[str] = []
            for number, start in enumerate(range(0, size, COPY_LIMIT), 1):
                end = min(start + COPY_LIMIT, size) - 1
                headers = {
                    "x-amz-copy-source": source,
                    "x-amz-copy-source-range": f"bytes={start}-{end}",
                }
                params = [("partNumber", str(number)), ("uploadId", upload_id)]
                async with self._send("PUT", key, params=params, headers=headers) as response:
                    body = await read_small(response)
                self._check_body(f"PUT {self.describe(key)} (copy part)", body)
                try:
                    etags.append(_find(ET.fromstring(body), "ETag"))
                except ET.ParseError:
                    etags.append("")
            await self._complete(key, upload_id, etags)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._abort(key, upload_id))
            raise


def _raise_no_bucket(client: S3Client, key: str, body: bytes) -> None:
    code, _ = _error_code(body)
    if code == "NoSuchBucket":
        raise NotFoundError(
            f"s3 GET {client.describe(key)}: bucket {client.bucket!r} does not exist"
        )
