"""dockyardd's config file: good files become the values they say, bad ones a
ConfigError naming the file and the key."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from dockyard.cache import RecordType, UsageFilter
from dockyard.core import ConfigError, UsageError
from dockyard.daemon import (
    DEFAULT_SOCKET,
    DaemonConfig,
    GcPolicy,
    Space,
    TcpListener,
    TlsConfig,
    UnixListener,
    default_gc_policies,
    parse_address,
    parse_duration,
    parse_space,
)
from dockyard.llbsolver.types import Entitlement

FULL = """
state-dir = "state"
allowed-entitlements = ["network.host", "security.insecure"]

[grpc]
address = ["unix:///run/dy/dockyardd.sock", "tcp://0.0.0.0:1234", "tcp://[::1]:1235"]
group = 0
[grpc.tls]
cert = "tls/cert.pem"
key = "/etc/dy/key.pem"
ca = "tls/ca.pem"

[worker]
runtime = "runc"
runtime-binary = "/usr/sbin/runc"
snapshotter = "native"
max-parallelism = 4
gc = true
gc-interval = "30m"

[[worker.gcpolicy]]
filters = ["type==source.local", "type==exec.cachemount,type==source.git.checkout"]
keep-duration = "48h"
max-used-space = "512MB"

[[worker.gcpolicy]]
all = true
keep-duration = 3600
reserved-space = 1000000
min-free-space = "10%"

