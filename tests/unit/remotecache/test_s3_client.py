"""The S3 client against a scripted transport: addresses, signing headers, retries,
multipart uploads, touch, and errors that name the object but never a secret."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from dockyard.core import AuthError, ConfigError, Digest, DockyardError, NotFoundError
from dockyard.remotecache import AwsCredentials, S3Client

SECRET = "very-secret-key-0123456789"
CREDS = AwsCredentials(access_key_id="AKIDTEST", secret_access_key=SECRET, session_token="tok")


def client(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> S3Client:
    return S3Client(
        bucket="bkt",
        region="eu-central-1",
        credentials=CREDS,
        transport=httpx.MockTransport(handler),
        backoff=0.0,
        **kw,  # type: ignore[arg-type]
    )


def test_addresses() -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError

    aws = client(never)
    assert aws.address("blobs/sha256:ab") == (
        "https://bkt.s3.eu-central-1.amazonaws.com/blobs/sha256%3Aab",
        "bkt.s3.eu-central-1.amazonaws.com",
        "/blobs/sha256%3Aab",
    )
    path = client(never, endpoint_url="http://127.0.0.1:9000", use_path_style=True)
    assert path.address("m/x y") == (
        "http://127.0.0.1:9000/bkt/m/x%20y",
        "127.0.0.1:9000",
        "/bkt/m/x%20y",
    )
    virtual = client(never, endpoint_url="https://minio.example:9443")
    assert virtual.address("k")[0] == "https://bkt.minio.example:9443/k"
    dotted = S3Client(bucket="my.bucket", region="us-east-1", credentials=CREDS)
    assert dotted.address("k")[0] == "https://s3.us-east-1.amazonaws.com/my.bucket/k"


async def test_signed_headers_and_payload_hash() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with client(handler) as s3:
        await s3.put_bytes("manifests/buildkit", b"{}")
    request = seen[0]
    assert request.method == "PUT"
    assert request.headers["x-amz-content-sha256"] == hashlib.sha256(b"{}").hexdigest()
    assert request.headers["x-amz-security-token"] == "tok"
    auth = request.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "/eu-central-1/s3/aws4_request" in auth
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token" in auth
    assert SECRET not in str(request.headers)
    assert request.content == b"{}"


async def test_server_errors_are_retried_then_given_up() -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return httpx.Response(503, content=b"<Error><Code>SlowDown</Code></Error>")
        return httpx.Response(200, headers={"content-length": "7"})

    async with client(flaky) as s3:
        info = await s3.head("blobs/x")
    assert calls == 3
    assert info is not None
    assert info.size == 7

    calls = 0

    def down(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, content=b"<Error><Code>InternalError</Code></Error>")

    async with client(down, max_attempts=2) as s3:
        with pytest.raises(DockyardError, match="InternalError"):
            await s3.put_bytes("k", b"x")
    assert calls == 2


async def test_refused_credentials_are_a_clear_error_without_the_secret() -> None:
    def denied(request: httpx.Request) -> httpx.Response:
        body = (
            b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
            b"calculated does not match the signature you provided.</Message></Error>"
        )
        return httpx.Response(403, content=body)

    async with client(denied) as s3:
        with pytest.raises(AuthError) as caught:
            await s3.put_bytes("manifests/buildkit", b"{}")
    text = str(caught.value)
    assert "s3://bkt/manifests/buildkit" in text
    assert "SignatureDoesNotMatch" in text
    assert SECRET not in text


async def test_missing_objects() -> None:
    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, content=b"<Error><Code>NoSuchKey</Code></Error>")

    async with client(missing) as s3:
        assert await s3.head("k") is None
        assert await s3.get_bytes("k", limit=10) is None
        with pytest.raises(DockyardError, match="NoSuchKey"):
            await s3.put_bytes("k", b"x")  # a write never "succeeds" with a 404

    def no_bucket(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, content=b"<Error><Code>NoSuchBucket</Code></Error>")

    async with client(no_bucket) as s3:
        with pytest.raises(NotFoundError, match="bucket 'bkt' does not exist"):
            await s3.put_bytes("k", b"x")
        with pytest.raises(NotFoundError, match="bucket 'bkt' does not exist"):
            await s3.get_bytes("k", limit=10)


async def test_multipart_upload_and_abort(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: 3 parts of 4096
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    parts: dict[int, bytes] = {}
    log: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        query = request.url.params
        log.append(f"{request.method} {request.url.raw_path.decode()}")
        if request.method == "POST" and "uploads" in query:
            return httpx.Response(
                200,
                content=b"<InitiateMultipartUploadResult><UploadId>u+1/=</UploadId>"
                b"</InitiateMultipartUploadResult>",
            )
        if request.method == "PUT":
            assert query["uploadId"] == "u+1/="
            number = int(query["partNumber"])
            body = request.read()
            assert request.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
            parts[number] = body
            return httpx.Response(200, headers={"etag": f'"e{number}"'})
        if request.method == "POST":
            text = request.read().decode()
            assert '<ETag>"e1"</ETag><PartNumber>1</PartNumber>' in text.replace("&quot;", '"')
            return httpx.Response(200, content=b"<CompleteMultipartUploadResult/>")
        return httpx.Response(204)

    async with client(server) as s3:
        await s3.put_file(blob, "blobs/big", size=len(data), part_size=4096, threshold=5000)
    assert b"".join(parts[n] for n in sorted(parts)) == data
    assert len(parts) == 3
    assert not any(line.startswith("DELETE") for line in log)

    def failing(request: httpx.Request) -> httpx.Response:
        log.append(request.method)
        if request.method == "POST":
            return httpx.Response(
                200,
                content=b"<InitiateMultipartUploadResult><UploadId>u2</UploadId>"
                b"</InitiateMultipartUploadResult>",
            )
        if request.method == "PUT":
            return httpx.Response(400, content=b"<Error><Code>EntityTooSmall</Code></Error>")
        return httpx.Response(204)

    log.clear()
    async with client(failing) as s3:
        with pytest.raises(DockyardError, match="EntityTooSmall"):
            await s3.put_file(blob, "blobs/big", size=len(data), part_size=4096, threshold=5000)
    assert log[-1] == "DELETE"  # AbortMultipartUpload


async def test_touch_copies_the_object_onto_itself() -> None:
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"<CopyObjectResult/>")

    async with client(server) as s3:
        await s3.touch("blobs/sha256:ab", 10)
    headers = seen[0].headers
    assert seen[0].method == "PUT"
    assert headers["x-amz-copy-source"] == "/bkt/blobs/sha256%3Aab"
    assert headers["x-amz-metadata-directive"] == "REPLACE"
    assert headers["x-amz-meta-updated-at"]

    def copy_failed(request: httpx.Request) -> httpx.Response:  # S3's 200 with an error
        return httpx.Response(200, content=b"<Error><Code>InternalError</Code></Error>")

    async with client(copy_failed) as s3:
        with pytest.raises(DockyardError, match="InternalError"):
            await s3.touch("k", 10)


class _Stream(httpx.AsyncByteStream):
    """A response body that streams (httpx reads a ``content=`` one at once)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), 100):
            yield self._data[start : start + 100]


