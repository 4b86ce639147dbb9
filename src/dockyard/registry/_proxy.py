"""The registry client's httpx transport for HTTP proxies (see ``_proxyenv``).

httpx reads the proxy environment only for a client made without a transport of its
own, and the registry client brings one (``_network.closing_transport``). So the
environment's rule is applied here, per request: :class:`ProxyRouter` sends a request to
``direct`` or to a transport through its proxy (made on first use; the registry's TLS
settings serve the connection tunnelled through it).

Imported lazily with httpx (see ``_http``).
"""

from __future__ import annotations

import ssl

import httpx

from ._proxyenv import ProxyConfig

__all__ = ["ProxyRouter"]


class ProxyRouter(httpx.AsyncBaseTransport):
    """``direct`` for requests :class:`ProxyConfig` keeps direct, else a transport through
    their proxy (made on first use, TLS to the registry with ``context``)."""

    def __init__(
        self, direct: httpx.AsyncBaseTransport, config: ProxyConfig, context: ssl.SSLContext
    ) -> None:
        self.direct = direct
        self.config = config
        self._context = context
        self._proxied: dict[str, httpx.AsyncBaseTransport] = {}

    def proxy_for(self, url: httpx.URL) -> str | None:
        return self.config.proxy_for(url.scheme, url.host, url.port)

    def _transport(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        proxy = self.proxy_for(url)
        if proxy is None:
            return self.direct
        transport = self._proxied.get(proxy)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(proxy=httpx.Proxy(proxy), verify=self._context)
            self._proxied[proxy] = transport
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        transports = [self.direct, *self._proxied.values()]
        self._proxied.clear()
        for transport in transports:
            await transport.aclose()
