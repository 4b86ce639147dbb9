"""A small Azure Blob Storage client over httpx: what BuildKit's azblob cache asks of the
Azure SDK, for one container of one storage account.

Get Container Properties and Create Container (:meth:`AzureBlobClient.ensure_container`),
Get Blob Properties (:meth:`~AzureBlobClient.head`), Get Blob (streamed), Put Blob of a
block blob up to :data:`SINGLE_PUT_LIMIT` and beyond it Put Block of
:data:`BLOCK_SIZE` blocks then Put Block List (the SDK's ``UploadStream`` makes blocks
of the same size for BuildKit), and List Blobs. Every request is signed with the
account's Shared Key (:mod:`._sharedkey`). Addresses: ``ACCOUNT_URL/CONTAINER/BLOB``,
so both Azure's ``https://ACCOUNT.blob.core.windows.net`` and an emulator's
``http://127.0.0.1:10000/ACCOUNT`` work.

Retries as the SDK's: up to ``max_attempts`` tries (4) of a request that failed with a
connection error, a 408, 429 or 5xx, waiting a random time up to 1, 2, 4… seconds (at
most 20) between them. Errors name the container, blob and Azure's error code (and its
message, except for refused credentials, whose message quotes the signed text); never
the key, a signature or a request header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import secrets
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
    last_modified,
    pread,
    printable,
    read_file,
    read_limited,
    read_small,
    send_retrying,
    xml_text,
)
from ._sharedkey import AzureSharedKey, shared_key_authorization
from ._sigv4 import uri_encode

if TYPE_CHECKING:
    import httpx

    from dockyard.registry import BlobSink

__all__ = ["API_VERSION", "BLOCK_SIZE", "SINGLE_PUT_LIMIT", "AzureBlobClient", "BlobInfo"]

API_VERSION = "2021-12-02"
"""The ``x-ms-version`` of every request."""
SINGLE_PUT_LIMIT = 32 << 20
"""A blob up to this size is one Put Blob; a larger one is uploaded in blocks."""
BLOCK_SIZE = 32 << 20
"""The blocks of a larger blob (BuildKit's ``IOChunkSize``)."""
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobInfo:
    """A blob's name, size and when it was last written (epoch seconds; 0: unknown)."""

    name: str
    size: int
    last_modified: float = 0.0


def _error_code(body: bytes) -> tuple[str, str]:
    """Azure's ``<Error><Code>`` and the first line of its ``<Message>``."""
    if not body.lstrip().lstrip(b"\xef\xbb\xbf").startswith(b"<"):
        return "", ""
    try:
        root = ET.fromstring(body.lstrip(b"\xef\xbb\xbf"))
    except ET.ParseError:
        return "", ""
    if root.tag != "Error":
        return "", ""
    code = (root.findtext("Code") or "").strip()
    message = (root.findtext("Message") or "").strip().splitlines()
    return printable(code, 100), printable(message[0] if message else "", 500)


Body = Callable[[], AsyncIterator[bytes]] | bytes


class AzureBlobClient:
    """One container of one storage account (see the module docstring). Close it with
    :meth:`aclose` (or use it as an async context manager)."""

    def __init__(
        self,
        *,
        account_url: str,
        container: str,
        credential: AzureSharedKey,
        max_attempts: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 1.0,
        timeout: float = 300.0,
    ) -> None:
        import httpx

        if not container:
            raise ConfigError("azblob: no container")
        try:
            base = httpx.URL(account_url)
        except (httpx.InvalidURL, ValueError):
            base = None
        if base is None or base.scheme not in ("http", "https") or not base.host:
            raise ConfigError(f"azblob: invalid account_url {account_url!r}")
        if base.userinfo:
            raise ConfigError("azblob: account_url holds a user name or password")
        try:
            credential.key_bytes()
        except ValueError:
            raise ConfigError("azblob: secret_access_key is not an account key (base64)") from None
        self.container = container
        self._base = base
        self._credential = credential
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AzureBlobClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- addresses ----------------------------------------------------------------------

    def address(self, blob: str) -> tuple[str, str]:
        """``(url without query, path as signed)`` of ``blob`` (``""``: the container)."""
        base = self._base
        path = base.raw_path.decode().split("?", 1)[0].rstrip("/")
        path += "/" + uri_encode(self.container)
        if blob:
            path += "/" + uri_encode(blob, slash=False)
        host = base.netloc.decode()
        return f"{base.scheme}://{host}{path}", path

    def describe(self, blob: str = "") -> str:
        """``CONTAINER/BLOB`` on the account's host, for messages."""
        where = f"{self._base.host}/{self.container}"
        return f"{where}/{blob}" if blob else where

    # -- requests -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _send(
        self,
        method: str,
        blob: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = b"",
        size: int | None = None,
        ok_missing: bool = False,
    ) -> AsyncIterator[httpx.Response]:
        """One signed request, retried as the module docstring says; the response (a
        2xx, or a 404 with ``ok_missing`` — any other status is an error) streams in
        the block."""
        what = f"{method} {self.describe(blob)}"
        url, path = self.address(blob)

        async def make() -> httpx.Request:
            if isinstance(body, bytes):
                content: bytes | AsyncIterator[bytes] = body
                length = len(body)
            else:
                content = body()
                length = size if size is not None else -1
            sent: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
            sent["x-ms-date"] = email.utils.formatdate(usegmt=True)
            sent["x-ms-version"] = API_VERSION
            if method in ("PUT", "POST") and length >= 0:
                sent["content-length"] = str(length)
            sent["authorization"] = shared_key_authorization(
                self._credential, method, path, params, sent
            )
            sent["accept-encoding"] = "identity"
            query = "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in params)
            return self._http.build_request(
                method,
                f"{url}?{query}" if query else url,
                headers=sent,
                content=content if method in ("PUT", "POST") else None,
            )

        host = self._base.host
        async with send_retrying(
            self._http,
            make,
            unreachable=lambda why: DockyardError(f"azblob {what}: cannot reach {host}: {why}"),
            failure=lambda response, raw: self._failure(
                what, response.status_code, raw, response.headers.get("x-ms-error-code", "")
            ),
            ok_missing=ok_missing,
            max_attempts=self._max_attempts,
            backoff_base=self._backoff,
        ) as response:
            yield response

    def _failure(
        self, what: str, status: int, body: bytes, header_code: str
    ) -> DockyardError | Retry:
        code, message = _error_code(body)
        code = code or printable(header_code.strip(), 100)
        if status in (401, 403) or code in _AUTH_CODES:
            # Azure's message for a refused signature quotes the signed text: left out
            detail = f"{status} {code}" if code else f"HTTP {status}"
            return AuthError(f"azblob {what}: access denied ({detail}); check the account key")
        if code == "ContainerNotFound":
            return NotFoundError(f"azblob {what}: container {self.container!r} does not exist")
        detail = f"{status} {code}: {message}" if code else f"HTTP {status}"
        error = DockyardError(f"azblob {what}: {detail.rstrip(': ')}")
        if status in _RETRY_STATUS:
            return Retry(error)
        return error

    # -- the container ------------------------------------------------------------------

    async def ensure_container(self) -> None:
        """Create the container unless it exists (as BuildKit does before an export)."""
        params = [("restype", "container")]
        async with self._send("HEAD", "", params=params, ok_missing=True) as response:
            if response.status_code != 404:
                return
        try:
            async with self._send("PUT", "", params=params):
                pass
        except DockyardError as exc:
            if "ContainerAlreadyExists" not in str(exc):  # made meanwhile by another
                raise

    async def list_blobs(self, prefix: str = "") -> list[BlobInfo]:
        """Every blob whose name starts with ``prefix`` (List Blobs, page after page)."""
        out: list[BlobInfo] = []
        marker = ""
        while True:
            params = [("restype", "container"), ("comp", "list")]
            if prefix:
                params.append(("prefix", prefix))
            if marker:
                params.append(("marker", marker))
            async with self._send("GET", "", params=params) as response:
                body = await read_small(response)
            try:
                root = ET.fromstring(body.lstrip(b"\xef\xbb\xbf"))
            except ET.ParseError:
                raise DockyardError(
                    f"azblob GET {self.describe()}: the listing is not XML"
                ) from None
            for item in root.iter("Blob"):
                props = item.find("Properties")
                size_text = props.findtext("Content-Length") if props is not None else None
                modified = props.findtext("Last-Modified") if props is not None else None
                out.append(
                    BlobInfo(
                        name=item.findtext("Name") or "",
                        size=header_int(size_text or "0") or 0,
                        last_modified=last_modified(modified),
                    )
                )
            marker = (root.findtext("NextMarker") or "").strip()
            if not marker:
                return out

    # -- blobs --------------------------------------------------------------------------

    async def head(self, blob: str) -> BlobInfo | None:
        """Get Blob Properties; ``None`` when there is no such blob (or container)."""
        async with self._send("HEAD", blob, ok_missing=True) as response:
            if response.status_code == 404:
                return None
            return BlobInfo(
                name=blob,
                size=header_int(response.headers.get("content-length", "0")) or 0,
                last_modified=last_modified(response.headers.get("last-modified")),
            )

    async def has_blob(self, key: str, size: int) -> bool:
        """Whether ``key`` holds ``size`` bytes."""
        info = await self.head(key)
        return info is not None and info.size == size

    async def get_bytes(self, key: str, *, limit: int) -> bytes | None:
        """Get Blob of a small blob (at most ``limit`` bytes); ``None`` when missing."""
        async with self._send("GET", key, ok_missing=True) as response:
            if response.status_code == 404:
                return None
            return await read_limited(response, limit, f"azblob GET {self.describe(key)}")

    async def download(
        self,
        key: str,
        sink: BlobSink,
        *,
        digest: str,
        size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Get Blob into ``sink`` (committed with ``digest``/``size``, which its commit
        verifies; aborted on any failure). A transfer cut short is tried again from the
        start, ``max_attempts`` times in all."""

        async def missing(response: httpx.Response) -> None:
            raise NotFoundError(f"azblob: {self.describe(key)} does not exist")

        await download_verified(
            lambda: self._send("GET", key, ok_missing=True),
            sink,
            digest=digest,
            size=size,
            what=f"azblob GET {self.describe(key)}",
            missing=missing,
            max_attempts=self._max_attempts,
            backoff_base=self._backoff,
            on_progress=on_progress,
        )

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Put Blob of ``data`` (a block blob; replaces what was there)."""
        async with self._send("PUT", key, headers={"x-ms-blob-type": "BlockBlob"}, body=data):
            pass

    async def put_file(
        self,
        path: Path,
        key: str,
        *,
        size: int,
        sha256: str | None = None,
        block_size: int = BLOCK_SIZE,
        single_put_limit: int = SINGLE_PUT_LIMIT,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Upload the file ``path`` (``size`` bytes) as the block blob ``key``: one Put
        Blob up to ``single_put_limit``, else Put Block of ``block_size`` blocks and a
        Put Block List (the blocks are committed only by that last request: a failure
        before leaves what was there)."""
        del sha256  # the import verifies the digest; Azure is given no hash of it
        if size <= single_put_limit:

            def body() -> AsyncIterator[bytes]:
                return read_file(path, 0, size, on_progress)

            headers = {"x-ms-blob-type": "BlockBlob"}
            async with self._send("PUT", key, headers=headers, body=body, size=size):
                pass
            return
        ids: list[str] = []
        upload = secrets.token_hex(8)
        offset = 0
        while offset < size:
            length = min(block_size, size - offset)
            data = await asyncio.to_thread(pread, path, offset, length)
            # ids of one length (Azure wants that) and this upload's own: a concurrent
            # upload of the same blob stages blocks of its own ids
            block_id = base64.b64encode(f"{upload}-{len(ids):08d}".encode()).decode()
            params = [("comp", "block"), ("blockid", block_id)]
            async with self._send("PUT", key, params=params, body=data):
                pass
            ids.append(block_id)
            offset += length
            if on_progress is not None:
                on_progress(offset)
        listing = "".join(f"<Latest>{xml_text(i)}</Latest>" for i in ids)
        xml = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{listing}</BlockList>'.encode()
        async with self._send("PUT", key, params=[("comp", "blocklist")], body=xml):
            pass
