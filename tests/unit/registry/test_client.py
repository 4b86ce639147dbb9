from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from dockyard.core import (
    AuthError,
    ContentError,
    Digest,
    NotFoundError,
    Platform,
    RegistryError,
)
from dockyard.oci import Descriptor, ImageIndex, MediaType
from dockyard.registry import (
    BytesReader,
    BytesSink,
    Credentials,
    HostConfig,
    Reference,
    RegistryClient,
    RegistryConfig,
    RetryPolicy,
    StaticCredentials,
    TransientRegistryError,
)

from .fake import FakeRegistry, image_documents

FAST = RetryPolicy(attempts=4, initial_delay=0, jitter=0)
HOST = "registry.test"


def client(fake: FakeRegistry, **kwargs: object) -> RegistryClient:
    return RegistryClient(transport=fake.transport(), retry=FAST, **kwargs)  # type: ignore[arg-type]


def with_image(fake: FakeRegistry, repo: str = "app", tag: str = "latest") -> Descriptor:
    config, layer, manifest = image_documents()
    fake.add_blob(repo, config)
    fake.add_blob(repo, layer)
    fake.add_manifest(repo, manifest, MediaType.OCI_MANIFEST, tag)
    return Descriptor.of(MediaType.OCI_LAYER_GZIP, layer)


