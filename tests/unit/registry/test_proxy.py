"""HTTP proxies from the environment (``registry/_proxyenv.py``, ``_proxy.py``): which
requests go through one (Go's rule, as BuildKit's), and real requests through a
loopback forward proxy for a registry named ``registry.test``, which only the proxy
reaches (it stands for 127.0.0.1 there; nothing here resolves the name)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dockyard.registry import BytesSink, HostConfig, RegistryClient, RegistryConfig, _direct
from dockyard.registry._proxyenv import ProxyConfig
from dockyard.registry._tagcheck import TagCheck, tag_unchanged
from dockyard.testing.httpserver import ForwardProxy

from .blobserver import BlobServer
from .test_direct import FAST, blob, descriptor

MIB = 1 << 20
NAME = "registry.test"


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "https://r.example.com/v2/", None),
        ({"HTTPS_PROXY": "proxy:3128"}, "https://r.example.com/v2/", "http://proxy:3128"),
        ({"https_proxy": "http://p:1"}, "https://r.example.com/v2/", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1"}, "http://r.example.com/v2/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://r.example.com/v2/", "http://p:1"),
        ({"HTTP_PROXY": "http://U:p", "http_proxy": "http://l:p"}, "http://r/", "http://U:p"),
        ({"ALL_PROXY": "http://p:1"}, "http://r.example.com/v2/", None),  # not read (Go)
        # never proxied: localhost and loopback addresses
        ({"HTTP_PROXY": "http://p:1"}, "http://localhost:5000/v2/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://127.0.0.1:5000/v2/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://127.3.2.1:5000/v2/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://[::1]:5000/v2/", None),
        # NO_PROXY: *, domains (and subdomains), .domains (subdomains only), IPs, CIDRs, ports
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "*"}, "http://r.example.com/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "example.com"}, "http://example.com/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "example.com"}, "http://r.example.com/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "example.com"}, "http://rexample.com/", "http://p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": ".example.com"}, "http://example.com/", "http://p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": ".example.com"}, "http://a.example.com/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "*.example.com"}, "http://example.com/", "http://p:1"),
        ({"HTTP_PROXY": "p:1", "no_proxy": " a.org , Example.COM "}, "http://x.example.com/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "10.0.0.0/8"}, "http://10.1.2.3:5000/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "10.0.0.0/8"}, "http://11.1.2.3:5000/", "http://p:1"),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "192.0.2.7"}, "http://192.0.2.7/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "2001:db8::/32"}, "http://[2001:db8::5]/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "r.org:5000"}, "http://r.org:5000/", None),
        ({"HTTP_PROXY": "p:1", "NO_PROXY": "r.org:5000"}, "http://r.org/", "http://p:1"),
        ({"HTTPS_PROXY": "p:1", "NO_PROXY": "r.org:443"}, "https://r.org/", None),
    ],
)
def test_which_requests_go_through_a_proxy(
    env: dict[str, str], url: str, expected: str | None
) -> None:
    parts = httpx.URL(url)
    config = ProxyConfig.from_environment(env)
    assert config.proxy_for(parts.scheme, parts.host, parts.port) == expected


def test_no_proxy_set_reads_nothing_more() -> None:
    config = ProxyConfig.from_environment({"NO_PROXY": "a.org"})
    assert not config
    assert config.proxy_for("https", "r.example.com", None) is None


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(names=(NAME,)) as running:
        yield running


def proxied_client(server: BlobServer) -> RegistryClient:
    host = f"{NAME}:{server.port}"
    return RegistryClient(config=RegistryConfig(hosts={host: HostConfig(http=True)}), retry=FAST)


async def test_blobs_come_through_the_proxy(
    server: BlobServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    direct: list[str] = []
    real = _direct.direct_get

    async def counting(url: httpx.URL, *args: object, **kwargs: object) -> object:
        direct.append(str(url))
        return await real(url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_direct, "direct_get", counting)
    small, large = blob(1000), blob(3 * MIB)  # httpx's path and the direct path's size
    for data in (small, large):
        server.add(data)
    async with proxied_client(server) as client:
        for data in (small, large):
            sink = BytesSink()
            await client.fetch_blob(f"{NAME}:{server.port}/app:v1", descriptor(data), sink)
            assert sink.data == data
    got = [url for method, url in proxy.seen if method == "GET" and "/blobs/" in url]
    assert len(got) == 2
    assert all(url.startswith(f"http://{NAME}:{server.port}/v2/app/blobs/") for url in got)
    assert direct == []  # a proxied request never takes the direct path


async def test_loopback_registries_are_not_proxied(
    server: BlobServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    data = blob(2 * MIB)
    server.add(data)
    config = RegistryConfig(hosts={server.host: HostConfig(http=True)})
    async with RegistryClient(config=config, retry=FAST) as client:
        sink = BytesSink()
        await client.fetch_blob(f"{server.host}/app:v1", descriptor(data), sink)
    assert sink.data == data


def test_the_tag_check_goes_through_the_proxy(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "sha256:" + "ab" * 32
    path = "/v2/app/manifests/v1"
    proxy.heads[path] = (200, {"Docker-Content-Digest": digest})
    url = f"http://{NAME}:5000{path}"
    check = TagCheck(
        reference=f"{NAME}:5000/app:v1",
        urls=(url,),
        verify=True,
        digest=digest,
        scope="repository:app:pull",
    )
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert tag_unchanged(check)
    assert proxy.seen == [("HEAD", url)]
    proxy.heads[path] = (200, {"Docker-Content-Digest": "sha256:" + "cd" * 32})
    assert not tag_unchanged(check)