class _Sink:
    verifies_digest = False

    def __init__(self) -> None:
        self.data = bytearray()
        self.state = ""

    async def write(self, data: bytes) -> None:
        self.data += data

    async def reset(self) -> None:
        self.data.clear()

    async def commit(self, digest: Digest, size: int) -> None:
        assert Digest.from_bytes(bytes(self.data)) == digest
        self.state = "committed"

    async def abort(self) -> None:
        self.state = "aborted"


async def test_download_into_a_sink() -> None:
    payload = b"layer bytes" * 100

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("missing"):
            return httpx.Response(404)
        return httpx.Response(200, stream=_Stream(payload))

    digest = Digest.from_bytes(payload)
    async with client(server) as s3:
        sink = _Sink()
        seen: list[int] = []
        await s3.download(
            "blobs/x", sink, digest=digest, size=len(payload), on_progress=seen.append
        )
        assert sink.state == "committed"
        assert seen[-1] == len(payload)
        sink = _Sink()
        with pytest.raises(DockyardError, match="does not exist"):
            await s3.download("blobs/missing", sink, digest=digest, size=len(payload))
        assert sink.state == "aborted"
        sink = _Sink()
        with pytest.raises(DockyardError, match="more than"):
            await s3.download("blobs/x", sink, digest=digest, size=10)
        assert sink.state == "aborted"


async def test_the_cache_client_takes_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.remotecache import S3Location
    from dockyard.remotecache._s3cache import s3_client

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    location = S3Location(bucket="b", region="r", use_path_style=True)
    async with s3_client(location) as s3:  # the chain is asked at the first request
        with pytest.raises(AuthError, match="no AWS credentials") as caught:
            await s3.head("k")
    assert "s3 HEAD s3://b/k" in str(caught.value)
    monkeypatch.setenv("AWS_PROFILE", "missing")
    with pytest.raises(ConfigError, match="no such profile") as refused:
        s3_client(location)
    assert "s3://b/manifests/buildkit" in str(refused.value)
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    async with s3_client(location) as s3:
        assert s3.address("k")[0] == "http://127.0.0.1:9/b/k"


async def test_credentials_a_header_cannot_carry_are_an_auth_error() -> None:
    # an access key id or session token with a non-ASCII or control character (from an
    # instance's or container's answer, a credential_process, a client's attributes)
    # made httpx raise UnicodeEncodeError (a traceback) or went into the header
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request is sent")

    for key, token in (("AKID\u00e9", "tok"), ("AKID", "tok\u00e9n"), ("AKID", "t\r\nX-A: 1")):
        creds = AwsCredentials(access_key_id=key, secret_access_key=SECRET, session_token=token)
        with pytest.raises(AuthError, match="cannot carry") as caught:
            await S3Client(
                bucket="bkt",
                region="eu-central-1",
                credentials=creds,
                transport=httpx.MockTransport(handler),
                backoff=0.0,
            ).head("k")
        assert SECRET not in str(caught.value)
        assert token not in str(caught.value)
