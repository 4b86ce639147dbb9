"""``--allow`` values with CDI devices: ``device`` (every device) and
``device=NAME[,alias=ALIAS]`` (BuildKit's device entitlement config), and the engine's
refusal by entitlement name."""

from __future__ import annotations

import pytest

from dockyard.core import DeviceGrant, Entitlement, UsageError, parse_grant
from dockyard.core.cdinames import DeviceSelector, parse_selector


@pytest.mark.parametrize(
    ("value", "grant"),
    [
        ("device", Entitlement.DEVICE),
        ("device=", Entitlement.DEVICE),
        ("network.host", Entitlement.NETWORK_HOST),
        ("device=vendor.com/gpu=0", DeviceGrant(name="vendor.com/gpu=0")),
        ("device=vendor.com/gpu", DeviceGrant(name="vendor.com/gpu")),
        ("device=class1", DeviceGrant(name="class1")),
        (
            "device=vendor.com/gpu=0,alias=acme.com/gpu=any",
            DeviceGrant(name="vendor.com/gpu=0", alias="acme.com/gpu=any"),
        ),
    ],
)
def test_parse_grant(value: str, grant: object) -> None:
    parsed = parse_grant(value)
    assert parsed == grant
    assert parsed.entitlement is Entitlement.DEVICE or value == "network.host"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("devices", "unknown entitlement 'devices'"),
        ("device=a/b/c", "invalid entitlement 'device=a/b/c': invalid device 'a/b/c'"),
        ("device=v.com/c=x,alias", "invalid device entitlement field 'alias'"),
        ("device=v.com/c=x,name=y", "unknown device entitlement key 'name'"),
        ("device=v.com/c=x,alias=../x", "invalid device '../x'"),
    ],
)
def test_bad_grants(value: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_grant(value)
    assert message in info.value.message


def test_grants_print_as_written() -> None:
    assert str(Entitlement.DEVICE) == "device"
    assert str(DeviceGrant(name="v.com/c=x", alias="a.com/b")) == "device=v.com/c=x,alias=a.com/b"


@pytest.mark.parametrize(
    ("name", "selector"),
    [
        ("vendor.com/class=name", DeviceSelector("vendor.com/class", "name")),
        ("vendor.com/class", DeviceSelector("vendor.com/class", "")),
        ("vendor.com/class=*", DeviceSelector("vendor.com/class", "*")),
        ("class1", DeviceSelector("", "class1")),
        ("foo.bar.baz/foo-bar123.B_az=0:1", DeviceSelector("foo.bar.baz/foo-bar123.B_az", "0:1")),
    ],
)
def test_selectors(name: str, selector: DeviceSelector) -> None:
    assert parse_selector(name) == selector
    assert str(selector) == name
