"""The http source against a local server: names, modes, times, BuildKit's keys, ETag
and Last-Modified re-validation, redirects, retries, limits, pins and credentials."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import CacheManager, ImmutableRef
from dockyard.core import (
    CollectingReporter,
    ContentError,
    Digest,
    DockyardError,
    InternalError,
    InvalidDefinitionError,
    NotFoundError,
    VertexProgress,
    VertexRef,
)
from dockyard.llbsolver import SourceRequest
from dockyard.snapshot.mount import mountpoints_under
from dockyard.solver import JobValue, Vertex, VertexContext
from dockyard.source import DownloadedFile, HttpLimits, HttpSource, HttpSpec
from dockyard.source._http import safe_filename
from dockyard.testing.httpserver import ForwardProxy, HttpTestServer, http_date

BODY = b"hello, world\n"
SHA = Digest.from_hex(hashlib.sha256(BODY).hexdigest())
MODIFIED = http_date(1_600_000_000)


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[CacheManager]:
    manager = await CacheManager.open(tmp_path / "state", snapshotter="native")
    try:
        yield manager
        assert manager.statistics().in_use == 0, "cache records still in use"
    finally:
        await manager.close()
    assert not mountpoints_under(tmp_path), "mounts left behind"


@pytest.fixture
def server() -> Iterator[HttpTestServer]:
    with HttpTestServer() as running:
        yield running


@pytest.fixture
def source(cache: CacheManager) -> HttpSource:
    return HttpSource(cache=cache, limits=HttpLimits(retry_delay=0.01))


async def files(ref: ImmutableRef) -> dict[str, tuple[bytes, int, float, int, int]]:
    """name → (content, mode, mtime, uid, gid); releases ``ref``."""
    try:
        async with ref.mount() as root:
            out = {}
            for entry in root.iterdir():
                st = entry.lstat()
                out[entry.name] = (
                    entry.read_bytes(),
                    stat.S_IMODE(st.st_mode),
                    st.st_mtime,
                    st.st_uid,
                    st.st_gid,
                )
            return out
    finally:
        await ref.release()


def request_of(state: llb.State) -> SourceRequest:
    assert state.output is not None
    op = state.output.vertex
    assert isinstance(op, llb.SourceOp)
    return SourceRequest.parse(
        op.identifier, attrs=op.attrs, vertex=VertexRef(digest="d", name="n")
    )


# -- specs -------------------------------------------------------------------------------


def test_spec_from_llb_http() -> None:
    state = llb.http(
        "https://example.com/dl/tool.tgz#frag",
        checksum=SHA,
        filename="renamed",
        perm=0o755,
        uid=1000,
        gid=50,
        auth_header_secret="MY_AUTH",
    )
    spec = HttpSpec.from_request(request_of(state))
    assert spec.url == "https://example.com/dl/tool.tgz"
    assert (spec.checksum, spec.filename, spec.perm, spec.uid, spec.gid) == (
        SHA,
        "renamed",
        0o755,
        1000,
        50,
    )
    assert spec.auth_header_secret == "MY_AUTH"
    default = HttpSpec.from_request(request_of(llb.http("https://example.com/x")))
    assert (default.checksum, default.perm, default.uid, default.gid) == (None, 0o600, 0, 0)


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"http.perm": "rwx"}, "invalid http.perm"),
        ({"http.perm": "017777"}, "invalid file mode"),
        ({"http.uid": "-1"}, "invalid owner"),
        ({"http.checksum": "sha256:abc"}, "invalid checksum"),
    ],
)
def test_bad_attrs(attrs: dict[str, str], match: str) -> None:
    request = SourceRequest.parse(
        "https://example.com/x", attrs=attrs, vertex=VertexRef(digest="d", name="n")
    )
    with pytest.raises(InvalidDefinitionError, match=match):
        HttpSpec.from_request(request)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("file.txt", "file.txt"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/x", "x"),
        ("..", "download"),
        ("", "download"),
        ("dir/", "dir"),
        ("a\\..\\b", "b"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize(
    ("url", "disposition", "name"),
    [
        ("https://h/dl/archive.tar.gz?x=1", None, "archive.tar.gz"),
        ("https://h/", None, "download"),
        ("https://h/dl/x", 'attachment; filename="real name.txt"', "real name.txt"),
        ("https://h/dl/x", "attachment; filename*=UTF-8''%E2%82%AC.txt", "€.txt"),
        ("https://h/dl/x", 'attachment; filename="../../etc/shadow"', "shadow"),
        ("https://h/dl/x", 'attachment; filename="dir/"', "x"),
        ("https://h/a%20b", None, "a b"),
    ],
)
def test_file_names(url: str, disposition: str | None, name: str) -> None:
    assert HttpSpec.create(url).name_for(disposition) == name


def test_cache_keys() -> None:
    spec = HttpSpec.create("https://h/x", checksum=SHA)
    pinned = DownloadedFile(digest=SHA, filename="x")
    key = HttpSource.cache_key(spec, pinned)
    assert key.startswith("sha256:")
    # same content elsewhere under the same name and mode: the same key
    assert HttpSource.cache_key(HttpSpec.create("https://other/x", checksum=SHA), pinned) == key
    assert HttpSource.cache_key(HttpSpec.create("https://h/x", perm=0o755), pinned) != key
    dated = DownloadedFile(digest=SHA, filename="x", last_modified=MODIFIED)
    assert HttpSource.cache_key(spec, dated) != key
    # credentials never enter the key
    creds = HttpSpec.create("https://user:pw@h/x", checksum=SHA)
    assert "pw" not in HttpSource.cache_key(creds, pinned)


# -- downloads ---------------------------------------------------------------------------


async def test_file_name_mode_owner_and_time(source: HttpSource, server: HttpTestServer) -> None:
    server.add("dl/tool.sh", BODY, last_modified=MODIFIED)
    _, ref = await source.fetch(HttpSpec.create(server.url("dl/tool.sh")))
    assert await files(ref) == {"tool.sh": (BODY, 0o600, 1_600_000_000.0, 0, 0)}
    spec = HttpSpec.create(
        server.url("dl/tool.sh"), filename="renamed", perm=0o4755, uid=1000, gid=50
    )
    _, ref = await source.fetch(spec)
    assert await files(ref) == {"renamed": (BODY, 0o4755, 1_600_000_000.0, 1000, 50)}
    server.add("undated", BODY)
    _, ref = await source.fetch(HttpSpec.create(server.url("undated")))
    assert (await files(ref))["undated"][2] == 0.0  # the epoch, as BuildKit


async def test_unchanged_etag_downloads_nothing_again(
    source: HttpSource, server: HttpTestServer
) -> None:
    server.add("file.txt", BODY, etag='"v1"')
    spec = HttpSpec.create(server.url("file.txt"))
    first = await source.resolve_file(spec)
    second = await source.resolve_file(spec)
    assert first == second
    assert first.digest == SHA
    log = server.requests_for("file.txt")
    assert [(r.status, r.sent) for r in log] == [(200, len(BODY)), (304, 0)]
    assert log[1].headers["if-none-match"] == '"v1"'
    stats = source.statistics()
    assert (stats.downloads, stats.not_modified) == (1, 1)
    assert await files(await source.snapshot(spec, second)) == {
        "file.txt": (BODY, 0o600, 0.0, 0, 0)
    }
    # a changed file: a new download and a new key
    server.add("file.txt", b"changed\n", etag='"v2"')
    third = await source.resolve_file(spec)
    assert third.digest != first.digest
    assert HttpSource.cache_key(spec, third) != HttpSource.cache_key(spec, first)
    assert server.requests_for("file.txt")[-1].status == 200


async def test_weak_etags_and_a_304_without_etag(
    source: HttpSource, server: HttpTestServer
) -> None:
    server.add("w", BODY, etag='W/"weak"')
    spec = HttpSpec.create(server.url("w"))
    first = await source.resolve_file(spec)
    assert await source.resolve_file(spec) == first
    assert [r.status for r in server.requests_for("w")] == [200, 304]


async def test_last_modified_revalidation(source: HttpSource, server: HttpTestServer) -> None:
    server.add("dated", BODY, last_modified=MODIFIED)
    spec = HttpSpec.create(server.url("dated"))
    first = await source.resolve_file(spec)
    assert first.last_modified == MODIFIED
    assert await source.resolve_file(spec) == first
    log = server.requests_for("dated")
    assert [r.status for r in log] == [200, 304]
    assert log[1].headers["if-modified-since"] == MODIFIED


async def test_pruned_record_is_downloaded_again(
    source: HttpSource, server: HttpTestServer, cache: CacheManager
) -> None:
    server.add("file.txt", BODY, etag='"v1"')
    spec = HttpSpec.create(server.url("file.txt"))
    first = await source.resolve_file(spec)
    await cache.prune(all=True)
    again = await source.resolve_file(spec)  # no validators left: a plain GET
    assert again.digest == first.digest
    assert [r.status for r in server.requests_for("file.txt")] == [200, 200]
    assert "if-none-match" not in server.requests_for("file.txt")[1].headers


async def test_redirects(source: HttpSource, server: HttpTestServer) -> None:
    server.add("real/file.bin", BODY)
    server.redirect("a", server.url("b"), status=301)
    server.redirect("b", server.url("real/file.bin"), status=307)
    _, ref = await source.fetch(HttpSpec.create(server.url("a")))
    assert await files(ref) == {"a": (BODY, 0o600, 0.0, 0, 0)}  # named by the URL asked for
    server.redirect("loop", server.url("loop"))
    with pytest.raises(DockyardError, match="more than 10 redirects"):
        await source.fetch(HttpSpec.create(server.url("loop")))


async def test_truncated_body_is_retried(source: HttpSource, server: HttpTestServer) -> None:
    server.add("big", BODY * 10_000, truncate=1)
    file, ref = await source.fetch(HttpSpec.create(server.url("big")))
    assert file.digest == "sha256:" + hashlib.sha256(BODY * 10_000).hexdigest()
    await ref.release()
    assert [r.sent for r in server.requests_for("big")] == [len(BODY) * 5_000, len(BODY) * 10_000]
    assert source.statistics().retries == 1


async def test_a_server_that_keeps_dropping_gives_a_clear_error(
    source: HttpSource, server: HttpTestServer, cache: CacheManager
) -> None:
    server.add("flaky", BODY * 100, truncate=10)
    with pytest.raises(DockyardError) as info:
        await source.fetch(HttpSpec.create(server.url("flaky")))
    message = str(info.value)
    assert message.startswith(f"downloading {server.url('flaky')} failed after 3 attempts: ")
    assert "closed before the whole body arrived" in message or "truncated" in message
    assert len(server.requests_for("flaky")) == 3
    assert await cache.du() == []  # nothing half-written kept
    server.add("dropped", BODY, drop=1)
    _, ref = await source.fetch(HttpSpec.create(server.url("dropped")))
    await ref.release()
    assert [r.status for r in server.requests_for("dropped")] == [0, 200]


async def test_status_errors(source: HttpSource, server: HttpTestServer) -> None:
    with pytest.raises(NotFoundError, match=r"not found \(HTTP 404 Not Found\)"):
        await source.fetch(HttpSpec.create(server.url("missing")))
    assert len(server.requests_for("missing")) == 1  # not retried
    server.add("busy", BODY, status=503)
    with pytest.raises(DockyardError, match="failed after 3 attempts: HTTP 503"):
        await source.fetch(HttpSpec.create(server.url("busy")))
    server.add("forbidden", BODY, status=403)
    with pytest.raises(DockyardError, match="HTTP 403 Forbidden"):
        await source.fetch(HttpSpec.create(server.url("forbidden")))


async def test_size_and_time_limits(cache: CacheManager, server: HttpTestServer) -> None:
    server.add("big", BODY * 100)
    small = HttpSource(cache=cache, limits=HttpLimits(max_size=100))
    with pytest.raises(DockyardError, match="more than the limit of 100 bytes"):
        await small.fetch(HttpSpec.create(server.url("big")))
    server.add("slow", BODY * 4, chunk=len(BODY), delay=0.3)
    hasty = HttpSource(cache=cache, limits=HttpLimits(total_timeout=0.5))
    with pytest.raises(DockyardError, match=r"took longer than 0\.5s"):
        await hasty.fetch(HttpSpec.create(server.url("slow")))
    assert await cache.du() == []


async def test_checksum_mismatch_is_refused_and_nothing_kept(
    source: HttpSource, server: HttpTestServer, cache: CacheManager
) -> None:
    server.add("file.txt", BODY)
    wrong = "sha256:" + "0" * 64
    spec = HttpSpec.create(server.url("file.txt"), checksum=wrong)
    pinned = await source.resolve_file(spec)  # a pin needs no network to name the content
    assert server.requests == []
    with pytest.raises(ContentError) as info:
        await source.snapshot(spec, pinned)
    assert str(info.value) == (
        f"digest mismatch for {server.url('file.txt')}: {SHA} (expected: {wrong})"
    )
    assert await cache.du() == []


async def test_a_pin_reuses_a_stored_download(source: HttpSource, server: HttpTestServer) -> None:
    server.add("file.txt", BODY)
    spec = HttpSpec.create(server.url("file.txt"), checksum=SHA)
    file, ref = await source.fetch(spec)
    await ref.release()
    _, ref = await source.fetch(spec)
    assert await files(ref) == {"file.txt": (BODY, 0o600, 0.0, 0, 0)}
    assert len(server.requests_for("file.txt")) == 1
    assert file.record is None  # the pin named the content without a download


async def test_sha512_pins(source: HttpSource, server: HttpTestServer) -> None:
    server.add("file.txt", BODY)
    pin = "sha512:" + hashlib.sha512(BODY).hexdigest()
    _, ref = await source.fetch(HttpSpec.create(server.url("file.txt"), checksum=pin))
    await ref.release()


class Secrets:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    async def get(self, id: str) -> bytes:
        try:
            return self.values[id]
        except KeyError:
            raise NotFoundError(f"secret {id!r} not found") from None


SECRETS: JobValue[Secrets] = JobValue("test.http.secrets")


async def test_credentials_from_secrets(cache: CacheManager, server: HttpTestServer) -> None:
    server.add("private", BODY, require_auth="Bearer t0ken")
    source = HttpSource(cache=cache, secrets_key=SECRETS)  # type: ignore[arg-type]
    with pytest.raises(DockyardError, match="HTTP 401"):
        await source.fetch(HttpSpec.create(server.url("private")))
    token = Secrets({"HTTP_AUTH_TOKEN_127.0.0.1": b"t0ken"})
    file, ref = await source.fetch(HttpSpec.create(server.url("private")), secrets=[token])
    await ref.release()
    header = Secrets({"MY_HEADER": b"Bearer t0ken"})
    spec = HttpSpec.create(server.url("private"), auth_header_secret="MY_HEADER")
    _, ref = await source.fetch(spec, secrets=[header])
    await ref.release()
    with pytest.raises(NotFoundError, match="secret 'MY_HEADER' for the Authorization header"):
        await source.fetch(spec, secrets=[Secrets({})])
    assert "t0ken" not in HttpSource.cache_key(spec, file)
    for record in await cache.du():
        ref = await cache.get(record.id)
        assert all("t0ken" not in v for v in ref.labels.values())
        assert "t0ken" not in record.description
        await ref.release()


async def test_credentials_in_the_url_are_masked_in_errors(
    source: HttpSource, server: HttpTestServer
) -> None:
    with pytest.raises(NotFoundError) as info:
        await source.fetch(HttpSpec.create(server.url("nothing", userinfo="me:s3cret")))
    assert "s3cret" not in str(info.value)
    assert "me:xxxxx@" in str(info.value)


async def test_instance_reports_progress(cache: CacheManager, server: HttpTestServer) -> None:
    server.add("file.txt", BODY, etag='"e"')
    source = HttpSource(cache=cache, secrets_key=SECRETS)  # type: ignore[arg-type]
    reporter = CollectingReporter()
    vertex = Vertex(digest="sha256:test", name="http", op=None)  # type: ignore[arg-type]
    ctx = VertexContext.detached(vertex, reporter=reporter, values={SECRETS: Secrets({})})
    request = request_of(llb.http(server.url("file.txt")))
    instance = await source.resolve(request, ctx)
    key = await instance.cache_key(ctx)
    ref = await instance.snapshot(ctx)
    assert (await files(ref))["file.txt"][0] == BODY
    done = [e for e in reporter.events if isinstance(e, VertexProgress) and e.completed]
    assert done[-1].current == len(BODY)
    # a second op on the same URL: a 304 and the same key
    again = await source.resolve(request, ctx)
    assert await again.cache_key(ctx) == key
    assert server.requests_for("file.txt")[-1].status == 304


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    source: HttpSource, server: HttpTestServer
) -> None:
    with HttpTestServer() as elsewhere:
        elsewhere.add("file.txt", BODY)
        server.add("r", status=302, location=elsewhere.url("file.txt"), require_auth="Bearer t0k")
        token = Secrets({"HTTP_AUTH_TOKEN_127.0.0.1": b"t0k"})
        _, ref = await source.fetch(HttpSpec.create(server.url("r")), secrets=[token])
        await ref.release()
        assert server.requests_for("r")[0].headers["authorization"] == "Bearer t0k"
        assert "authorization" not in elsewhere.requests_for("file.txt")[0].headers


async def test_the_environments_proxy_is_used_by_the_registry_clients_rule(
    source: HttpSource, server: HttpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add("dl/tool.sh", BODY)
    with ForwardProxy(names=("files.test",)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        url = server.url("dl/tool.sh").replace("127.0.0.1", "files.test")
        _, ref = await source.fetch(HttpSpec.create(url))
        assert (await files(ref))["tool.sh"][0] == BODY
        assert proxy.seen == [("GET", url)]
        # a loopback address never goes through the proxy (httpx's own reading would)
        server.add("direct", BODY)
        _, ref = await source.fetch(HttpSpec.create(server.url("direct")))
        assert (await files(ref))["direct"][0] == BODY
        assert len(proxy.seen) == 1


@pytest.mark.parametrize(
    ("disposition", "message"),
    [
        ("attachment; filename*=UTF-8''a%00b", r"named 'a\\x00b': embedded null byte"),
        (f'attachment; filename="{"n" * 300}"', "named 'n+': File name too long"),
    ],
)
async def test_a_server_named_file_that_cannot_be_made_is_a_clear_error(
    source: HttpSource, server: HttpTestServer, disposition: str, message: str
) -> None:
    server.add("dl", BODY, headers={"Content-Disposition": disposition})
    with pytest.raises(DockyardError, match="cannot create a file " + message) as info:
        await source.fetch(HttpSpec.create(server.url("dl")))
    assert not isinstance(info.value, InternalError)
