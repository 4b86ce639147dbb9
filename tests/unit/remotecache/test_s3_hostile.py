"""The s3 cache against a hostile or broken endpoint, and option values that would lead
a request elsewhere: credentials in an endpoint URL, bucket/region names that change the
host, ``..`` in keys, redirects, retries of a streamed body, a cancelled multipart
upload, blobs that do not match their digest, a blob of the wrong size under its name."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.content import ContentStore
from dockyard.core import ConfigError, ContentError, Digest, DockyardError, UsageError
from dockyard.oci import Descriptor
from dockyard.remotecache import AwsCredentials, S3Client, parse_cache_export, parse_cache_import
from dockyard.remotecache._objectcache import _blob
from dockyard.source import StoreSink
from tests.unit.remotecache.test_s3_client import _Stream

SECRET = "very-secret-key-0123456789"
CREDS = AwsCredentials(access_key_id="AKIDTEST", secret_access_key=SECRET)
BASE = "type=s3,bucket=bkt,region=eu-central-1,access_key_id=a,secret_access_key=SECRETVALUE"


def client(handler: Callable[[httpx.Request], Any], **kw: Any) -> S3Client:
    return S3Client(
        bucket="bkt",
        region="eu-central-1",
        credentials=CREDS,
        transport=httpx.MockTransport(handler),
        backoff=0.0,
        endpoint_url="http://127.0.0.1:9000",
        use_path_style=True,
        **kw,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ContentStore]:
    content = ContentStore(tmp_path / "content")
    yield content
    content.close()


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://AKIA:pass-word-1@127.0.0.1:9000",
        "https://user:pass-word-1@minio.example/base",
        "user:pass-word-1@minio.example",
    ],
)
def test_an_endpoint_with_credentials_is_refused_without_showing_them(endpoint: str) -> None:
    for parse in (parse_cache_export, parse_cache_import):
        with pytest.raises(UsageError) as caught:
            parse(f"{BASE},endpoint_url={endpoint}")
        assert "pass-word-1" not in str(caught.value)
        assert "endpoint_url holds a user name or password" in str(caught.value)
    # from $AWS_ENDPOINT_URL, or a broken URL: the client refuses it the same way
    for text in (endpoint, "http://u:pass-word-1@host:notaport/"):
        with pytest.raises(ConfigError) as refused:
            S3Client(bucket="b", region="r", credentials=CREDS, endpoint_url=text)
        assert "pass-word-1" not in str(refused.value)


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("bucket", "attacker.example#"),
        ("bucket", "attacker.example/x"),
        ("bucket", "x@attacker.example"),
        ("bucket", "b?x=1"),
        ("region", "attacker.example/"),
        ("region", "eu#x"),
    ],
)
def test_bucket_and_region_cannot_change_the_host(attr: str, value: str) -> None:
    text = f"type=s3,{attr}={value},access_key_id=a,secret_access_key=SECRETVALUE"
    text += ",region=r" if attr == "bucket" else ",bucket=b"
    with pytest.raises(UsageError, match=attr):
        parse_cache_export(text)


@pytest.mark.parametrize(
    "field",
    [
        "prefix=../other/",
        "prefix=a/./",
        "name=..",
        "name=ok;../../x",
        "blobs_prefix=../blobs/",
        "manifests_prefix=m/../",
    ],
)
def test_dot_segments_in_keys_are_refused(field: str) -> None:
    # an HTTP client folds /a/../b to /b: the request would name another object
    with pytest.raises(UsageError, match=r"'\.' or '\.\.'"):
        parse_cache_export(f"{BASE},{field}")


def test_odd_but_valid_keys_are_sent_as_signed() -> None:
    location = parse_cache_export(f"{BASE},prefix=a b/ü+c/,name=x..y;.hidden").location  # type: ignore[union-attr]
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def put() -> None:
        async with client(server) as s3:
            for name in location.names:
                key = location.manifest_key(name)
                await s3.put_bytes(key, b"{}")
                _url, _host, path = s3.address(key)
                assert seen[-1].url.raw_path.decode() == path  # what was signed is sent

    asyncio.run(put())
    assert seen[0].url.raw_path == b"/bkt/a%20b/%C3%BC%2Bc/manifests/x..y"
    assert seen[1].url.raw_path == b"/bkt/a%20b/%C3%BC%2Bc/manifests/.hidden"


async def test_a_redirect_is_not_followed() -> None:
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(307, headers={"location": "http://attacker.example/steal"})

    async with client(server) as s3:
        with pytest.raises(DockyardError, match="HTTP 307"):
            await s3.get_bytes("manifests/x", limit=100)
    assert [r.url.host for r in seen] == ["127.0.0.1"]  # the signed request went nowhere else


async def test_a_retried_upload_sends_the_whole_body_again(tmp_path: Path) -> None:
    data = b"0123456789" * 300_000  # streamed in 1 MiB reads
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    bodies: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(503 if len(bodies) == 1 else 200)

    async with client(server) as s3:
        await s3.put_file(blob, "blobs/b", size=len(data))
    assert bodies == [data, data]


async def test_a_cancelled_multipart_upload_is_aborted(tmp_path: Path) -> None:
    data = b"x" * 10_000
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    log: list[str] = []
    started = asyncio.Event()

    async def server(request: httpx.Request) -> httpx.Response:
        log.append(request.method)
        if request.method == "POST":
            return httpx.Response(
                200,
                content=b"<InitiateMultipartUploadResult><UploadId>u</UploadId>"
                b"</InitiateMultipartUploadResult>",
            )
        if request.method == "PUT":
            started.set()
            await asyncio.Event().wait()  # a part that never finishes
        return httpx.Response(204)

    async with client(server) as s3:
        upload = asyncio.create_task(
            s3.put_file(blob, "blobs/big", size=len(data), part_size=4096, threshold=5000)
        )
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait([upload, waiting], return_when=asyncio.FIRST_COMPLETED)
        assert not upload.done(), upload.exception()
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
    assert log == ["POST", "PUT", "DELETE"]  # AbortMultipartUpload, even when cancelled


async def test_a_blob_that_does_not_match_its_digest_is_never_stored(
    store: ContentStore,
) -> None:
    wanted = b"the layer" * 100
    digest = Digest.from_bytes(wanted)
    forged = b"evil layer" * 90  # same size as the descriptor says
    forged = forged[: len(wanted)].ljust(len(wanted), b"!")

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Stream(forged))

    async with client(server) as s3:
        sink = StoreSink(store, digest=digest, size=len(wanted), lease=None)
        with pytest.raises(ContentError, match="not what it should be"):
            await s3.download("blobs/x", sink, digest=str(digest), size=len(wanted))
    assert not store.has(digest)


class _Step:
    def update(self, done: int, total: int) -> None:
        pass

    def done(self) -> None:
        pass


class _Progress:
    def step(self, step_id: str, name: str) -> _Step:
        return _Step()


async def test_an_object_of_another_size_under_a_blobs_name_is_written_again(
    store: ContentStore,
) -> None:
    """A HEAD finding the blob's key is not enough: an object of another size there (an
    upload cut short, a foreign object) would fail every import's verification."""
    from dockyard.remotecache import S3Location

    data = b"layer" * 1000
    digest = Digest.from_bytes(data)
    await store.write_blob(data)
    desc = Descriptor(
        media_type="application/vnd.oci.image.layer.v1.tar", digest=digest, size=len(data)
    )
    stored_size = {"value": 7}
    log: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        log.append(request.method)
        if request.method == "HEAD":
            return httpx.Response(
                200,
                headers={
                    "content-length": str(stored_size["value"]),
                    "last-modified": "Sat, 28 Nov 2026 10:00:00 GMT",
                },
            )
        assert request.read() == data
        assert request.headers["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()
        return httpx.Response(200)

    location = S3Location(bucket="bkt", region="eu-central-1")
    async with client(server, touch_refresh=24 * 3600.0) as s3:
        await _blob(s3, location, desc, store, _Progress())  # type: ignore[arg-type]
        assert log == ["HEAD", "PUT"]
    log.clear()
    stored_size["value"] = len(data)  # the right size, written recently: nothing to do
    async with client(server, touch_refresh=1e12) as s3:
        await _blob(s3, location, desc, store, _Progress())  # type: ignore[arg-type]
        assert log == ["HEAD"]


class _Endless(httpx.AsyncByteStream):
    """A body that never ends; counts what was taken of it."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < 1 << 30:  # 1 GiB, were it read to the end
            self.sent += len(self.chunk)
            yield self.chunk


async def test_an_endless_error_body_is_cut() -> None:
    bodies: list[_Endless] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = _Endless(b"<Error><Code>" + b"x" * 65536)
        bodies.append(body)
        return httpx.Response(400, stream=body)

    async with client(server) as s3:
        for call in (s3.head("k"), s3.get_bytes("k", limit=10), s3.put_bytes("k", b"")):
            with pytest.raises(DockyardError, match="HTTP 400"):
                await call
    assert bodies
    assert all(b.sent <= 2 << 20 for b in bodies)


async def test_a_servers_message_cannot_drive_the_terminal() -> None:
    # XML 1.0 refuses C0 controls, not C1 ones (CSI, U+009B) nor bidi overrides
    def server(request: httpx.Request) -> httpx.Response:
        message = "denied \x9b2J \u202egnp.exe " + "y" * 5000
        body = f"<Error><Code>Bad\x9b0m</Code><Message>{message}</Message></Error>"
        return httpx.Response(400, content=body.encode())

    async with client(server) as s3:
        with pytest.raises(DockyardError) as caught:
            await s3.put_bytes("k", b"")
    text = str(caught.value)
    assert "\x9b" not in text
    assert "\u202e" not in text
    assert "denied \\x9b2J \\u202egnp.exe" in text
    assert len(text) < 1000
