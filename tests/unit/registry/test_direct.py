"""Blob downloads over the direct path (``registry/_direct.py``): a blocking connection
in a thread of its own, against a loopback registry on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.core import AuthError, ContentError, NotFoundError, RegistryError
from dockyard.oci import Descriptor, MediaType
from dockyard.registry import (
    BytesSink,
    Credentials,
    FileSink,
    HostConfig,
    RegistryClient,
    RegistryConfig,
    RetryPolicy,
    StaticCredentials,
    _direct,
    _download,
)
from dockyard.testing.registry import make_tls

from .blobserver import BlobServer, socket_open_from

MIB = 1 << 20
FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05, jitter=0)


def blob(size: int) -> bytes:
    return os.urandom(size)


def descriptor(data: bytes) -> Descriptor:
    return Descriptor.of(MediaType.OCI_LAYER_GZIP, data)


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the direct path was asked for (it is used, not silently skipped)."""
    calls: list[str] = []
    real = _direct.direct_get

    async def counting(url: httpx.URL, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(url))
        return await real(url, *args, **kwargs)

    monkeypatch.setattr(_direct, "direct_get", counting)
    return calls


def client_for(*servers: BlobServer, **kwargs: Any) -> RegistryClient:
    hosts = {s.host: HostConfig(http=s.tls is None) for s in servers}
    return RegistryClient(
        config=kwargs.pop("config", RegistryConfig(hosts=hosts)), retry=FAST, **kwargs
    )


def blob_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "blob-download"]


async def fetch(client: RegistryClient, server: BlobServer, data: bytes) -> bytes:
    sink = BytesSink()
    await client.fetch_blob(f"{server.host}/app:v1", descriptor(data), sink)
    assert sink.data is not None
    return sink.data


