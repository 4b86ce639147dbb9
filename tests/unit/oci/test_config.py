from __future__ import annotations

import json

import pytest

from dockyard.core import ContentError, Digest, Platform
from dockyard.oci import ContainerConfig, Healthcheck, History, ImageConfig, format_timestamp

DIFF = "sha256:" + "c" * 64

# An image config as docker's classic builder writes it (extra fields we ignore).
DOCKER_CONFIG = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "author": "someone",
    "created": "2023-05-04T17:37:03.872958712Z",
    "docker_version": "20.10.23",
    "container": "3b0c6dd",
    "container_config": {"Cmd": ["/bin/sh", "-c", '#(nop) CMD ["sh"]']},
    "config": {
        "Hostname": "",
        "User": "app:app",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Env": ["PATH=/usr/bin:/bin", "HOME=/home/app", "EMPTY="],
        "Entrypoint": ["/entry.sh"],
        "Cmd": ["serve", "--port", "8080"],
        "Volumes": {"/data": {}},
        "WorkingDir": "/srv",
        "Labels": {"z": "last", "a": "first"},
        "StopSignal": "SIGQUIT",
        "ArgsEscaped": True,
        "Healthcheck": {
            "Test": ["CMD-SHELL", "curl -f localhost"],
            "Interval": 30_000_000_000,
            "Timeout": 5_000_000_000,
            "StartPeriod": 1_000_000_000,
            "StartInterval": 2_000_000_000,
            "Retries": 3,
        },
        "OnBuild": ["RUN echo hi"],
        "Shell": ["/bin/bash", "-c"],
        "Image": "sha256:dead",
    },
    "rootfs": {"type": "layers", "diff_ids": [DIFF]},
    "history": [
        {"created": "2023-05-04T17:37:03Z", "created_by": "/bin/sh -c #(nop) ADD file:x in /"},
        {
            "created": "2023-05-04T17:37:04Z",
            "created_by": '/bin/sh -c #(nop)  CMD ["sh"]',
            "author": "someone",
            "comment": "buildkit.dockerfile.v0",
            "empty_layer": True,
        },
    ],
}


def test_reads_every_field() -> None:
    config = ImageConfig.parse(json.dumps(DOCKER_CONFIG).encode())
    c = config.config
    assert config.platform == Platform.parse("linux/arm64")
    assert config.variant == "v8"  # kept as written; the platform property normalizes
    assert config.created == "2023-05-04T17:37:03.872958712Z"
    assert config.author == "someone"
    assert c.user == "app:app"
    assert c.exposed_ports == ("53/udp", "8080/tcp")
    assert c.env_value("HOME") == "/home/app"
    assert c.env_value("EMPTY") == ""
    assert c.env_value("MISSING") is None
    assert c.entrypoint == ("/entry.sh",)
    assert c.cmd == ("serve", "--port", "8080")
    assert c.volumes == ("/data",)
    assert c.working_dir == "/srv"
    assert list(c.labels) == ["a", "z"]
    assert c.stop_signal == "SIGQUIT"
    assert c.args_escaped
    assert c.healthcheck == Healthcheck(
        test=("CMD-SHELL", "curl -f localhost"),
        interval=30_000_000_000,
        timeout=5_000_000_000,
        start_period=1_000_000_000,
        start_interval=2_000_000_000,
        retries=3,
    )
    assert c.on_build == ("RUN echo hi",)
    assert c.shell == ("/bin/bash", "-c")
    assert config.diff_ids == (Digest(DIFF),)
    assert config.history[1].empty_layer
    assert config.history[1].comment == "buildkit.dockerfile.v0"
    assert config.layer_history() == [config.history[0]]


def test_writes_buildkit_field_order() -> None:
    config = ImageConfig.parse(json.dumps(DOCKER_CONFIG).encode())
    doc = json.loads(config.to_bytes())
    assert list(doc) == [
        "created",
        "author",
        "architecture",
        "os",
        "variant",
        "config",
        "rootfs",
        "history",
    ]
    assert list(doc["config"]) == [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ]
    assert doc["config"]["ExposedPorts"] == {"53/udp": {}, "8080/tcp": {}}
    assert "container_config" not in doc
    assert ImageConfig.parse(config.to_bytes()) == config


def test_minimal_config() -> None:
    config = ImageConfig(architecture="amd64", os="linux")
    assert config.to_bytes() == (
        b'{"architecture":"amd64","os":"linux","config":{},'
        b'"rootfs":{"type":"layers","diff_ids":[]}}'
    )
    assert config.history == ()
    assert ImageConfig.parse(config.to_bytes()) == config


def test_history_and_container_config_values() -> None:
    history = History(created="2024-01-01T00:00:00Z", created_by="RUN x", empty_layer=True)
    assert history.to_json() == {
        "created": "2024-01-01T00:00:00Z",
        "created_by": "RUN x",
        "empty_layer": True,
    }
    cc = ContainerConfig(exposed_ports=("80/tcp", "80/tcp", "443/tcp"), volumes=("/b", "/a"))
    assert cc.exposed_ports == ("443/tcp", "80/tcp")
    assert cc.volumes == ("/a", "/b")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"architecture": 3}', "'architecture' must be a string"),
        (b'{"config": {"Env": "x"}}', "'Env' must be a list of strings"),
        (b'{"rootfs": {"diff_ids": ["nope"]}}', "diff_ids\\[0\\]"),
        (b'{"history": [{"empty_layer": "yes"}]}', "history\\[0\\]"),
        (b'{"config": {"ArgsEscaped": 1}}', "must be a boolean"),
    ],
)
def test_malformed_configs(data: bytes, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        ImageConfig.parse(data)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000 * 10**9, "2023-11-14T22:13:20Z"),
        (1_700_000_000 * 10**9 + 500_000_000, "2023-11-14T22:13:20.5Z"),
        (1_700_000_000 * 10**9 + 123, "2023-11-14T22:13:20.000000123Z"),
    ],
)
def test_format_timestamp(ns: int, text: str) -> None:
    assert format_timestamp(ns) == text
