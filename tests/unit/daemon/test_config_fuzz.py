"""dockyardd's config file under machine-made input: any document is a value or a
ConfigError naming the file (and the key), never another exception, and what it
accepts can be used (paths and addresses without NUL, a group id the kernel takes);
hostile TOML shapes (deep nesting, long dotted keys) fail fast."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.core import ConfigError
from dockyard.core.address import TcpListener, UnixListener
from dockyard.daemon import DaemonConfig

SOURCE = Path("/etc/dockyard/dockyardd.toml")

_ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "/tmp/x\x00y",
        "unix:///tmp/a\x00b.sock",
        "unix://",
        "tcp://",
        "tcp://127.0.0.1:99999",
        "tcp://[::1]:1234",
        "tcp://0.0.0.0:1",
        "9" * 400,
        "9" * 400 + "GB",
        "9" * 400 + "%",
        "9" * 40 + "h",
        "1" + "0" * 30 + "s",
        "1e400",
        "nan",
        "inf",
        "-1",
        "10%",
        "101%",
        "512MB",
        "48h",
        "1h30m",
        "5d",
        "type==source.local",
        "type==regular,id~=x",
        "network.host",
        "security.insecure",
        "device=vendor.com/gpu=a",
        "vendor.com/gpu",
        "vendor.com/gpu=*",
        "crun",
        "runc",
        "overlayfs",
        "\u0663",
        "\ud800",
        "root",
        "nogroup-h77",
    ]
)
_ODD_NUMBERS = st.sampled_from(
    [
        *(0, -1, 1, 4, 2**31, 2**32 - 1, 2**32, 2**63, 10**30, 10**400, -(10**400)),
        *(0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan")),
    ]
)
_SCALARS = st.one_of(
    _ODD_STRINGS,
    _ODD_NUMBERS,
    st.booleans(),
    st.one_of(st.text(max_size=8), st.integers(), st.floats()),
    st.sampled_from(
        [datetime.date(1979, 5, 27), datetime.time(7, 32), datetime.datetime(2000, 1, 1)]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["all", "filters", "keep-duration", "x"]), inner, max_size=3
        ),
    ),
    max_leaves=6,
)


def _table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), _VALUES, max_size=len(keys))


_WORKER_KEYS = [
    "runtime",
    "runtime-binary",
    "snapshotter",
    "max-parallelism",
    "gc",
    "gc-interval",
    "reserved-space",
    "max-used-space",
    "min-free-space",
    "gcpolicy",
    "reservedSpace",
]
_DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "state-dir": _VALUES,
        "allowed-entitlements": _VALUES,
        "grpc": st.one_of(_table(["address", "group", "tls"]), _VALUES),
        "worker": st.one_of(
            _table(_WORKER_KEYS),
            st.fixed_dictionaries(
                {
                    "gcpolicy": st.lists(
                        _table(
                            [
                                "all",
                                "filters",
                                "keep-duration",
                                "reserved-space",
                                "max-used-space",
                                "min-free-space",
                            ]
                        ),
                        max_size=3,
                    )
                }
            ),
        ),
        "registry": st.dictionaries(
            st.sampled_from(["docker.io", "127.0.0.1:5000", "", "a\x00b", "x/y"]),
            st.one_of(_table(["mirrors", "http", "insecure", "ca", "keypair"]), _VALUES),
            max_size=2,
        ),
        "cdi": st.one_of(_table(["disabled", "spec-dirs", "auto-allowed"]), _VALUES),
        "unknown-key": _VALUES,
    },
)


def _check_usable(config: DaemonConfig) -> None:
    """What a config accepts does not fail later as an exception of the OS layer."""
    paths = [config.state_dir, *config.cdi.spec_dirs]
    for listener in config.listeners:
        if isinstance(listener, UnixListener):
            paths.append(listener.path)
            if listener.group is not None:
                assert 0 <= listener.group < 2**32 - 1
        else:
            assert isinstance(listener, TcpListener)
            if listener.tls is not None:
                paths += [listener.tls.cert, listener.tls.key, listener.tls.ca]
    for path in paths:
        assert path is None or "\x00" not in str(path)
    assert config.runtime_binary is None or "\x00" not in config.runtime_binary
    assert config.gc.interval > 0
    for policy in config.gc.policies:
        for space in (policy.reserved_space, policy.max_used_space, policy.min_free_space):
            if space is not None and space.bytes is not None:
                assert 0 <= space.bytes < 2**63


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS)
def test_any_document_is_a_config_or_a_config_error(document: dict[str, Any]) -> None:
    try:
        config = DaemonConfig.from_mapping(document, source=SOURCE)
    except ConfigError as exc:
        message = str(exc)
    else:
        _check_usable(config)
        return
    assert message.startswith(f"{SOURCE}: "), message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[worker]\ngc-interval = 1" + "0" * 400, "worker.gc-interval"),
        ('[worker]\nreserved-space = "' + "9" * 400 + 'GB"', "worker.reserved-space"),
        ("[worker]\nmin-free-space = " + "9" * 30, "worker.min-free-space"),
        ('[[worker.gcpolicy]]\nkeep-duration = "' + "9" * 400 + 's"', "keep-duration"),
        ("[[worker.gcpolicy]]\nkeep-duration = 1" + "0" * 400, "keep-duration"),
        ("[grpc]\ngroup = " + "9" * 24, "grpc.group"),
        ("[grpc]\ngroup = 4294967295", "grpc.group"),
        ('[grpc]\naddress = ["unix:///tmp/a\\u0000b.sock"]', "grpc.address"),
        ('[grpc]\ngroup = "wheel\\u0000"', "grpc.group"),
        ('state-dir = "/tmp/s\\u0000"', "state-dir"),
        ('[cdi]\nspec-dirs = ["/etc/c\\u0000di"]', "cdi.spec-dirs"),
        ('[worker]\nruntime-binary = "cr\\u0000un"', "worker.runtime-binary"),
        ('[grpc.tls]\ncert = "a\\u0000"\nkey = "k"\nca = "c"', "grpc.tls.cert"),
    ],
)
def test_values_the_os_cannot_take_are_config_errors(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        DaemonConfig.from_toml(text, source=SOURCE)
    assert str(info.value).startswith(f"{SOURCE}: ")
    assert key in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 100_000,
        "a = " + "{x=" * 5000,
        "[" * 100_000,
        "a." * 100_000 + "b = 1",
        '"a".' * 50_000 + "b = 1",
        "[" + "a." * 100_000 + "b]",
        "x = {" + "a." * 100_000 + "b = 1}",
    ],
)
def test_hostile_toml_shapes_fail_fast(text: str) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"^{SOURCE}: "):
        DaemonConfig.from_toml(text, source=SOURCE)
    assert time.monotonic() - start < 2


def test_long_dotted_keys_of_real_configs_still_parse() -> None:
    text = '[registry."mirror.example.com:5000"]\nhttp = true\n[worker]\ngc = false\n'
    config = DaemonConfig.from_toml(text, source=SOURCE)
    assert config.registry.host("mirror.example.com:5000").http
