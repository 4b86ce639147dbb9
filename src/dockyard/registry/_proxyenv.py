"""HTTP proxies from the environment, as Go programs (and so BuildKit) read them.

A registry request goes through ``HTTPS_PROXY`` (https URLs) or ``HTTP_PROXY`` (http
URLs), upper- or lower-case, unless ``NO_PROXY`` names its host: ``*`` (nothing is
proxied), an IP address, a CIDR range (``10.0.0.0/8``), a domain (``example.com``: it
and its subdomains; ``.example.com`` or ``*.example.com``: its subdomains only), each
optionally with ``:port``. ``localhost`` and loopback addresses are never proxied. A
proxy given without a scheme is ``http://``. ``ALL_PROXY`` is not read (Go does not).

Standard library only (the tag check of a no-op rebuild reads it without httpx);
``ipaddress`` is imported only when a proxy is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ipaddress

__all__ = ["ProxyConfig"]


def _env(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name.upper()) or environ.get(name.lower()) or "").strip()


@dataclass(frozen=True, slots=True)
class _NoProxy:
    """One ``NO_PROXY`` entry."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    domain: str = ""  # lower-case, no leading dot
    subdomains_only: bool = False
    port: int | None = None

    def matches(
        self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int
    ) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip is not None and ip in self.network
        if host == self.domain:
            return not self.subdomains_only
        return host.endswith("." + self.domain)


def _parse_no_proxy(text: str) -> tuple[bool, tuple[_NoProxy, ...]]:
    """``(everything, entries)`` of a ``NO_PROXY`` value."""
    entries: list[_NoProxy] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "*":
            return True, ()
        import ipaddress

        try:  # a CIDR range or an address, IPv6 possibly in brackets
            entries.append(_NoProxy(network=ipaddress.ip_network(item.strip("[]"), strict=False)))
            continue
        except ValueError:
            pass
        port: int | None = None
        host = item
        if item.startswith("["):  # [v6]:port
            inside, _, rest = item[1:].partition("]")
            host = inside
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif item.count(":") == 1:
            name, _, number = item.partition(":")
            if number.isdigit():
                host, port = name, int(number)
        try:
            entries.append(_NoProxy(network=ipaddress.ip_network(host, strict=False), port=port))
            continue
        except ValueError:
            pass
        subdomains_only = host.startswith((".", "*."))  # Go reads "*.y.com" as ".y.com"
        host = host.removeprefix("*").lstrip(".")
        if host:
            entries.append(_NoProxy(domain=host, subdomains_only=subdomains_only, port=port))
    return False, tuple(entries)


def _proxy_url(value: str) -> str:
    return value if "://" in value else f"http://{value}"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Which proxy, if any, a request goes through (see the module docstring)."""

    http: str = ""
    https: str = ""
    no_proxy_all: bool = False
    no_proxy: tuple[_NoProxy, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if environ is None else environ
        http, https = _env(env, "HTTP_PROXY"), _env(env, "HTTPS_PROXY")
        if not http and not https:
            return cls()  # the common case: nothing more to read
        everything, entries = _parse_no_proxy(_env(env, "NO_PROXY"))
        return cls(
            http=_proxy_url(http) if http else "",
            https=_proxy_url(https) if https else "",
            no_proxy_all=everything,
            no_proxy=entries,
        )

    def __bool__(self) -> bool:
        return bool(self.http or self.https) and not self.no_proxy_all

    def proxy_for(self, scheme: str, host: str, port: int | None) -> str | None:
        """The proxy URL for a request to ``scheme://host:port``, or ``None`` to connect
        directly (``port``: ``None`` for the scheme's default)."""
        proxy = self.https if scheme == "https" else self.http if scheme == "http" else ""
        if not proxy or self.no_proxy_all:
            return None
        import ipaddress

        host = host.lower().strip("[]").rstrip(".")
        if host == "localhost":
            return None
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return None
        port = port or (443 if scheme == "https" else 80)
        if any(entry.matches(host, ip, port) for entry in self.no_proxy):
            return None
        return proxy