async def test_a_content_length_body_arrives_whole(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(3 * MIB + 12345)
    server.add(data)
    progress: list[int] = []
    sink = BytesSink()
    async with client_for(server) as client:
        await client.fetch_blob(
            f"{server.host}/app:v1", descriptor(data), sink, on_progress=progress.append
        )
        stats = client.statistics()
    assert sink.data == data
    assert len(direct_calls) == 1
    assert progress
    assert progress[-1] == len(data)
    assert progress == sorted(progress)
    assert stats.bytes_received == len(data)
    (get,) = server.blob_gets()
    assert get.headers["accept-encoding"] == "identity"
    assert get.headers["user-agent"].startswith("dockyard/")
    assert "range" not in get.headers
    assert blob_threads() == []


async def test_a_body_sent_in_small_uneven_pieces(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(2 * MIB + 7)
    server.add(data)
    server.piece = 1000
    server.pause = 0.02  # the first pieces trickle in
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
    assert len(direct_calls) == 1


async def test_the_next_blob_reuses_the_connection(
    server: BlobServer, direct_calls: list[str]
) -> None:
    one, two = blob(2 * MIB), blob(MIB + 1)
    server.add(one)
    server.add(two)
    async with client_for(server) as client:
        assert await fetch(client, server, one) == one
        assert await fetch(client, server, two) == two
        first, second = server.blob_gets()
        assert first.client_port == second.client_port  # one connection, kept alive
        assert first.headers["connection"] == "keep-alive"
    # closing the client closes the idle connection
    assert not socket_open_from(first.client_port)
    assert len(direct_calls) == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    server: BlobServer,
) -> None:
    one, two = blob(2 * MIB), blob(MIB + 1)
    server.add(one)
    server.add(two)
    server.hangup = 1
    async with client_for(server) as client:
        assert await fetch(client, server, one) == one
        assert await fetch(client, server, two) == two
        assert client.statistics().retries == 0
    first, second = server.blob_gets()
    assert first.client_port != second.client_port


async def test_a_reused_connection_closed_at_the_request_is_replaced(
    server: BlobServer,
) -> None:
    one, two = blob(2 * MIB), blob(MIB + 1)
    server.add(one)
    server.add(two)
    server.drop_reused = 1
    async with client_for(server) as client:
        assert await fetch(client, server, one) == one
        assert await fetch(client, server, two) == two
        assert client.statistics().retries == 0
    gets = server.blob_gets()
    assert len(gets) == 3  # the dropped one, then the same GET on a new connection
    assert gets[0].client_port == gets[1].client_port != gets[2].client_port


async def test_a_redirected_download_keeps_both_connections_for_the_next(
    server: BlobServer,
) -> None:
    storage = BlobServer().start()
    try:
        one, two = blob(2 * MIB), blob(MIB + 1)
        storage.add(one)
        storage.add(two)
        server.redirect_to = storage.base
        async with client_for(server, storage) as client:
            assert await fetch(client, server, one) == one
            assert await fetch(client, server, two) == two
        asked = server.blob_gets()
        served = storage.blob_gets()
        assert asked[0].client_port == asked[1].client_port
        assert served[0].client_port == served[1].client_port
    finally:
        storage.stop()


async def test_small_blobs_keep_the_pooled_httpx_connection(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(_direct.DIRECT_MIN_SIZE - 1)
    server.add(data)
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
    assert direct_calls == []


async def test_a_connection_closed_early_resumes_with_a_range(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(3 * MIB)
    server.add(data)
    server.cut = 2
    server.cut_at = MIB + 1000
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
        stats = client.statistics()
    assert stats.resumed_downloads == 2
    ranges = [g.headers.get("range") for g in server.blob_gets()]
    assert ranges[0] is None
    assert ranges[1] is not None
    assert ranges[2] is not None
    first, second = int(ranges[1][6:-1]), int(ranges[2][6:-1])
    assert 0 < first <= MIB + 1000
    assert first < second
    assert len(direct_calls) == 3


async def test_a_registry_ignoring_the_range_starts_over(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.cut = 1
    server.honor_range = False
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
        assert client.statistics().restarted_downloads == 1


async def test_a_body_that_keeps_breaking_fails_and_leaves_nothing(
    server: BlobServer, tmp_path: Path
) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.cut = 100
    server.cut_at = 1000
    out = tmp_path / "out"
    out.mkdir()
    async with client_for(server) as client:
        with pytest.raises(RegistryError, match=r"download from registry .* the connection"):
            await client.fetch_blob(f"{server.host}/app:v1", descriptor(data), FileSink(out / "b"))
    assert list(out.iterdir()) == []
    assert blob_threads() == []


async def test_server_errors_are_retried(server: BlobServer, direct_calls: list[str]) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.fail = [503, 502]
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
        assert client.statistics().retries >= 2
    assert len(direct_calls) == 3


async def test_a_missing_blob_is_not_found(server: BlobServer) -> None:
    data = blob(2 * MIB)
    async with client_for(server) as client:
        with pytest.raises(NotFoundError, match=f"blob {descriptor(data).digest} .* not found"):
            await fetch(client, server, data)


async def test_a_refusal_names_the_registry_detail(server: BlobServer) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.fail = [400]
    async with client_for(server) as client:
        with pytest.raises(RegistryError, match=r"400 .*X"):
            await fetch(client, server, data)


async def test_an_unexpected_success_status_is_an_error(server: BlobServer) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.fail = [203]
    async with client_for(server) as client:
        with pytest.raises(RegistryError, match="answered 203"):
            await fetch(client, server, data)


async def test_a_wrong_digest_fails_naming_it_and_leaves_nothing(
    server: BlobServer, tmp_path: Path, direct_calls: list[str]
) -> None:
    data = blob(2 * MIB)
    digest = server.add(data)
    server.blobs[str(digest)] = data[:-1] + bytes([data[-1] ^ 1])  # same size, other bytes
    out = tmp_path / "out"
    out.mkdir()
    async with client_for(server) as client:
        with pytest.raises(ContentError, match=f"blob {digest} .*does not match its digest"):
            await client.fetch_blob(f"{server.host}/app:v1", descriptor(data), FileSink(out / "b"))
    assert list(out.iterdir()) == []
    assert len(direct_calls) == 1


async def test_a_redirect_to_another_host_drops_the_authorization(
    server: BlobServer, direct_calls: list[str]
) -> None:
    storage = BlobServer().start()
    try:
        data = blob(2 * MIB)
        storage.add(data)
        server.auth = "basic"
        server.redirect_to = storage.base
        creds = StaticCredentials({server.host: Credentials(username="user", password="pass")})
        async with client_for(server, storage, credentials=creds) as client:
            assert await fetch(client, server, data) == data
        (asked,) = server.blob_gets()
        assert asked.headers["authorization"].startswith("Basic ")
        (served,) = storage.blob_gets()
        assert "authorization" not in served.headers
        assert served.headers["host"] == storage.host
        assert [u.split("/v2/")[0] for u in direct_calls] == [server.base]
    finally:
        storage.stop()


async def test_a_redirect_on_the_same_host_keeps_the_authorization(
    server: BlobServer,
) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.auth = "basic"
    server.redirect_to = server.base + "/moved"  # /moved/v2/...: not a blob path, a 404
    creds = StaticCredentials({server.host: Credentials(username="user", password="pass")})
    async with client_for(server, credentials=creds) as client:
        with pytest.raises(NotFoundError, match="not found"):
            await fetch(client, server, data)
    moved = [s for s in server.seen if s.path.startswith("/moved/")]
    assert moved
    assert moved[0].headers["authorization"].startswith("Basic ")


async def test_an_expired_token_is_refreshed_on_401(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.auth = "bearer"
    server.expire_first_blob_token = True
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
    first, second = server.blob_gets()
    assert first.headers["authorization"] == "Bearer token-1"
    assert second.headers["authorization"] == "Bearer token-2"
    assert len(direct_calls) == 2


async def test_wrong_credentials_are_refused(server: BlobServer) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.auth = "basic"
    creds = StaticCredentials({server.host: Credentials(username="user", password="wrong")})
    async with client_for(server, credentials=creds) as client:
        with pytest.raises(AuthError, match="credentials of user 'user' were refused"):
            await fetch(client, server, data)


async def test_a_cancelled_download_closes_its_socket_and_thread(
    server: BlobServer, tmp_path: Path
) -> None:
    data = blob(4 * MIB)
    server.add(data)
    server.stall = 1
    server.stall_at = 2 * MIB
    got_some = asyncio.Event()
    out = tmp_path / "out"
    out.mkdir()

    def on_progress(n: int) -> None:
        got_some.set()

    async with client_for(server) as client:
        task = asyncio.create_task(
            client.fetch_blob(
                f"{server.host}/app:v1",
                descriptor(data),
                FileSink(out / "b"),
                on_progress=on_progress,
            )
        )
        await asyncio.wait_for(got_some.wait(), 10)
        assert blob_threads()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the thread is gone and the socket closed by the time the task ended
        assert blob_threads() == []
        (get,) = server.blob_gets()
        assert not socket_open_from(get.client_port)
        assert await asyncio.to_thread(server.disconnected.wait, 10)
    assert list(out.iterdir()) == []


async def test_a_download_cancelled_while_connecting_ends(server: BlobServer) -> None:
    """The blob GET is redirected to a listener whose backlog is full: the thread's
    connect hangs until the cancellation shuts its socket down."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            with contextlib.suppress(OSError):
                filler.connect(("127.0.0.1", port))
        data = blob(2 * MIB)
        server.add(data)
        server.redirect_to = f"http://127.0.0.1:{port}"
        config = RegistryConfig(hosts={server.host: HostConfig(http=True)})
        async with RegistryClient(config=config, retry=FAST) as client:
            task = asyncio.create_task(fetch(client, server, data))
            for _ in range(500):  # until the redirect was followed
                if blob_threads() and server.blob_gets():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # in connect() by now
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert blob_threads() == []
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_stalled_body_times_out_and_resumes(server: BlobServer) -> None:
    data = blob(3 * MIB)
    server.add(data)
    server.hang = 3.0
    server.stall_at = MIB
    async with client_for(server, timeout=0.5) as client:
        assert await fetch(client, server, data) == data
        assert client.statistics().resumed_downloads == 1


async def test_a_body_stalled_past_the_timeout_says_so(server: BlobServer) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.hang = 2.0
    server.stall_at = MIB
    config = RegistryConfig(hosts={server.host: HostConfig(http=True)})
    once = RetryPolicy(attempts=1)
    async with RegistryClient(config=config, retry=once, timeout=0.3) as client:
        with pytest.raises(RegistryError, match=r"broke after \d+ bytes \(timed out after 0.3 s\)"):
            await fetch(client, server, data)


async def test_a_chunked_answer_falls_back_to_httpx(
    server: BlobServer, direct_calls: list[str]
) -> None:
    data = blob(2 * MIB)
    server.add(data)
    server.chunked = True
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
        assert await fetch(client, server, data) == data  # straight to httpx now
    assert len(direct_calls) == 1
    assert len(server.blob_gets()) == 3


async def test_a_url_httpx_would_proxy_keeps_httpx(
    server: BlobServer, direct_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_direct, "proxied", lambda client, url: True)
    data = blob(2 * MIB)
    server.add(data)
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
    assert direct_calls == []
    assert len(server.blob_gets()) == 1


async def test_environment_proxies_are_ignored_as_by_the_httpx_client(
    server: BlobServer, direct_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry client's httpx client has a transport of its own, which turns
    environment proxies off; the direct path goes the same way (straight)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "")
    data = blob(2 * MIB)
    server.add(data)
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
    assert len(direct_calls) == 1


async def test_the_switch_turns_the_direct_path_off(
    server: BlobServer, direct_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_download, "DIRECT", False)
    data = blob(2 * MIB)
    server.add(data)
    async with client_for(server) as client:
        assert await fetch(client, server, data) == data
    assert direct_calls == []


async def test_over_tls_with_the_configured_ca(tmp_path: Path, direct_calls: list[str]) -> None:
    files = make_tls(tmp_path / "tls")
    tls_server = BlobServer(tls=(files.cert, files.key)).start()
    try:
        data = blob(3 * MIB + 5)
        tls_server.add(data)
        config = RegistryConfig(hosts={tls_server.host: HostConfig(ca_files=(files.ca_cert,))})
        tls_server.cut = 1
        async with RegistryClient(config=config, retry=FAST) as client:
            assert await fetch(client, tls_server, data) == data
            assert client.statistics().resumed_downloads == 1
        assert all(u.startswith("https://") for u in direct_calls)
        assert len(direct_calls) == 2
    finally:
        tls_server.stop()


async def test_httpx_still_has_what_proxied_reads() -> None:
    """``proxied`` reads two private names of httpx's client; a new httpx that moves them
    must fail here rather than send proxied requests straight to the host."""
    plain = httpx.AsyncClient()
    through = httpx.AsyncClient(proxy="http://127.0.0.1:9")
    url = httpx.URL("http://registry.test/v2/")
    try:
        assert hasattr(plain, "_transport_for_url")
        assert hasattr(plain, "_transport")
        assert not _direct.proxied(plain, url)
        assert _direct.proxied(through, url)
    finally:
        await plain.aclose()
        await through.aclose()


async def test_header_values_with_line_breaks_are_not_sent_directly() -> None:
    with pytest.raises(_direct.DirectUnsupported):
        _direct._request_bytes(httpx.URL("http://h/v2/"), {"Authorization": "Bearer a\r\nX: y"})


def test_the_pool_keeps_a_few_fresh_connections_per_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = _direct.DirectPool()
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pairs = [socket.socketpair() for _ in range(6)]
    try:
        for ours, _ in pairs[:5]:
            pool.give(("http", "a", 80, 1), ours)
        assert pairs[4][0].fileno() == -1  # a fifth idle connection to one origin is closed
        taken = pool.take(("http", "a", 80, 1))
        assert taken is pairs[3][0]
        pairs[2][1].close()  # the server side of an idle one went away: not reused
        assert pool.take(("http", "a", 80, 1)) is pairs[1][0]
        assert pairs[2][0].fileno() == -1
        now[0] += 31  # the rest expired; giving another back drops them
        pool.give(("http", "b", 80, 1), pairs[5][0])
        assert pairs[0][0].fileno() == -1
        assert pool.take(("http", "a", 80, 1)) is None
        pool.close()
        assert pairs[5][0].fileno() == -1
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
