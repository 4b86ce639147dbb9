"""Per-registry connection settings: plain HTTP, TLS trust, client certificates, mirrors."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dockyard.core import ConfigError

from ._reference import DOCKER_HUB

__all__ = ["Endpoint", "HostConfig", "RegistryConfig", "is_loopback", "normalize_host"]

#: Where Docker Hub's API actually lives, and the key docker uses for its credentials.
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CREDENTIALS_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API})


def normalize_host(host: str) -> str:
    """``index.docker.io`` and friends → ``docker.io``; schemes and paths are cut off."""
    text = host.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.split("/", 1)[0]
    return DOCKER_HUB if text in _HUB_ALIASES else text


def _host_only(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``, with or without a port."""
    name = _host_only(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """How to talk to one registry host (the keys of BuildKit's ``[registry."host"]``).

    ``http``: plain HTTP only. ``insecure``: HTTPS without certificate verification,
    falling back to plain HTTP (docker's ``insecure-registries``). ``ca_files`` are
    trusted in addition to the system store; ``client_cert``/``client_key`` are offered
    for mutual TLS. ``mirrors`` (``host[:port][/prefix]``) are tried, in order, before
    the host itself for pulls; pushes always go to the host.
    """

    http: bool = False
    insecure: bool = False
    ca_files: tuple[Path, ...] = ()
    client_cert: Path | None = None
    client_key: Path | None = None
    mirrors: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "registry") -> HostConfig:
        """Parse ``{"http": bool, "insecure": bool, "ca": [paths], "keypair": [{"cert",
        "key"}], "mirrors": [hosts]}``; :class:`~dockyard.core.ConfigError` if wrong."""
        known = {"http", "insecure", "ca", "keypair", "mirrors"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")

        def flag(key: str) -> bool:
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key!r} must be true or false")
            return value

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, ())
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key!r} must be a list of strings")
            return tuple(value)

        cert = key = None
        pairs = data.get("keypair", [])
        if isinstance(pairs, Mapping):
            pairs = [pairs]
        if not isinstance(pairs, list) or len(pairs) > 1:
            raise ConfigError(f"{where}: 'keypair' must be one {{cert, key}} table")
        for pair in pairs:
            if not isinstance(pair, Mapping) or not all(
                isinstance(pair.get(k), str) for k in ("cert", "key")
            ):
                raise ConfigError(f"{where}: 'keypair' needs 'cert' and 'key' paths")
            cert, key = Path(pair["cert"]), Path(pair["key"])
        mirrors = strings("mirrors")
        for mirror in mirrors:
            if not mirror or " " in mirror:
                raise ConfigError(f"{where}: invalid mirror {mirror!r}")
        return cls(
            http=flag("http"),
            insecure=flag("insecure"),
            ca_files=tuple(Path(p) for p in strings("ca")),
            client_cert=cert,
            client_key=key,
            mirrors=mirrors,
        )


_LOOPBACK_DEFAULT = HostConfig(insecure=True)
_DEFAULT = HostConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One place to send requests for a registry: the API host, a path prefix (mirrors),
    the schemes to try in order, and whether to verify TLS certificates."""

    host: str
    prefix: str = ""
    schemes: tuple[str, ...] = ("https",)
    verify: bool = True
    settings: HostConfig = field(default=_DEFAULT, compare=False)
    mirror: bool = False

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}://{self.host}{self.prefix}{path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryConfig:
    """Settings for all registries, keyed by normalized host (``docker.io``,
    ``127.0.0.1:5000``). Unlisted loopback hosts are treated as insecure (HTTPS without
    verification or plain HTTP, like docker does; the first ping tries plain HTTP first
    there, see ``_http._ping_order``); other unlisted hosts need HTTPS with a trusted
    certificate."""

    hosts: Mapping[str, HostConfig] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    loopback_insecure: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "hosts",
            MappingProxyType({normalize_host(k): v for k, v in self.hosts.items()}),
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RegistryConfig:
        """Parse ``{host: {settings}}`` as in buildkitd.toml's ``[registry."host"]``."""
        hosts: dict[str, HostConfig] = {}
        for host, settings in data.items():
            if not isinstance(settings, Mapping):
                raise ConfigError(f"registry {host!r}: settings must be a table")
            name = normalize_host(host)
            if name in hosts:
                raise ConfigError(f"registry {host!r}: {name} is configured more than once")
            hosts[name] = HostConfig.from_mapping(settings, f"registry {host!r}")
        return cls(hosts=hosts)

    def host(self, host: str) -> HostConfig:
        """The settings for ``host`` (configured, loopback default, or plain defaults)."""
        name = normalize_host(host)
        configured = self.hosts.get(name)
        if configured is not None:
            return configured
        if self.loopback_insecure and is_loopback(name):
            return _LOOPBACK_DEFAULT
        return _DEFAULT

    def _endpoint(self, host: str, prefix: str = "", *, mirror: bool) -> Endpoint:
        settings = self.host(host)
        api_host = DOCKER_HUB_API if normalize_host(host) == DOCKER_HUB else host
        if settings.http:
            schemes: tuple[str, ...] = ("http",)
        elif settings.insecure:
            schemes = ("https", "http")
        else:
            schemes = ("https",)
        return Endpoint(
            host=api_host,
            prefix=prefix,
            schemes=schemes,
            verify=not settings.insecure,
            settings=settings,
            mirror=mirror,
        )

    def endpoints(self, domain: str, *, push: bool = False) -> tuple[Endpoint, ...]:
        """Where to send requests for images on ``domain``: for pulls its mirrors first,
        then the registry itself."""
        out: list[Endpoint] = []
        if not push:
            for mirror in self.host(domain).mirrors:
                text = mirror
                scheme = ""
                for prefix in ("https://", "http://"):
                    if text.startswith(prefix):
                        scheme, text = prefix[:-3], text[len(prefix) :]
                mhost, _, path = text.partition("/")
                endpoint = self._endpoint(mhost, f"/{path.strip('/')}" if path else "", mirror=True)
                if scheme == "http":
                    endpoint = Endpoint(
                        host=endpoint.host,
                        prefix=endpoint.prefix,
                        schemes=("http",),
                        verify=endpoint.verify,
                        settings=endpoint.settings,
                        mirror=True,
                    )
                out.append(endpoint)
        out.append(self._endpoint(domain, mirror=False))
        return tuple(out)
