"""CDI devices of an exec: built, marshalled as BuildKit's ``ExecOp.cdiDevices`` (with the
``exec.meta.cdi`` cap), loaded back, and part of the op's digest."""

from __future__ import annotations

import pytest

from dockyard import llb
from dockyard.api import ops as pb
from dockyard.core import UsageError

AMD64 = "linux/amd64"


def exec_node(state: llb.State) -> llb.OpNode:
    definition = state.marshal(platform=AMD64)
    return next(node for node in definition if node.kind == "exec")


def test_devices_marshal_in_order_with_their_cap() -> None:
    state = (
        llb.image("busybox")
        .run(
            ["nvidia-smi"],
            devices=[
                llb.CDIDevice("nvidia.com/gpu=all"),
                llb.CDIDevice("vendor1.com/device", optional=True),
                llb.CDIDevice("class1"),
            ],
        )
        .root
    )
    node = exec_node(state)
    assert [(d.name, d.optional) for d in node.op.exec.cdiDevices] == [
        ("nvidia.com/gpu=all", False),
        ("vendor1.com/device", True),
        ("class1", False),
    ]
    assert node.metadata.caps["exec.meta.cdi"]


def test_round_trip_through_the_wire() -> None:
    state = llb.image("busybox").run(["true"], devices=[llb.CDIDevice("v.com/c=*")]).root
    data = state.marshal(platform=AMD64).to_bytes()
    loaded = llb.Definition.load(data)
    node = next(n for n in loaded if n.kind == "exec")
    assert list(node.op.exec.cdiDevices) == [pb.CDIDevice(name="v.com/c=*", optional=False)]
    assert loaded.to_bytes() == data
    # the dump (buildctl debug dump-llb) shows them with the proto's field names
    dumped = next(r for r in loaded.dump() if "exec" in r["Op"])
    assert dumped["Op"]["exec"]["cdiDevices"] == [{"name": "v.com/c=*"}]


def test_devices_change_the_digest_and_no_devices_add_nothing() -> None:
    base = llb.image("busybox")
    plain = exec_node(base.run(["true"]).root)
    required = exec_node(base.run(["true"], devices=[llb.CDIDevice("v.com/c=a")]).root)
    optional = exec_node(
        base.run(["true"], devices=[llb.CDIDevice("v.com/c=a", optional=True)]).root
    )
    assert len({plain.digest, required.digest, optional.digest}) == 3
    assert not plain.op.exec.cdiDevices
    assert "exec.meta.cdi" not in plain.metadata.caps
    # identical requests give identical digests in any process
    again = exec_node(base.run(["true"], devices=[llb.CDIDevice("v.com/c=a")]).root)
    assert again.digest == required.digest


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty device name"),
        ("vendor.com/class=", "empty device name after '='"),
        ("vendor.com/cl ass", "invalid character ' ' in class name"),
        ("x=y", "a device name needs a kind"),
        ("vendor.com/class=../../dev/sda", "must start with a letter or digit"),
    ],
)
def test_device_names_are_checked(name: str, message: str) -> None:
    with pytest.raises(UsageError, match="invalid device") as info:
        llb.CDIDevice(name)
    assert message in info.value.message
