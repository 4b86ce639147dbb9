"""Is a tag still where a build found it? One ``HEAD`` of its manifest, with the
standard library only.

``dockyard build`` replays a build that changed nothing (:mod:`dockyard.cli._memo`) only
if every base image it resolved in a registry would resolve to the same digest again —
the question BuildKit asks the registry on every build. Asked through the registry
client, the question would cost more to import (httpx) than the whole replay, so
:func:`tag_unchanged` asks it with ``http.client``: anonymously (a bearer token fetched
without credentials when the registry challenges), over the schemes the registry's
settings allow, in order, through the environment's HTTP proxy when one applies
(``_proxyenv``, as the registry client). Any doubt — an error, a redirect, credentials
needed, no digest header — is a "no": the build then runs and asks properly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from ._config import RegistryConfig
    from ._reference import Reference

__all__ = ["TagCheck", "tag_check", "tag_unchanged"]

_TIMEOUT = 5.0
#: dockyard.oci.MediaType.ACCEPT_MANIFESTS (a test keeps them equal; written here so
#: that a replay loads no OCI model)
ACCEPT_MANIFESTS = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TagCheck:
    """``reference``'s tag must still point at ``digest``: its manifest at ``urls`` (one
    per scheme to try, in order; TLS certificates verified when ``verify``), the token
    scope ``scope`` when the registry wants one."""

    reference: str
    urls: tuple[str, ...]
    verify: bool
    digest: str
    scope: str


def tag_check(config: RegistryConfig, reference: Reference, digest: str) -> TagCheck | None:
    """The check of ``reference`` (a tag, not pinned by digest) resolved to ``digest``,
    or ``None`` when no single request can answer it (the registry has mirrors)."""
    from ._config import is_loopback

    endpoints = config.endpoints(reference.domain)
    if len(endpoints) != 1 or not reference.tag or reference.digest is not None:
        return None
    endpoint = endpoints[0]
    path = f"/v2/{reference.path}/manifests/{reference.tag}"
    schemes = endpoint.schemes
    if "http" in schemes and is_loopback(endpoint.host):
        # traffic that never leaves the machine: plain HTTP first (no TLS attempt that a
        # plain registry refuses); the answer is the same over either
        schemes = ("http", *(s for s in schemes if s != "http"))
    return TagCheck(
        reference=str(reference),
        urls=tuple(endpoint.url(scheme, path) for scheme in schemes),
        verify=endpoint.verify,
        digest=digest,
        scope=f"repository:{reference.path}:pull",
    )


def tag_unchanged(check: TagCheck, *, timeout: float = _TIMEOUT) -> bool:
    """Whether the registry says ``check``'s tag still points at its digest (``False``
    on any doubt; see the module docstring)."""
    for url in check.urls:
        try:
            digest = _head_digest(url, check, timeout)
        except (OSError, ValueError):
            continue  # the next scheme, as the registry client falls back
        return digest == check.digest
    return False


def _head_digest(url: str, check: TagCheck, timeout: float) -> str | None:
    headers = {"Accept": ", ".join(ACCEPT_MANIFESTS)}
    if url.startswith("http://") and _proxy(url) is None:
        status, reply = _plain_head(url, headers, timeout)
    else:
        status, reply, _ = _request("HEAD", url, headers, check.verify, timeout)
    if status == 401:
        token = _anonymous_token(reply.get("www-authenticate", ""), check, timeout)
        if token is None:
            return None
        headers["Authorization"] = f"Bearer {token}"
        status, reply, _ = _request("HEAD", url, headers, check.verify, timeout)
    if status != 200:
        return None
    return reply.get("docker-content-digest")


def _anonymous_token(header: str, check: TagCheck, timeout: float) -> str | None:
    from ._challenge import parse_challenges

    for challenge in parse_challenges([header]):
        if challenge.scheme != "bearer" or not challenge.realm:
            continue
        query = {"scope": check.scope}
        if challenge.service:
            query["service"] = challenge.service
        separator = "&" if "?" in challenge.realm else "?"
        status, _, body = _request(
            "GET", challenge.realm + separator + urlencode(query), {}, check.verify, timeout
        )
        if status != 200:
            return None
        try:
            document = json.loads(body)
        except RecursionError:  # nested past the decoder's stack: not a token answer
            return None
        if not isinstance(document, dict):
            return None
        token = document.get("token") or document.get("access_token")
        return token if isinstance(token, str) and token else None
    return None


def _plain_head(url: str, headers: Mapping[str, str], timeout: float) -> tuple[int, dict[str, str]]:
    """A ``HEAD`` over plain HTTP on a socket of its own: the status and the response
    headers (names lower-cased). ``http.client`` would cost more to import (~15 ms, its
    e-mail parser and ``ssl``) than a replayed no-op's whole check; anything unexpected
    is a ``ValueError`` (the check then says "no")."""
    import socket

    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"no host in {url}")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"HEAD {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece or len(data) > 1 << 16:
                raise ValueError(f"HEAD {url}: no complete response")
            data += piece
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    version, _, rest = head[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"HEAD {url}: not an HTTP/1 response")
    status = int(rest.partition(" ")[0])
    reply: dict[str, str] = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            reply[name.strip().lower()] = value.strip()
    return status, reply


def _proxy(url: str) -> str | None:
    """The environment's proxy for ``url`` (``None``: connect directly)."""
    from ._proxyenv import ProxyConfig

    config = ProxyConfig.from_environment()
    if not config:
        return None
    parts = urlsplit(url)
    return config.proxy_for(parts.scheme, parts.hostname or "", parts.port)


def _request(
    method: str, url: str, headers: Mapping[str, str], verify: bool, timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own (through the environment's proxy when one
    applies: an absolute URL to it, or a ``CONNECT`` tunnel for https): the status, the
    response headers (names lower-cased) and up to 1 MiB of body."""
    import http.client

    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = dict(headers)
    proxy = _proxy(url)
    via: tuple[str, int] | None = None
    proxy_headers: dict[str, str] = {}
    if proxy is not None:
        hop = urlsplit(proxy)
        if hop.scheme != "http" or not hop.hostname:
            raise ValueError(f"proxy {hop.scheme}://{hop.hostname}: only http:// proxies here")
        via = (hop.hostname, hop.port or 80)
        if hop.username is not None:
            import base64
            from urllib.parse import unquote

            pair = f"{unquote(hop.username)}:{unquote(hop.password or '')}"
            proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(
                pair.encode()
            ).decode("ascii")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl

        if verify:
            context = ssl.create_default_context()
        else:  # no certificate store to load (~20 ms): nothing will be verified
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if via is not None:
            connection = http.client.HTTPSConnection(
                via[0], via[1], timeout=timeout, context=context
            )
            connection.set_tunnel(parts.hostname or "", parts.port or 443, proxy_headers)
        else:
            connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)
    elif parts.scheme == "http":
        if via is not None:
            connection = http.client.HTTPConnection(via[0], via[1], timeout=timeout)
            target = url  # the absolute form, to a proxy
            headers.update(proxy_headers)
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    else:
        raise ValueError(f"unsupported scheme in {url}")
    try:
        connection.request(method, target, headers=headers)
        response = connection.getresponse()
        body = response.read(1 << 20)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    except http.client.HTTPException as exc:
        raise ValueError(str(exc)) from exc
    finally:
        connection.close()
