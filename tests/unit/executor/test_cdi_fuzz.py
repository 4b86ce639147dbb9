"""CDI spec files under machine-made input: a full spec with one field at a time set to
an odd value, as JSON and as YAML, is a spec or a ConfigError naming the file, never
another exception; what is accepted applies to a runtime spec or fails with the
documented errors; the registry skips a bad file and keeps the others' devices."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.core import ConfigError, ExecError, NotFoundError
from dockyard.executor.cdi import DeviceRegistry, apply_edits, parse_spec

EDITS: dict[str, Any] = {
    "env": ["A=1", "B=2"],
    "deviceNodes": [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "permissions": "rw"},
        {"path": "/dev/h77", "hostPath": "/dev/zero", "uid": 1, "gid": 2, "fileMode": 420},
    ],
    "mounts": [{"hostPath": "/h", "containerPath": "/c", "options": ["ro"], "type": "bind"}],
    "hooks": [{"hookName": "createRuntime", "path": "/bin/true", "args": ["t"], "env": ["X=1"]}],
    "additionalGids": [5, 6],
    "intelRdt": {"closID": "c", "l3CacheSchema": "L3:0=f"},
}
FULL: dict[str, Any] = {
    "cdiVersion": "0.7.0",
    "kind": "vendor.com/gpu",
    "annotations": {"vendor.com/a": "b"},
    "devices": [
        {"name": "a", "annotations": {"k": "v"}, "containerEdits": EDITS},
        {"name": "1b", "containerEdits": {"env": ["C=3"]}},
    ],
    "containerEdits": {"env": ["TOP=1"]},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


PATHS = _paths(FULL)[1:]
ODD = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            0,
            -1,
            2**32,
            2**64,
            10**400,
            1.5,
            float("inf"),
            float("nan"),
            "",
            "\x00",
            "/dev/\x00null",
            2**20000,
            "A=\x00",
            "=x",
            "relative/path",
            "/",
            "/dev/../etc/passwd",
            "vendor.com/gpu",
            "a" * 300,
            "\ud800",
            "Ω",
            "0.0.1",
            "99.0.0",
            [],
            [None],
            ["A"],
            {},
            {"x": 1},
        ]
    ),
    st.text(max_size=6),
    st.integers(),
)


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(FULL)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        try:
            _set(document, path, draw(ODD))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change replaced a parent
    if draw(st.booleans()):
        document[draw(st.sampled_from(["devices", "kind", "x"]))] = draw(ODD)
    return document


class _Dumper(yaml.SafeDumper):
    """Writes integers past 64 bits in hex, which YAML reads back without Python's
    4300-digit limit on decimal text."""


_Dumper.add_representer(
    int,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:int", hex(value) if value.bit_length() > 64 else str(value)
    ),
)


def _yaml_text(document: dict[str, Any]) -> str | None:
    try:
        return yaml.dump(document, Dumper=_Dumper, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return None  # a value YAML cannot write (a lone surrogate, a 400-digit int)


def _check_applies(spec: Any) -> None:
    edits = [spec.edits, *(d.edits for d in spec.devices)]
    try:
        apply_edits({"process": {"env": ["PATH=/bin"]}}, edits)
    except (NotFoundError, ExecError):
        pass


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_any_spec_is_checked_or_a_config_error(document: dict[str, Any]) -> None:
    texts = [("/etc/cdi/x.yaml", True, _yaml_text(document))]
    try:
        texts.append(("/etc/cdi/x.json", False, json.dumps(document)))
    except ValueError:
        pass
    for name, is_yaml, text in texts:
        if text is None:
            continue
        try:
            spec = parse_spec(text, path=Path(name), yaml=is_yaml)
        except ConfigError as exc:
            message = str(exc)
        else:
            _check_applies(spec)
            continue
        assert message.startswith(f"{name}: "), message


_BASE = 'cdiVersion: "0.6.0"\nkind: vendor.com/class\ndevices:\n- name: dev\n'


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (_BASE.replace("name: dev", "name: " + "9" * 5000), "not valid YAML"),
        (_BASE + "  containerEdits: {env: [A=1]}\nx: " + "9" * 5000, "not valid YAML"),
        (_BASE.replace("name: dev", "name: 0x" + "f" * 5000), "name: must be a string"),
        (
            _BASE
            + "  containerEdits: {deviceNodes: [{path: /dev/null, uid: 0x"
            + "f" * 5000
            + "}]}",
            "uid: an integer of 20000 bits is out of range",
        ),
        (_BASE + "  containerEdits: {env: 0b" + "1" * 20000 + "}", "env: must be a list"),
        (_BASE + '  containerEdits: {env: ["A=\\0"]}\n', "env[0]"),
        (
            _BASE + "  containerEdits: {hooks: [{hookName: createRuntime, path: /bin/true,"
            ' args: ["a\\0"]}]}\n',
            "args[0]",
        ),
        (
            _BASE + "  containerEdits: {mounts: [{hostPath: /h, containerPath: /c,"
            ' options: ["ro\\0"]}]}\n',
            "options[0]",
        ),
    ],
)
def test_values_no_step_can_take_are_config_errors(text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=r"^/etc/cdi/x\.yaml: ") as info:
        parse_spec(text, path=Path("/etc/cdi/x.yaml"), yaml=True)
    assert where in str(info.value)


def test_a_bad_spec_file_leaves_the_others_devices(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(_BASE.replace("name: dev", "name: " + "9" * 5000))
    (tmp_path / "good.yaml").write_text(
        _BASE.replace("vendor.com/class", "v.com/c") + "  containerEdits: {env: [A=1]}\n"
    )
    registry = DeviceRegistry([tmp_path])
    assert [d.name for d in registry.devices()] == ["v.com/c=dev"]
    assert any("bad.yaml" in problem for problem in registry.problems())