def with_index(fake: FakeRegistry, repo: str = "multi") -> bytes:
    entries = []
    for arch in ("amd64", "arm64"):
        config, layer, manifest = image_documents(arch)
        fake.add_blob(repo, config)
        fake.add_blob(repo, layer)
        fake.add_manifest(repo, manifest, MediaType.OCI_MANIFEST)
        entries.append(
            {
                "mediaType": MediaType.OCI_MANIFEST,
                "digest": Digest.from_bytes(manifest),
                "size": len(manifest),
                "platform": {
                    "architecture": arch,
                    "os": "linux",
                    **({"variant": "v8"} if arch == "arm64" else {}),
                },
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": MediaType.DOCKER_MANIFEST_LIST, "manifests": entries}
    ).encode()
    fake.add_manifest(repo, index, MediaType.DOCKER_MANIFEST_LIST, "latest")
    return index


# -- resolve ---------------------------------------------------------------------------


async def test_resolve_index_to_platform() -> None:
    fake = FakeRegistry()
    index = with_index(fake)
    async with client(fake) as c:
        resolved = await c.resolve(f"{HOST}/multi", platform=Platform.parse("linux/aarch64"))
    assert resolved.descriptor.digest == Digest.from_bytes(index)
    assert resolved.descriptor.media_type == MediaType.DOCKER_MANIFEST_LIST
    assert resolved.index is not None
    assert resolved.index.data == index  # received bytes are kept
    assert isinstance(resolved.index.manifest, ImageIndex)
    assert resolved.config.architecture == "arm64"
    assert resolved.platform == Platform.parse("linux/arm64")
    assert resolved.manifest.descriptor.platform is not None
    assert str(resolved.pinned) == f"{HOST}/multi:latest@{resolved.digest}"
    assert resolved.source == HOST
    gets = [r for r in fake.requests if "/manifests/" in r.url.path]
    accept = gets[0].headers["accept"]
    for media_type in MediaType.ACCEPT_MANIFESTS:
        assert media_type in accept


async def test_resolve_single_manifest() -> None:
    fake = FakeRegistry()
    with_image(fake)
    async with client(fake) as c:
        resolved = await c.resolve(f"{HOST}/app:latest", platform=Platform.parse("linux/s390x"))
    assert resolved.index is None
    assert resolved.manifest.descriptor == resolved.descriptor
    assert resolved.config.config.env == ("A=1",)
    assert [layer.size for layer in resolved.image_manifest.layers] == [250]


async def test_resolve_by_digest_uses_the_cache_second_time() -> None:
    fake = FakeRegistry()
    with_index(fake)
    async with client(fake) as c:
        first = await c.resolve(f"{HOST}/multi", platform=Platform.parse("linux/amd64"))
        before = len(fake.requests)
        again = await c.resolve(first.pinned, platform=Platform.parse("linux/amd64"))
    assert again.manifest == first.manifest
    assert len(fake.requests) == before  # every document is immutable and cached by digest


async def test_unknown_image_and_platform() -> None:
    fake = FakeRegistry()
    with_index(fake)
    async with client(fake) as c:
        with pytest.raises(NotFoundError, match=r"^image not found: registry.test/nope:1$"):
            await c.resolve(f"{HOST}/nope:1")
        with pytest.raises(NotFoundError, match="image not found: busybox:latest"):
            # a familiar name in the message for Docker Hub images
            await RegistryClient(transport=FakeRegistry().transport(), retry=FAST).resolve(
                "busybox"
            )
        with pytest.raises(
            NotFoundError,
            match=r"no image for platform linux/ppc64le in .*linux/amd64, linux/arm64",
        ):
            await c.resolve(f"{HOST}/multi", platform=Platform.parse("linux/ppc64le"))


async def test_tampered_manifest_is_refused() -> None:
    fake = FakeRegistry()
    index = with_index(fake)
    # Serve other bytes under the digest the index names for amd64.
    doc = json.loads(index)
    amd64 = doc["manifests"][0]["digest"]
    media_type, data = fake.manifests[("multi", amd64)]
    fake.manifests[("multi", amd64)] = (media_type, data + b" ")
    async with client(fake) as c:
        with pytest.raises(ContentError, match="does not match its digest"):
            await c.resolve(f"{HOST}/multi", platform=Platform.parse("linux/amd64"))


async def test_docker_content_digest_is_checked() -> None:
    fake = FakeRegistry(lie_about_digest=True)
    with_image(fake)
    async with client(fake) as c:
        with pytest.raises(ContentError, match="Docker-Content-Digest"):
            await c.get_manifest(f"{HOST}/app")


async def test_head_manifest() -> None:
    fake = FakeRegistry()
    index = with_index(fake)
    async with client(fake) as c:
        desc = await c.head_manifest(f"{HOST}/multi:latest")
        with pytest.raises(NotFoundError, match="image not found"):
            await c.head_manifest(f"{HOST}/multi:nope")
    assert desc == Descriptor.of(MediaType.DOCKER_MANIFEST_LIST, index)
    assert [r.method for r in fake.requests if "/manifests/" in r.url.path] == ["HEAD", "HEAD"]


# -- blobs -----------------------------------------------------------------------------


async def test_fetch_blob_resumes_with_range() -> None:
    fake = FakeRegistry(cut_blob_gets=2, cut_at=100)
    layer = with_image(fake)
    sink = BytesSink()
    seen: list[int] = []
    async with client(fake) as c:
        await c.fetch_blob(f"{HOST}/app", layer, sink, on_progress=seen.append)
        stats = c.statistics()
    assert sink.data == fake.blobs[layer.digest]
    ranges = [r.headers.get("range") for r in fake.requests if "/blobs/" in r.url.path]
    assert ranges == [None, "bytes=100-", "bytes=200-"]
    assert stats.resumed_downloads == 2
    assert seen[-1] == layer.size


async def test_fetch_blob_restarts_when_range_is_ignored() -> None:
    fake = FakeRegistry(cut_blob_gets=1, cut_at=100, honor_range=False)
    layer = with_image(fake)
    sink = BytesSink()
    async with client(fake) as c:
        await c.fetch_blob(f"{HOST}/app", layer, sink)
        assert c.statistics().restarted_downloads == 1
    assert sink.data == fake.blobs[layer.digest]


async def test_fetch_blob_gives_up_and_aborts() -> None:
    fake = FakeRegistry(cut_blob_gets=10, cut_at=0)
    layer = with_image(fake)
    sink = BytesSink()
    async with client(fake) as c:
        with pytest.raises(TransientRegistryError, match="connection broke after 0 bytes"):
            await c.fetch_blob(f"{HOST}/app", layer, sink)
    assert sink.aborted
    assert sink.data is None
    assert len([r for r in fake.requests if "/blobs/" in r.url.path]) == FAST.attempts


async def test_blob_digest_mismatch_is_refused() -> None:
    fake = FakeRegistry()
    layer = with_image(fake)
    fake.blobs[layer.digest] = b"x" * layer.size  # same size, other bytes
    sink = BytesSink()
    async with client(fake) as c:
        with pytest.raises(ContentError, match="does not match its digest"):
            await c.fetch_blob(f"{HOST}/app", layer, sink)
    assert sink.aborted
    assert sink.data is None


async def test_blob_larger_than_descriptor_is_refused() -> None:
    fake = FakeRegistry()
    layer = with_image(fake)
    fake.blobs[layer.digest] += b"extra"
    sink = BytesSink()
    async with client(fake) as c:
        with pytest.raises(ContentError, match="larger than the 250 bytes"):
            await c.fetch_blob(f"{HOST}/app", layer, sink)
    assert sink.aborted


async def test_missing_blob() -> None:
    fake = FakeRegistry()
    with_image(fake)
    desc = Descriptor.of(MediaType.OCI_LAYER, b"absent")
    sink = BytesSink()
    async with client(fake) as c:
        with pytest.raises(NotFoundError, match=f"blob {desc.digest} of image"):
            await c.fetch_blob(f"{HOST}/app", desc, sink)
    assert sink.aborted


async def test_server_errors_are_retried() -> None:
    fake = FakeRegistry()
    with_image(fake)
    async with client(fake) as c:
        await c.get_manifest(f"{HOST}/app")  # ping first, so the failures hit the GET
        fake.fail_next = [503, 502]
        fetched = await c.get_manifest(f"{HOST}/app:latest")
        assert c.statistics().retries == 2
    assert fetched.descriptor.media_type == MediaType.OCI_MANIFEST


async def test_persistent_server_errors_fail_clearly() -> None:
    fake = FakeRegistry()
    with_image(fake)
    async with client(fake) as c:
        await c.get_manifest(f"{HOST}/app")
        fake.fail_next = [500] * 10
        with pytest.raises(TransientRegistryError, match=r"registry registry\.test failed: 500"):
            await c.get_manifest(f"{HOST}/app:other")


# -- endpoints -------------------------------------------------------------------------


async def test_a_loopback_registry_is_asked_over_plain_http_first() -> None:
    """Traffic that never leaves the machine: no TLS attempt that the usual plain local
    registry refuses; every request then goes over the scheme that answered."""
    fake = FakeRegistry(down_schemes={"https"})
    with_image(fake)
    async with client(fake) as c:
        await c.get_manifest("127.0.0.1:5000/app")
    assert {r.url.scheme for r in fake.requests} == {"http"}


async def test_a_loopback_tls_registry_is_used_over_https() -> None:
    """A TLS registry on loopback answers the plain ping with 400: the client goes on
    over HTTPS, and nothing after the (credential-free) ping goes over plain HTTP."""
    fake = FakeRegistry(tls_only=True, auth="basic")
    with_image(fake)
    async with client(
        fake,
        credentials=StaticCredentials(
            {"127.0.0.1:5000": Credentials(username="user", password="pass")}
        ),
    ) as c:
        await c.get_manifest("127.0.0.1:5000/app")
    schemes = [r.url.scheme for r in fake.requests]
    assert schemes[0] == "http"
    assert fake.requests[0].url.path == "/v2/"
    assert "authorization" not in fake.requests[0].headers
    assert set(schemes[1:]) == {"https"}
    assert len(schemes) > 1


async def test_a_loopback_registry_refusing_plain_http_is_used_over_https() -> None:
    fake = FakeRegistry(down_schemes={"http"})
    with_image(fake)
    async with client(fake) as c:
        await c.get_manifest("127.0.0.1:5000/app")
    schemes = [r.url.scheme for r in fake.requests]
    assert schemes[0] == "http"
    assert set(schemes[1:]) == {"https"}


async def test_non_loopback_never_uses_plain_http() -> None:
    fake = FakeRegistry(down_schemes={"https"})
    with_image(fake)
    async with client(fake) as c:
        with pytest.raises(RegistryError, match=r"cannot reach registry registry\.test"):
            await c.get_manifest(f"{HOST}/app")
    assert {r.url.scheme for r in fake.requests} == {"https"}


async def test_http_only_host() -> None:
    fake = FakeRegistry()
    with_image(fake)
    config = RegistryConfig(hosts={HOST: HostConfig(http=True)})
    async with client(fake, config=config) as c:
        await c.get_manifest(f"{HOST}/app")
    assert {r.url.scheme for r in fake.requests} == {"http"}


async def test_mirror_first_then_registry() -> None:
    fake = FakeRegistry(missing_hosts={"mirror.test"})
    with_image(fake, repo="library/busybox")
    config = RegistryConfig(
        hosts={"docker.io": HostConfig(mirrors=("mirror.test", "dead.test/prefix"))}
    )
    fake.down_hosts.add("dead.test")
    async with client(fake, config=config) as c:
        resolved = await c.resolve("busybox", platform=Platform.parse("linux/amd64"))
    assert resolved.source == "registry-1.docker.io"
    hosts = [r.url.host for r in fake.requests]
    assert hosts.index("mirror.test") < hosts.index("registry-1.docker.io")
    assert "dead.test" in hosts


async def test_mirror_serves_pulls_not_pushes() -> None:
    fake = FakeRegistry()
    with_image(fake, repo="library/busybox")
    config = RegistryConfig(hosts={"docker.io": HostConfig(mirrors=("mirror.test",))})
    async with client(fake, config=config) as c:
        resolved = await c.resolve("busybox", platform=Platform.parse("linux/amd64"))
        assert resolved.source == "mirror.test"
        await c.push_manifest("busybox:copy", resolved.manifest.data, MediaType.OCI_MANIFEST)
    put = [r for r in fake.requests if r.method == "PUT"]
    assert [r.url.host for r in put] == ["registry-1.docker.io"]


# -- auth ------------------------------------------------------------------------------


async def test_bearer_anonymous_pull_and_token_cache() -> None:
    fake = FakeRegistry(auth="bearer")
    layer = with_image(fake)
    async with client(fake) as c:
        await c.resolve(f"{HOST}/app", platform=Platform.parse("linux/amd64"))
        sink = BytesSink()
        await c.fetch_blob(f"{HOST}/app", layer, sink)
        assert c.statistics().tokens_fetched == 1
    assert len(fake.token_requests) == 1
    token_request = fake.token_requests[0]
    assert token_request.url.params["service"] == "fake"
    assert token_request.url.params.get_list("scope") == ["repository:app:pull"]
    assert "authorization" not in token_request.headers


async def test_bearer_push_with_credentials() -> None:
    fake = FakeRegistry(auth="bearer")
    creds = StaticCredentials({HOST: Credentials(username="user", password="pass")})
    config, layer, manifest = image_documents()
    async with client(fake, credentials=creds) as c:
        for blob in (config, layer):
            await c.push_blob(f"{HOST}/app", Descriptor.of("x", blob), blob)
        await c.push_manifest(f"{HOST}/app:v1", manifest, MediaType.OCI_MANIFEST)
    assert fake.manifests[("app", "v1")][1] == manifest
    scopes = {tuple(r.url.params.get_list("scope")) for r in fake.token_requests}
    assert scopes == {("repository:app:pull,push",)}
    assert len(fake.token_requests) == 1
    assert fake.token_requests[0].url.params["account"] == "user"


async def test_token_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    import dockyard.registry._http as http_module

    now = [1000.0]
    monkeypatch.setattr(http_module, "_now", lambda: now[0])
    fake = FakeRegistry(auth="bearer")
    with_image(fake)
    async with client(fake) as c:
        await c.get_manifest(f"{HOST}/app")
        await c.get_manifest(f"{HOST}/app:latest")
        assert len(fake.token_requests) == 1
        now[0] += 301  # past expires_in
        await c.get_manifest(f"{HOST}/app:latest")
    assert len(fake.token_requests) == 2


async def test_identity_token_uses_oauth_refresh() -> None:
    fake = FakeRegistry(auth="bearer", anonymous_pull=False)
    with_image(fake)
    creds = StaticCredentials({HOST: Credentials(identity_token="good-refresh")})
    async with client(fake, credentials=creds) as c:
        await c.get_manifest(f"{HOST}/app")
    assert [r.method for r in fake.token_requests] == ["POST"]
    form = fake.token_requests[0].content.decode()
    assert "grant_type=refresh_token" in form
    assert "refresh_token=good-refresh" in form


async def test_wrong_credentials_name_the_registry() -> None:
    fake = FakeRegistry(auth="bearer")
    with_image(fake)
    creds = StaticCredentials({HOST: Credentials(username="user", password="wrong")})
    async with client(fake, credentials=creds) as c:
        with pytest.raises(AuthError, match=r"authentication to registry registry\.test failed"):
            await c.get_manifest(f"{HOST}/app")


async def test_anonymous_denied_push() -> None:
    fake = FakeRegistry(auth="bearer")
    async with client(fake) as c:
        with pytest.raises(AuthError, match=r"registry registry\.test was denied"):
            await c.push_manifest(f"{HOST}/app:v1", b"{}", MediaType.OCI_MANIFEST)


async def test_basic_auth() -> None:
    fake = FakeRegistry(auth="basic")
    with_image(fake)
    good = StaticCredentials({HOST: Credentials(username="user", password="pass")})
    async with client(fake, credentials=good) as c:
        await c.get_manifest(f"{HOST}/app")
    assert all(
        r.headers.get("authorization", "").startswith("Basic ") for r in fake.requests[1:]
    )  # after the ping, credentials go with every request
    bad = StaticCredentials({HOST: Credentials(username="user", password="nope")})
    async with client(fake, credentials=bad) as c:
        with pytest.raises(
            AuthError, match=r"registry registry\.test failed: the credentials of user 'user'"
        ):
            await c.get_manifest(f"{HOST}/app")
    async with client(fake) as c:
        with pytest.raises(AuthError, match=r"registry\.test requires authentication"):
            await c.get_manifest(f"{HOST}/app")


# -- push ------------------------------------------------------------------------------


async def test_push_monolithic_and_existing() -> None:
    fake = FakeRegistry()
    data = b"layer-bytes" * 1000
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    async with client(fake) as c:
        assert not await c.blob_exists(f"{HOST}/app", desc)
        assert await c.push_blob(f"{HOST}/app", desc, data) == "uploaded"
        assert await c.blob_exists(f"{HOST}/app", desc)
        assert await c.push_blob(f"{HOST}/app", desc, data) == "exists"
        assert c.statistics().blobs_skipped == 1
    puts = [r for r in fake.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert puts[0].url.params["digest"] == desc.digest
    assert puts[0].url.params["_state"] == "s1"  # the Location's own query is kept
    assert fake.blobs[desc.digest] == data


async def test_push_chunked() -> None:
    fake = FakeRegistry()
    data = bytes(range(256)) * 40  # 10240 bytes
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    progress: list[int] = []
    async with client(fake) as c:
        await c.push_blob(
            f"{HOST}/app",
            desc,
            BytesReader(data, chunk_size=1000),
            chunk_size=4096,
            on_progress=progress.append,
        )
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [r.headers["content-range"] for r in patches] == ["0-4095", "4096-8191", "8192-10239"]
    assert [r.url.params["_state"] for r in patches] == ["s1", "p4096", "p8192"]
    assert progress == [4096, 8192, 10240]
    assert fake.blobs[desc.digest] == data


async def test_push_restarts_a_failed_upload() -> None:
    fake = FakeRegistry(fail_uploads=[500])
    data = b"z" * 5000
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    async with client(fake) as c:
        assert await c.push_blob(f"{HOST}/app", desc, data, chunk_size=2000) == "uploaded"
        assert c.statistics().restarted_uploads == 1
    assert fake.blobs[desc.digest] == data
    assert len([r for r in fake.requests if r.method == "POST"]) == 2


async def test_push_digest_mismatch() -> None:
    fake = FakeRegistry()
    desc = Descriptor.of(MediaType.OCI_LAYER, b"right")
    async with client(fake) as c:
        with pytest.raises(ContentError, match="the content is larger than 5 bytes"):
            await c.push_blob(f"{HOST}/app", desc, b"wrong!")
        with pytest.raises(ContentError, match="DIGEST_INVALID"):
            await c.push_blob(f"{HOST}/app", desc, b"wrong")
    assert desc.digest not in fake.blobs


async def test_push_mounts_across_repositories() -> None:
    fake = FakeRegistry(auth="bearer")
    creds = StaticCredentials({HOST: Credentials(username="user", password="pass")})
    data = b"shared layer"
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    fake.add_blob("base", data)
    async with client(fake, credentials=creds) as c:
        outcome = await c.push_blob(
            f"{HOST}/app",
            desc,
            data,
            mount_from=[Reference.parse(f"{HOST}/base"), Reference.parse("other.test/base")],
        )
        assert c.statistics().blobs_mounted == 1
    assert outcome == "mounted"
    posts = [r for r in fake.requests if r.method == "POST"]
    assert posts[-1].url.params["mount"] == desc.digest
    assert posts[-1].url.params["from"] == "base"
    scopes = set(fake.token_requests[-1].url.params.get_list("scope"))
    assert scopes == {"repository:app:pull,push", "repository:base:pull"}


async def test_failed_mount_falls_back_to_upload() -> None:
    fake = FakeRegistry()
    data = b"not in base"
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    async with client(fake) as c:
        outcome = await c.push_blob(
            f"{HOST}/app", desc, data, mount_from=[Reference.parse(f"{HOST}/base")]
        )
    assert outcome == "uploaded"
    assert len([r for r in fake.requests if r.method == "POST"]) == 1  # the mount's session
    assert fake.blobs[desc.digest] == data


async def test_push_image_with_index() -> None:
    fake = FakeRegistry()
    blobs: dict[Digest, bytes] = {}
    children = []
    for arch in ("amd64", "arm64"):
        config, layer, manifest = image_documents(arch)
        blobs[Digest.from_bytes(config)] = config
        blobs[Digest.from_bytes(layer)] = layer
        children.append((manifest, MediaType.OCI_MANIFEST))
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_INDEX,
            "manifests": [
                Descriptor.of(t, m, platform=Platform.parse(f"linux/{arch}")).to_json()
                for (m, t), arch in zip(children, ("amd64", "arm64"), strict=True)
            ],
        }
    ).encode()
    async with client(fake) as c:
        desc = await c.push_image(
            f"{HOST}/multi:v1",
            manifest=index,
            media_type=MediaType.OCI_INDEX,
            blobs=blobs,
            children=children,
        )
        resolved = await c.resolve(f"{HOST}/multi:v1", platform=Platform.parse("linux/arm64"))
    assert desc.digest == Digest.from_bytes(index)
    assert resolved.config.architecture == "arm64"
    for manifest, _ in children:
        assert ("multi", Digest.from_bytes(manifest)) in fake.manifests


