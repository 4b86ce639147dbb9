"""The Azure Blob client against a scripted transport that checks every Shared Key
signature: addresses, retries of 5xx, uploads in blocks, the container made when
missing, downloads verified, and errors that name the blob but never the key."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from dockyard.content import ContentStore
from dockyard.core import AuthError, ConfigError, ContentError, Digest, DockyardError
from dockyard.remotecache import AzureBlobClient, AzureSharedKey
from dockyard.remotecache._sharedkey import shared_key_authorization
from dockyard.source import StoreSink
from tests.unit.remotecache.test_s3_client import _Stream

KEY = base64.b64encode(b"k" * 64).decode()
CRED = AzureSharedKey(account="acct", key=KEY)


def verified(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """A transport that refuses (403) a request whose signature is not the one the
    documented rules give for it as received, then answers with ``handler``."""

    def check(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?", 1)[0]
        params = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        headers = [(k, v) for k, v in request.headers.items() if k != "authorization"]
        expected = shared_key_authorization(CRED, request.method, path, params, headers)
        if request.headers.get("authorization") != expected:
            return httpx.Response(
                403, headers={"x-ms-error-code": "AuthenticationFailed"}, content=b""
            )
        assert request.headers["x-ms-version"]
        assert request.headers["x-ms-date"].endswith(" GMT")
        return handler(request)

    return httpx.MockTransport(check)


def client(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> AzureBlobClient:
    return AzureBlobClient(
        account_url="https://acct.blob.core.windows.net",
        container="buildkit-cache",
        credential=CRED,
        transport=verified(handler),
        backoff=0.0,
        **kw,  # type: ignore[arg-type]
    )


def test_addresses_and_bad_urls() -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError

    azure = client(never)
    assert azure.address("blobs/sha256:ab") == (
        "https://acct.blob.core.windows.net/buildkit-cache/blobs/sha256%3Aab",
        "/buildkit-cache/blobs/sha256%3Aab",
    )
    emulator = AzureBlobClient(
        account_url="http://127.0.0.1:10000/acct/", container="c1x", credential=CRED
    )
    assert emulator.address("m/x y") == (
        "http://127.0.0.1:10000/acct/c1x/m/x%20y",
        "/acct/c1x/m/x%20y",
    )
    for url in ("ftp://h/", "not a url", "http://user:pw@h/"):
        with pytest.raises(ConfigError) as caught:
            AzureBlobClient(account_url=url, container="c", credential=CRED)
        assert "pw" not in str(caught.value)
    with pytest.raises(ConfigError, match="not an account key") as bad:
        AzureBlobClient(
            account_url="https://a.blob.core.windows.net",
            container="c",
            credential=AzureSharedKey(account="a", key="s3cr3t!!"),
        )
    assert "s3cr3t" not in str(bad.value)


async def test_every_request_is_signed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.raw_path.decode()}")
        if request.method == "HEAD":
            return httpx.Response(404, headers={"x-ms-error-code": "BlobNotFound"})
        if request.method == "GET":
            return httpx.Response(200, stream=_Stream(b"{}"))
        assert request.headers["x-ms-blob-type"] == "BlockBlob"
        return httpx.Response(201)

    async with client(handler) as azure:
        assert await azure.head("manifests/a b") is None
        await azure.put_bytes("manifests/a b", b"{}")
        assert await azure.get_bytes("manifests/a b", limit=10) == b"{}"
    assert seen == [
        "HEAD /buildkit-cache/manifests/a%20b",
        "PUT /buildkit-cache/manifests/a%20b",
        "GET /buildkit-cache/manifests/a%20b",
    ]


async def test_server_errors_are_retried_then_given_up() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return httpx.Response(503, content=b"<Error><Code>ServerBusy</Code></Error>")
        return httpx.Response(201)

    async with client(flaky) as azure:
        await azure.put_bytes("k", b"x")
    assert calls == 3

    calls = 0

    def down(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, content=b"<Error><Code>InternalError</Code></Error>")

    async with client(down, max_attempts=2) as azure:
        with pytest.raises(DockyardError, match="500 InternalError") as caught:
            await azure.put_bytes("k", b"x")
    assert calls == 2
    assert "buildkit-cache/k" in str(caught.value)

    def refused(request: httpx.Request) -> httpx.Response:  # not retried
        nonlocal calls
        calls += 1
        return httpx.Response(400, content=b"<Error><Code>InvalidBlockList</Code></Error>")

    calls = 0
    async with client(refused) as azure:
        with pytest.raises(DockyardError, match="InvalidBlockList"):
            await azure.put_bytes("k", b"x")
    assert calls == 1


async def test_a_wrong_key_is_an_auth_error_without_secrets() -> None:
    message = (
        "<?xml version='1.0'?><Error><Code>AuthenticationFailed</Code><Message>Server "
        "failed to authenticate the request.\nThe MAC signature found in the HTTP request "
        "'c2lnbmF0dXJl' is not the same as any computed signature. Server used following "
        "string to sign: 'PUT...'</Message></Error>"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, content=message.encode())

    wrong = AzureSharedKey(account="acct", key=base64.b64encode(b"w" * 64).decode())
    async with AzureBlobClient(
        account_url="https://acct.blob.core.windows.net",
        container="buildkit-cache",
        credential=wrong,
        transport=httpx.MockTransport(handler),
        backoff=0.0,
    ) as azure:
        with pytest.raises(AuthError) as caught:
            await azure.put_bytes("manifests/x", b"{}")
    text = str(caught.value)
    assert "access denied (403 AuthenticationFailed); check the account key" in text
    assert "c2lnbmF0dXJl" not in text  # Azure's message quotes the signature: left out
    assert wrong.key not in text


async def test_large_blobs_go_in_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    path = tmp_path / "layer"
    path.write_bytes(data)
    blocks: dict[str, bytes] = {}
    order: list[str] = []
    committed: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        assert request.method == "PUT"
        if params.get("comp") == "block":
            assert "x-ms-blob-type" not in request.headers
            blocks[params["blockid"]] = request.read()
            return httpx.Response(201)
        assert params == {"comp": "blocklist"}
        order.extend(re.findall(r"<Latest>([^<]+)</Latest>", request.read().decode()))
        committed.append(b"".join(blocks[i] for i in order))
        return httpx.Response(201)

    progress: list[int] = []
    async with client(handler) as azure:
        await azure.put_file(
            path,
            "blobs/sha256:x",
            size=len(data),
            block_size=4096,
            single_put_limit=4096,
            on_progress=progress.append,
        )
    assert committed == [data]
    assert len(order) == 3
    assert len({len(i) for i in order}) == 1  # ids of one length, as Azure wants
    assert progress == [4096, 8192, 10240]


async def test_small_files_are_one_put(tmp_path: Path) -> None:
    path = tmp_path / "layer"
    path.write_bytes(b"small")
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.query == b""
        assert request.headers["x-ms-blob-type"] == "BlockBlob"
        assert request.headers["content-length"] == "5"
        bodies.append(request.read())
        return httpx.Response(201)

    async with client(handler) as azure:
        await azure.put_file(path, "blobs/sha256:y", size=5)
    assert bodies == [b"small"]


async def test_the_container_is_made_when_missing() -> None:
    log: list[str] = []
    state = {"exists": False, "race": False}

    def handler(request: httpx.Request) -> httpx.Response:
        log.append(f"{request.method} {request.url.query.decode()}")
        assert request.url.raw_path.startswith(b"/buildkit-cache?")
        if request.method == "HEAD":
            return httpx.Response(200 if state["exists"] else 404)
        if state["race"]:
            return httpx.Response(
                409, content=b"<Error><Code>ContainerAlreadyExists</Code></Error>"
            )
        return httpx.Response(201)

    async with client(handler) as azure:
        await azure.ensure_container()
        assert log == ["HEAD restype=container", "PUT restype=container"]
        log.clear()
        state["exists"] = True
        await azure.ensure_container()
        assert log == ["HEAD restype=container"]
        state.update(exists=False, race=True)  # made by another meanwhile: fine
        await azure.ensure_container()


async def test_listing_follows_markers() -> None:
    pages = {
        "": b"<?xml version='1.0'?><EnumerationResults><Blobs><Blob><Name>a</Name>"
        b"<Properties><Content-Length>3</Content-Length></Properties></Blob></Blobs>"
        b"<NextMarker>m1</NextMarker></EnumerationResults>",
        "m1": b"\xef\xbb\xbf<EnumerationResults><Blobs><Blob><Name>b</Name><Properties>"
        b"<Content-Length>4</Content-Length><Last-Modified>Sat, 28 Nov 2026 21:00:00 GMT"
        b"</Last-Modified></Properties></Blob></Blobs><NextMarker/></EnumerationResults>",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        assert params["comp"] == "list"
        assert params["prefix"] == "p/"
        return httpx.Response(200, content=pages[params.get("marker", "")])

    async with client(handler) as azure:
        listed = await azure.list_blobs("p/")
    assert [(b.name, b.size) for b in listed] == [("a", 3), ("b", 4)]
    assert listed[1].last_modified > 0


async def test_downloads_are_verified(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    data = b"layer bytes"
    digest = Digest.from_bytes(data)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Stream(data))

    async with client(handler) as azure:
        sink = StoreSink(store, digest=digest, size=len(data), lease=None)
        await azure.download("blobs/x", sink, digest=str(digest), size=len(data))
        assert store.has(digest)
        other = Digest.from_bytes(b"something else")
        sink = StoreSink(store, digest=other, size=len(data), lease=None)
        with pytest.raises(ContentError):
            await azure.download("blobs/x", sink, digest=str(other), size=len(data))
        assert not store.has(other)
