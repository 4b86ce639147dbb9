"""CDI: spec files parsed and checked (tests/data/cdi/good, bad), the registry's
selection rules (tests/data/cdi/registry), edits made to an OCI spec
(tests/data/cdi/apply), and the embedded engine's configuration from the environment."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import ConfigError, ExecError, NotFoundError, UsageError
from dockyard.executor.cdi import (
    ANNOTATION_CLASS,
    DEFAULT_SPEC_DIRS,
    CdiConfig,
    CdiMount,
    ContainerEdits,
    DeviceNode,
    DeviceRegistry,
    DeviceRequest,
    Hook,
    IntelRdt,
    NetDevice,
    apply_edits,
    destinations,
    parse_spec,
    read_spec,
)

DATA = Path(__file__).parents[2] / "data" / "cdi"


def _table(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        left, _, right = line.partition(" | ")
        rows.append((left.strip(), right.strip()))
    return rows


# -- spec files -----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((DATA / "good").iterdir()), ids=lambda p: p.name)
def test_good_specs_parse(path: Path) -> None:
    spec = read_spec(path)
    assert spec.path == path
    assert spec.devices
    for device in spec.devices:
        assert not device.edits.is_empty()


def test_buildkit_example_yml() -> None:
    spec = read_spec(DATA / "good" / "buildkit-example.yml")
    assert (spec.version, spec.kind) == ("0.6.0", "vendor1.com/device")
    assert [spec.qualified(d) for d in spec.devices] == ["vendor1.com/device=foo"]
    assert spec.devices[0].edits.env == ("FOO=injected",)
    assert spec.edits.is_empty()


def test_yaml_scalars_in_annotations_become_strings() -> None:
    # the docs' `org.mobyproject.buildkit.device.autoallow: true` (a YAML boolean)
    spec = read_spec(DATA / "good" / "classes.yaml")
    assert spec.annotations == {"org.mobyproject.buildkit.device.autoallow": "true"}
    assert {d.name: d.annotations.get(ANNOTATION_CLASS) for d in spec.devices} == {
        "foo": None,
        "bar": "class1",
        "baz": "class1",
        "qux": "class2",
    }


def test_every_field_of_a_json_spec() -> None:
    spec = read_spec(DATA / "good" / "everything.json")
    origin = f"example.com/gpu ({spec.path})"
    assert spec.edits == ContainerEdits(
        origin=origin,
        env=("GPU_DRIVER=1.2",),
        mounts=(
            CdiMount(
                host_path="/usr/lib/libgpu.so",
                container_path="/usr/lib/libgpu.so",
                type="bind",
                options=("ro", "rbind"),
            ),
        ),
        hooks=(
            Hook(
                hook_name="createContainer",
                path="/usr/bin/gpu-hook",
                args=("gpu-hook", "setup"),
                env=("A=1",),
                timeout=5,
            ),
        ),
        additional_gids=(44, 0),
    )
    first = spec.devices[0]
    assert first.name == "0"
    assert first.edits.device_nodes == (
        DeviceNode(
            path="/dev/gpu0",
            host_path="/dev/null",
            permissions="rw",
            file_mode=0o660,
            uid=0,
            gid=44,
        ),
        DeviceNode(path="/dev/gpuctl", type="c", major=195, minor=255),
    )
    assert first.edits.intel_rdt == IntelRdt(
        clos_id="gpu", l3_cache_schema="L3:0=ff", enable_cmt=True
    )
    assert first.edits.origin == f"example.com/gpu=0 ({spec.path})"


def test_version_1_1_features() -> None:
    spec = read_spec(DATA / "good" / "v1.1.yaml")
    edits = spec.devices[0].edits
    assert edits.net_devices == (NetDevice(host_interface_name="enp1s0", name="eth1"),)
    assert edits.intel_rdt == IntelRdt(schemata=("L3:0=f",), enable_monitoring=True)


BAD = _table(DATA / "bad" / "errors.txt")


@pytest.mark.parametrize(("name", "expected"), BAD, ids=[n for n, _ in BAD])
def test_bad_specs_name_the_file_and_key(name: str, expected: str) -> None:
    path = DATA / "bad" / name
    with pytest.raises(ConfigError) as info:
        read_spec(path)
    message = info.value.message
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_every_bad_case_is_in_the_table() -> None:
    files = {p.name for p in (DATA / "bad").iterdir() if p.name != "errors.txt"}
    assert files == {name for name, _ in BAD}


def test_a_spec_that_is_not_utf8() -> None:
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_spec(b"\xff\xfe", path=Path("/x.json"))


def test_an_unreadable_spec(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the CDI spec"):
        read_spec(tmp_path / "gone.json")


# -- the registry ---------------------------------------------------------------------


@pytest.fixture
def registry() -> DeviceRegistry:
    return DeviceRegistry(
        [DATA / "registry" / "dir1", DATA / "registry" / "dir2"],
        auto_allowed=["vendor2.com/x"],
    )


SELECT = _table(DATA / "registry" / "select.txt")


@pytest.mark.parametrize(("name", "expected"), SELECT, ids=[n or "<empty>" for n, _ in SELECT])
def test_selection(registry: DeviceRegistry, name: str, expected: str) -> None:
    if expected.startswith("!"):
        with pytest.raises(UsageError) as info:
            registry.select(name)
        assert expected[1:].strip() in info.value.message
        assert repr(name) in info.value.message
        return
    want = () if expected == "-" else tuple(expected.split())
    assert registry.select(name) == want


def test_devices_list(registry: DeviceRegistry) -> None:
    devices = {d.name: d for d in registry.devices()}
    assert list(devices) == sorted(devices)
    assert "vendor2.com/x=dup" not in devices  # two files of one directory define it
    assert "vendor4.com/hidden=h" not in devices  # subdirectories are not read
    assert not any(name.startswith("vendor9.com/") for name in devices)  # broken file
    # annotations: the spec's, then the device's; autoallow from either, or configured
    assert devices["vendor1.com/deviceclass=foo"].auto_allow
    assert not devices["vendor1.com/deviceclass=baz"].auto_allow
    assert devices["vendor1.com/deviceclass=baz"].annotations == {
        "org.mobyproject.buildkit.device.autoallow": "false",
        ANNOTATION_CLASS: "class2",
    }
    assert devices["vendor2.com/x=solo-a"].auto_allow  # its kind is auto-allowed
    assert not devices["vendor1.com/device=foo"].auto_allow
    assert (
        devices["vendor3.com/y=a"].spec_file == DATA / "registry" / "dir2" / "vendor3-override.yaml"
    )
    assert devices["vendor1.com/device=foo"].kind == "vendor1.com/device"


def test_problems_name_the_files(registry: DeviceRegistry) -> None:
    problems = registry.problems()
    assert any(p.startswith(str(DATA / "registry" / "dir1" / "broken.json")) for p in problems)
    conflict = [p for p in problems if "vendor2.com/x=dup" in p]
    assert len(conflict) == 1
    assert "conflict-a.json" in conflict[0]
    assert "conflict-b.json" in conflict[0]


def test_resolve_orders_spec_edits_before_devices(registry: DeviceRegistry) -> None:
    result = registry.resolve(
        [
            DeviceRequest(name="vendor1.com/devicemulti=foo"),
            DeviceRequest(name="vendor3.com/y=a"),
            DeviceRequest(name="vendor1.com/devicemulti=bar"),
            DeviceRequest(name="vendor1.com/devicemulti=foo"),
        ]
    )
    assert result.devices == (
        "vendor1.com/devicemulti=foo",
        "vendor3.com/y=a",
        "vendor1.com/devicemulti=bar",
    )
    assert [e.env for e in result.edits] == [
        ("MULTI=1",),  # the spec's own edits, once, before its first device
        ("FOO=injected",),
        ("Y=dir2",),  # the later directory's device
        ("BAR=injected",),
    ]
    assert result.missing == ()


def test_required_missing_device_names_dirs_and_problems(registry: DeviceRegistry) -> None:
    with pytest.raises(NotFoundError) as info:
        registry.resolve([DeviceRequest(name="vendor1.com/device=gone")])
    message = info.value.message
    assert message.startswith("required device 'vendor1.com/device=gone' is not registered")
    assert str(DATA / "registry" / "dir2") in message
    assert "broken.json" in message


def test_optional_missing_device_is_reported(registry: DeviceRegistry) -> None:
    request = DeviceRequest(name="vendor1.com/device=gone", optional=True)
    result = registry.resolve([request, DeviceRequest(name="vendor1.com/device")])
    assert result.missing == (request,)
    assert result.devices == ("vendor1.com/device=foo",)


def test_registry_follows_changes(tmp_path: Path) -> None:
    registry = DeviceRegistry([tmp_path / "cdi"])
    assert registry.devices() == ()  # a missing directory is no error
    (tmp_path / "cdi").mkdir()
    spec = tmp_path / "cdi" / "a.json"
    spec.write_text(
        json.dumps(
            {
                "cdiVersion": "0.6.0",
                "kind": "v.com/c",
                "devices": [{"name": "a", "containerEdits": {"env": ["A=1"]}}],
            }
        )
    )
    assert [d.name for d in registry.devices()] == ["v.com/c=a"]
    text = spec.read_text().replace('"a"', '"b"').replace("A=1", "B=22")
    spec.write_text(text)
    os.utime(spec, ns=(1, 1))  # a new size and time
    assert [d.name for d in registry.devices()] == ["v.com/c=b"]
    spec.unlink()
    assert registry.devices() == ()


def test_registry_from_config() -> None:
    assert DeviceRegistry.from_config(CdiConfig(disabled=True)) is None
    registry = DeviceRegistry.from_config(CdiConfig(spec_dirs=(Path("/nonexistent/cdi"),)))
    assert registry is not None
    assert registry.spec_dirs == (Path("/nonexistent/cdi"),)


# -- edits ----------------------------------------------------------------------------

APPLY = sorted((DATA / "apply").glob("*.json"))


@pytest.mark.parametrize("path", APPLY, ids=lambda p: p.stem)
def test_apply(tmp_path: Path, path: Path) -> None:
    case = json.loads(path.read_text())
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    (spec_dir / "spec.json").write_text(json.dumps(case["spec"]))
    registry = DeviceRegistry([spec_dir])
    requests = [DeviceRequest(**r) for r in case["requests"]]
    result = registry.resolve(requests)
    oci: dict[str, Any] = copy.deepcopy(case["base"])
    apply_edits(oci, result.edits)
    assert oci == case["expected"], case["about"]


def test_destinations() -> None:
    edits = ContainerEdits(
        mounts=(CdiMount(host_path="/h", container_path="/c/m"),),
        device_nodes=(DeviceNode(path="/dev/x"), DeviceNode(path="/opt/node")),
    )
    assert destinations([edits]) == ["/c/m", "/dev/x", "/opt/node"]


def test_apply_nothing_changes_nothing() -> None:
    spec: dict[str, Any] = {"process": {}}
    apply_edits(spec, ())
    assert spec == {"process": {}}


def test_net_devices_are_refused() -> None:
    edits = ContainerEdits(
        origin="v.com/n=a (/etc/cdi/n.yaml)",
        net_devices=(NetDevice(host_interface_name="eth0", name="eth1"),),
    )
    with pytest.raises(ExecError, match=r"v.com/n=a \(/etc/cdi/n.yaml\): netDevices"):
        apply_edits({}, [edits])


def test_missing_host_node(tmp_path: Path) -> None:
    edits = ContainerEdits(
        origin="v.com/c=a",
        device_nodes=(DeviceNode(path="/dev/x", host_path=str(tmp_path / "no")),),
    )
    with pytest.raises(NotFoundError, match=r"v.com/c=a: device node .*/no for /dev/x"):
        apply_edits({}, [edits])


def test_host_node_of_the_wrong_kind(tmp_path: Path) -> None:
    plain = tmp_path / "file"
    plain.write_text("")
    edits = ContainerEdits(
        origin="o", device_nodes=(DeviceNode(path="/dev/x", host_path=str(plain)),)
    )
    with pytest.raises(ExecError, match="is not a device node"):
        apply_edits({}, [edits])
    wrong = ContainerEdits(
        origin="o", device_nodes=(DeviceNode(path="/dev/x", host_path="/dev/null", type="b"),)
    )
    with pytest.raises(ExecError, match="of type 'c', not 'b'"):
        apply_edits({}, [wrong])


# -- configuration --------------------------------------------------------------------


def test_config_from_env() -> None:
    assert CdiConfig.from_env({}) == CdiConfig()
    assert CdiConfig().spec_dirs == DEFAULT_SPEC_DIRS
    config = CdiConfig.from_env(
        {"DOCKYARD_CDI_SPEC_DIRS": "/a:/b/c:", "DOCKYARD_CDI_DISABLED": "0"}
    )
    assert config == CdiConfig(spec_dirs=(Path("/a"), Path("/b/c")))
    assert CdiConfig.from_env({"DOCKYARD_CDI_DISABLED": "true"}).disabled
    with pytest.raises(UsageError, match=r"\$DOCKYARD_CDI_DISABLED"):
        CdiConfig.from_env({"DOCKYARD_CDI_DISABLED": "maybe"})
    with pytest.raises(UsageError, match=r"\$DOCKYARD_CDI_SPEC_DIRS: .*'rel' must be an absolute"):
        CdiConfig.from_env({"DOCKYARD_CDI_SPEC_DIRS": "rel"})


def test_spec_dirs_are_read_only_on_use(tmp_path: Path) -> None:
    # making a registry reads nothing; a lookup does
    spec_dir = tmp_path / "cdi"
    shutil.copytree(DATA / "registry" / "dir2", spec_dir)
    registry = DeviceRegistry([spec_dir])
    shutil.rmtree(spec_dir)
    assert registry.devices() == ()


def test_yaml_loads_only_for_yaml_specs(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "a.json").write_text((DATA / "good" / "oldest.json").read_text())
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from dockyard.executor.cdi import DeviceRegistry\n"
        f"registry = DeviceRegistry([Path({str(tmp_path)!r})])\n"
        "assert [d.name for d in registry.devices()] == ['vendor.com/dev=a-1']\n"
        "print('yaml' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    (tmp_path / "b.yaml").write_text((DATA / "good" / "classes.yaml").read_text())
    code = code.replace(
        "== ['vendor.com/dev=a-1']",
        "[:1] == ['vendor.com/dev=a-1'] and len(registry.devices()) == 5",
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"