async def test_push_image_needs_every_blob() -> None:
    fake = FakeRegistry()
    _, _, manifest = image_documents()
    async with client(fake) as c:
        with pytest.raises(NotFoundError, match="is neither given nor in the repository"):
            await c.push_image(
                f"{HOST}/app:v1", manifest=manifest, media_type=MediaType.OCI_MANIFEST, blobs={}
            )


async def test_closed_client() -> None:
    fake = FakeRegistry()
    c = client(fake)
    await c.aclose()
    with pytest.raises(RegistryError, match="closed"):
        await c.get_manifest(f"{HOST}/app")


async def test_blob_reader_is_read_again_for_each_attempt() -> None:
    fake = FakeRegistry(fail_uploads=[503])
    data = b"q" * 3000
    desc = Descriptor.of(MediaType.OCI_LAYER, data)
    reads: list[int] = []

    class Reader:
        async def read(self, offset: int = 0) -> AsyncIterator[bytes]:
            reads.append(offset)
            yield data[offset:]

    async with client(fake) as c:
        await c.push_blob(f"{HOST}/app", desc, Reader())
    assert reads == [0, 0]
    assert fake.blobs[desc.digest] == data


async def test_anonymous_denial_reads_as_image_not_found() -> None:
    # Docker Hub answers "denied" to anonymous clients for unknown repositories.
    fake = FakeRegistry(auth="bearer", anonymous_pull=False)
    with_image(fake)
    async with client(fake) as c:
        with pytest.raises(NotFoundError) as info:
            await c.resolve(f"{HOST}/app")
        assert str(info.value).startswith(f"image not found: {HOST}/app:latest (registry ")
        assert "requires authentication" in str(info.value)
        with pytest.raises(NotFoundError, match="image not found"):
            await c.head_manifest(f"{HOST}/app")
        # Blobs and pushes keep the auth error.
        with pytest.raises(AuthError):
            await c.get_blob(f"{HOST}/app", Descriptor.of("x", b"abc"))


