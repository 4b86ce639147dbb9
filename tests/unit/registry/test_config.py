from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import ConfigError
from dockyard.registry import HostConfig, RegistryConfig, is_loopback, normalize_host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("registry.localhost", True),
        ("10.0.0.1:5000", False),
        ("docker.io", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_normalize_host() -> None:
    assert normalize_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_host("registry-1.docker.io") == "docker.io"
    assert normalize_host("http://host:5000/path") == "host:5000"


def test_defaults() -> None:
    config = RegistryConfig()
    hub = config.endpoints("docker.io")
    assert len(hub) == 1
    assert hub[0].host == "registry-1.docker.io"
    assert hub[0].schemes == ("https",)
    assert hub[0].verify
    local = config.endpoints("127.0.0.1:5000")[0]
    assert local.schemes == ("https", "http")  # docker's insecure-registry behaviour
    assert not local.verify
    assert RegistryConfig(loopback_insecure=False).endpoints("localhost:1")[0].schemes == ("https",)


def test_from_mapping_like_buildkitd_toml(tmp_path: Path) -> None:
    config = RegistryConfig.from_mapping(
        {
            "docker.io": {"mirrors": ["mirror.local:5000", "http://10.0.0.9/prefix/"]},
            "plain.example:80": {"http": True},
            "self.example": {
                "ca": [str(tmp_path / "ca.pem")],
                "keypair": [{"cert": "/c.pem", "key": "/k.pem"}],
            },
            "127.0.0.1:5000": {"insecure": False},
        }
    )
    hub = config.endpoints("docker.io")
    assert [(e.host, e.prefix, e.schemes, e.mirror) for e in hub] == [
        ("mirror.local:5000", "", ("https",), True),
        ("10.0.0.9", "/prefix", ("http",), True),
        ("registry-1.docker.io", "", ("https",), False),
    ]
    assert hub[1].url("http", "/v2/") == "http://10.0.0.9/prefix/v2/"
    # Pushes never go to mirrors.
    assert [e.host for e in config.endpoints("docker.io", push=True)] == ["registry-1.docker.io"]
    assert config.endpoints("plain.example:80")[0].schemes == ("http",)
    selfsigned = config.host("self.example")
    assert selfsigned.ca_files == (tmp_path / "ca.pem",)
    assert selfsigned.client_cert == Path("/c.pem")
    # A configured loopback host loses the insecure default.
    assert config.endpoints("127.0.0.1:5000")[0].schemes == ("https",)
    assert config.host("other.example") == HostConfig()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"h": {"htp": True}}, "unknown setting"),
        ({"h": {"http": "yes"}}, "'http' must be true or false"),
        ({"h": {"mirrors": [1]}}, "'mirrors' must be a list of strings"),
        ({"h": {"mirrors": ["a b"]}}, "invalid mirror"),
        ({"h": {"keypair": [{"cert": "x"}]}}, "needs 'cert' and 'key'"),
        ({"h": "x"}, "must be a table"),
        ({"docker.io": {}, "https://index.docker.io/v1/": {}}, "configured more than once"),
    ],
)
def test_invalid_settings(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RegistryConfig.from_mapping(data)