[registry."docker.io"]
mirrors = ["mirror.local:5000"]
[registry."registry.local:5000"]
http = true
"""


def write(tmp_path: Path, text: str, name: str = "dockyardd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_full_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = DaemonConfig.load(path)
    assert config.source == path
    assert config.state_dir == tmp_path / "state"
    assert config.entitlements == {Entitlement.NETWORK_HOST, Entitlement.SECURITY_INSECURE}
    assert config.runtime == "runc"
    assert config.runtime_binary == "/usr/sbin/runc"
    assert config.snapshotter == "native"
    assert config.max_parallelism == 4
    tls = TlsConfig(
        cert=tmp_path / "tls/cert.pem", key=Path("/etc/dy/key.pem"), ca=tmp_path / "tls/ca.pem"
    )
    assert config.listeners == (
        UnixListener(path=Path("/run/dy/dockyardd.sock"), group=0),
        TcpListener(host="0.0.0.0", port=1234, tls=tls),
        TcpListener(host="::1", port=1235, tls=tls),
    )
    assert [ln.bind_address for ln in config.listeners] == [
        "unix:/run/dy/dockyardd.sock",
        "0.0.0.0:1234",
        "[::1]:1235",
    ]
    assert config.gc.enabled
    assert config.gc.interval == 1800
    assert config.gc.policies == (
        GcPolicy(
            filter=UsageFilter(
                types=frozenset(
                    {RecordType.SOURCE_LOCAL, RecordType.EXEC_CACHEMOUNT, RecordType.SOURCE_GIT}
                )
            ),
            keep_duration=48 * 3600,
            max_used_space=Space(bytes=512 << 20),
        ),
        GcPolicy(
            all=True,
            keep_duration=3600,
            reserved_space=Space(bytes=1_000_000),
            min_free_space=Space(percent=10),
        ),
    )
    assert config.registry.host("docker.io").mirrors == ("mirror.local:5000",)
    assert config.registry.host("registry.local:5000").http


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = DaemonConfig.load(write(tmp_path, ""))
    assert config.state_dir is None
    assert config.runtime == "crun"
    assert config.snapshotter == "auto"
    assert config.max_parallelism is None
    assert config.entitlements == frozenset()
    assert config.listeners == (UnixListener(path=DEFAULT_SOCKET),)
    assert config.gc.enabled
    assert config.gc.policies == default_gc_policies()
    assert DaemonConfig() == DaemonConfig.from_toml("")


def test_worker_space_limits_shape_the_builtin_rules() -> None:
    config = DaemonConfig.from_toml('[worker]\nreserved-space = "2GB"\nmax-used-space = "50%"\n')
    policies = config.gc.policies
    assert len(policies) == 4
    assert policies[0].filter.types  # the reproducible records first
    assert policies[-1].all
    for policy in policies[1:]:
        assert policy.reserved_space == Space(bytes=2 << 30)
        assert policy.max_used_space == Space(percent=50)
        assert policy.min_free_space == Space(percent=20)


def test_group_by_name() -> None:
    root = grp.getgrgid(0).gr_name
    config = DaemonConfig.from_toml(f'[grpc]\ngroup = "{root}"\n')
    assert config.listeners == (UnixListener(path=DEFAULT_SOCKET, group=0),)


def test_loopback_tcp_needs_no_tls() -> None:
    config = DaemonConfig.from_toml('[grpc]\naddress = "tcp://127.0.0.1:9999"\n')
    assert config.listeners == (TcpListener(host="127.0.0.1", port=9999),)
    assert config.listeners[0].url == "tcp://127.0.0.1:9999"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1", "bogus: unknown key"),
        (
            "[worker]\nreservedSpace = 1",
            "worker.reservedSpace: unknown key (did you mean 'reserved-space'?)",
        ),
        ("[worker]\nmax_parallelism = 2", "did you mean 'max-parallelism'?"),
        (
            "[worker]\nruntime = 'youki'",
            "worker.runtime: unknown OCI runtime 'youki' (expected crun or runc)",
        ),
        ("[worker]\nsnapshotter = 'zfs'", "worker.snapshotter: unknown snapshotter 'zfs'"),
        ("[worker]\nmax-parallelism = 0", "worker.max-parallelism: must be at least 1, not 0"),
        ("[worker]\nmax-parallelism = '4'", "worker.max-parallelism: must be an integer, not '4'"),
        (
            "[worker]\nmax-parallelism = true",
            "worker.max-parallelism: must be an integer, not true",
        ),
        ("[worker]\ngc = 'yes'", "worker.gc: must be true or false, not 'yes'"),
        ("[worker]\ngc-interval = 'soon'", "worker.gc-interval: invalid duration 'soon'"),
        ("[worker]\ngc-interval = 0", "worker.gc-interval: must be longer than 0"),
        (
            "[worker]\nmin-free-space = '12 bananas'",
            "worker.min-free-space: invalid size '12 bananas'",
        ),
        (
            "[worker]\nreserved-space = '120%'",
            "worker.reserved-space: invalid size '120%': more than 100%",
        ),
        ("worker = 3", "worker: must be a table"),
        ("[worker]\ngcpolicy = {all = true}", "worker.gcpolicy: must be a list of tables"),
        ("[[worker.gcpolicy]]\nkeepBytes = 5", "worker.gcpolicy[0].keepBytes: unknown key"),
        (
            "[[worker.gcpolicy]]\n[[worker.gcpolicy]]\nall = 1",
            "worker.gcpolicy[1].all: must be true or false, not 1",
        ),
        (
            "[[worker.gcpolicy]]\nfilters = ['type==blob']",
            "worker.gcpolicy[0].filters: unknown cache record type 'blob'",
        ),
        (
            "[[worker.gcpolicy]]\nfilters = ['colour=red']",
            "worker.gcpolicy[0].filters: unknown filter 'colour'",
        ),
        (
            "[[worker.gcpolicy]]\nkeep-duration = '2 weeks'",
            "worker.gcpolicy[0].keep-duration: invalid duration '2 weeks'",
        ),
        (
            "[worker]\nreserved-space = 1\n[[worker.gcpolicy]]\nall = true",
            "worker.reserved-space: sets the limits of the built-in GC rules",
        ),
        ("allowed-entitlements = ['root']", "allowed-entitlements: unknown entitlement 'root'"),
        (
            "allowed-entitlements = 'network.host'\nstate-dir = 7",
            "state-dir: must be a path, not 7",
        ),
        ("[grpc]\naddress = 'http://x:1'", "grpc.address: invalid address 'http://x:1'"),
        ("[grpc]\naddress = 'unix://run/x.sock'", "a unix socket needs an absolute path"),
        (
            "[grpc]\naddress = 'tcp://10.0.0.1'",
            "invalid address 'tcp://10.0.0.1' (expected tcp://HOST:PORT)",
        ),
        ("[grpc]\naddress = 'tcp://::1:80'", "write an IPv6 host as [::1]"),
        (
            "[grpc]\naddress = 'tcp://0.0.0.0:1234'",
            "is reachable from other hosts: it needs mutual TLS",
        ),
        ("[grpc]\naddress = []", "grpc.address: must list at least one address"),
        (
            "[grpc]\naddress = ['unix:///a.sock', 'unix:///a.sock']",
            "grpc.address: unix:///a.sock is listed twice",
        ),
        (
            "[grpc.tls]\ncert = 'c'\nkey = 'k'",
            "grpc.tls: mutual TLS needs cert, key and ca (missing ca)",
        ),
        (
            "[grpc]\ngroup = 'no-such-group-dockyard'",
            "grpc.group: no group named 'no-such-group-dockyard'",
        ),
        ("[grpc]\ngroup = -1", "grpc.group: invalid group id -1"),
        (
            "[registry.'docker.io']\nmirrorz = []",
            "registry 'docker.io': unknown setting(s) mirrorz",
        ),
        ("[registry]\n'docker.io' = 1", "registry 'docker.io': settings must be a table"),
        ("state-dir = [", "invalid TOML"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        DaemonConfig.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read the config file"):
        DaemonConfig.load(tmp_path / "missing.toml")
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        DaemonConfig.load(path)


def test_command_line_overrides(tmp_path: Path) -> None:
    config = DaemonConfig.load(write(tmp_path, FULL))
    changed = config.with_overrides(
        addresses=["unix:///tmp/dy.sock", "tcp://0.0.0.0:2000"], state_dir="other"
    )
    assert changed.state_dir == Path("other").absolute()
    assert changed.listeners == (
        UnixListener(path=Path("/tmp/dy.sock"), group=0),
        TcpListener(host="0.0.0.0", port=2000, tls=config.listeners[1].tls),  # type: ignore[union-attr]
    )
    assert config.with_overrides() == config
    with pytest.raises(UsageError, match="needs mutual TLS"):
        DaemonConfig().with_overrides(addresses=["tcp://192.0.2.1:80"])


def test_tls_files_are_read_with_errors_naming_the_key(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_bytes(name.encode())
    tls = TlsConfig(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem", ca=tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match=r"grpc\.tls\.ca: cannot read .*ca\.pem"):
        tls.read()
    (tmp_path / "ca.pem").write_bytes(b"ca")
    assert tls.read() == (b"cert.pem", b"key.pem", b"ca")


@pytest.mark.parametrize(
    ("value", "space"),
    [
        (0, Space(bytes=0)),
        (1024, Space(bytes=1024)),
        ("512", Space(bytes=512)),
        ("512b", Space(bytes=512)),
        ("1k", Space(bytes=1024)),
        ("512MB", Space(bytes=512 << 20)),
        ("1.5GiB", Space(bytes=3 << 29)),
        ("2 tb", Space(bytes=2 << 40)),
        ("10%", Space(percent=10)),
        ("12.5 %", Space(percent=12.5)),
    ],
)
def test_sizes(value: object, space: Space) -> None:
    assert parse_space(value) == space


def test_space_resolves_percentages_against_the_disk() -> None:
    assert Space(percent=10).resolve(1000) == 100
    assert Space(bytes=7).resolve(1000) == 7
    assert str(Space(percent=12.5)) == "12.5%"


@pytest.mark.parametrize("value", [-1, True, "", "MB", "1.2.3GB", "5x", "-5%", [1]])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(UsageError, match="invalid size"):
        parse_space(value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (172800, 172800.0),
        (1.5, 1.5),
        ("0", 0.0),
        ("48h", 172800.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("90s", 90.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, True, "", "h", "5", "1h 30m", "1y", float("inf")])
def test_bad_durations(value: object) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(value)


def test_parse_address_for_command_line_flags() -> None:
    assert parse_address("unix:///run/x.sock") == UnixListener(path=Path("/run/x.sock"))
    assert parse_address("tcp://0.0.0.0:80") == TcpListener(host="0.0.0.0", port=80)
    assert parse_address("tcp://localhost:80").loopback  # type: ignore[union-attr]
    for bad in ("tcp://host:0", "tcp://host:70000", "tcp://:80", "unix://", "x"):
        with pytest.raises(UsageError):
            parse_address(bad)


def test_example_in_the_module_docstring_parses(tmp_path: Path) -> None:
    from dockyard.daemon import _config

    doc = _config.__doc__ or ""
    example = doc[doc.index("state-dir = ") : doc.index("Sizes are bytes")]
    text = "\n".join(line[4:] if line.startswith("    ") else line for line in example.splitlines())
    root = grp.getgrgid(os.getgid()).gr_name
    config = DaemonConfig.from_toml(text.replace('"dockyard"', f'"{root}"'))
    assert config.max_parallelism == 4
    assert isinstance(config.listeners[1], TcpListener)
    assert config.listeners[1].tls is not None