async def test_embedded_data_needs_no_request() -> None:
    fake = FakeRegistry()
    desc = Descriptor.of(MediaType.OCI_EMPTY, b"{}", data=b"{}")
    sink = BytesSink()
    async with client(fake) as c:
        await c.fetch_blob(f"{HOST}/app", desc, sink)
    assert sink.data == b"{}"
    assert fake.requests == []
    bad = Descriptor(media_type=MediaType.OCI_EMPTY, digest=desc.digest, size=2, data=b"[]")
    sink = BytesSink()
    async with client(fake) as c:
        with pytest.raises(ContentError):
            await c.fetch_blob(f"{HOST}/app", bad, sink)
    assert sink.aborted


async def test_small_documents_are_read_again_when_the_body_breaks() -> None:
    fake = FakeRegistry(cut_blob_gets=2, cut_at=5)  # the config blob breaks twice
    with_image(fake)
    async with client(fake) as c:
        resolved = await c.resolve(f"{HOST}/app", platform=Platform.parse("linux/amd64"))
        assert c.statistics().retries == 2
    assert resolved.config.config.env == ("A=1",)
    config_gets = [r for r in fake.requests if "/blobs/" in r.url.path]
    assert len(config_gets) == 3
    assert all("range" not in r.headers for r in config_gets)  # small reads start over


async def test_a_host_that_does_not_resolve_fails_at_once() -> None:
    # A mistyped image name must not wait out every retry (BuildKit fails fast too).
    import socket

    import httpx

    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError(
                "[Errno -2] Name or service not known", request=request
            ) from exc

    async with RegistryClient(transport=httpx.MockTransport(handle)) as c:
        with pytest.raises(RegistryError, match=r"no-such-host\.test"):
            await c.resolve("no-such-host.test/app", platform=Platform.parse("linux/amd64"))
    assert len({str(r.url) for r in requests}) == len(requests)  # no URL tried twice


async def test_a_refused_connection_fails_at_once() -> None:
    # nothing listens there: retrying for seconds only delays the error (BuildKit: at once)
    import httpx

    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except ConnectionRefusedError as exc:
            raise httpx.ConnectError("All connection attempts failed", request=request) from exc

    async with RegistryClient(transport=httpx.MockTransport(handle)) as c:
        with pytest.raises(RegistryError, match=r"connection refused") as caught:
            await c.resolve("127.0.0.1:5999/app", platform=Platform.parse("linux/amd64"))
    assert not isinstance(caught.value, TransientRegistryError)
    assert len({str(r.url) for r in requests}) == len(requests)  # no URL tried twice


async def test_credentials_never_go_to_a_plain_http_token_realm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An HTTPS registry naming a token realm over plain HTTP (on another host, say)
    would have its user's password sent readable to anyone on the way."""
    from . import fake as fake_module

    monkeypatch.setattr(fake_module, "REALM", "http://auth.test/token")
    fake = FakeRegistry(auth="bearer", anonymous_pull=False)
    with_image(fake)
    creds = StaticCredentials({HOST: Credentials(username="user", password="pass")})
    async with client(fake, credentials=creds) as c:
        with pytest.raises(AuthError, match=r"token realm http://auth\.test/token over plain HTTP"):
            await c.get_manifest(f"{HOST}/app")
    assert fake.token_requests == []
    refresh = StaticCredentials({HOST: Credentials(identity_token="good-refresh")})
    async with client(fake, credentials=refresh) as c:
        with pytest.raises(AuthError, match="not sent unencrypted"):
            await c.get_manifest(f"{HOST}/app")
    assert fake.token_requests == []


async def test_a_plain_http_token_realm_that_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import fake as fake_module

    monkeypatch.setattr(fake_module, "REALM", "http://auth.test/token")
    fake = FakeRegistry(auth="bearer", anonymous_pull=True)
    with_image(fake)
    async with client(fake) as c:  # anonymous: nothing secret to send
        await c.get_manifest(f"{HOST}/app")
    creds = StaticCredentials({HOST: Credentials(username="user", password="pass")})
    config = RegistryConfig(hosts={"auth.test": HostConfig(insecure=True)})
    async with client(fake, credentials=creds, config=config) as c:  # configured so
        await c.get_manifest(f"{HOST}/app")
    assert fake.token_requests[-1].headers["authorization"].startswith("Basic ")
    # a plain-HTTP registry whose token server is on the same machine
    monkeypatch.setattr(fake_module, "REALM", f"http://{HOST}:5001/token")
    config = RegistryConfig(hosts={HOST: HostConfig(http=True)})
    async with client(fake, credentials=creds, config=config) as c:
        await c.get_manifest(f"{HOST}/app")
    assert str(fake.token_requests[-1].url).startswith(f"http://{HOST}:5001/token")
