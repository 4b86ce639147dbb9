"""``RUN --device`` (CDI devices): the flag's forms and errors naming the line
(tests/data/dockerfile/run-device.txt), and the exec ops it converts to."""

from __future__ import annotations

import pytest

from dockyard.core import FrontendError, Platform
from dockyard.dockerfile import (
    ConvertOptions,
    RunDevice,
    RunInstruction,
    convert,
    parse_device,
    parse_dockerfile,
)

from ._golden import Case, load_cases
from .test_convert_golden import FakeResolver

CASES = load_cases("run-device.txt")


def _devices(instruction: RunInstruction) -> str:
    line = instruction.location.ranges[0].start
    names = ", ".join(
        f"{d.name} {'required' if d.required else 'optional'}" for d in instruction.devices
    )
    return f"{line} {names}"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_run_device(case: Case) -> None:
    text = case.sections["Dockerfile"]
    if "error" in case.sections:
        with pytest.raises(FrontendError) as info:
            parse_dockerfile(text)
        assert str(info.value) == case.sections["error"]
        assert info.value.locations[0].ranges
        return
    dockerfile = parse_dockerfile(text)
    runs = [
        command
        for stage in dockerfile.stages
        for command in stage.commands
        if isinstance(command, RunInstruction)
    ]
    assert "\n".join(_devices(r) for r in runs) == case.sections["devices"]


def test_parse_device_values() -> None:
    assert parse_device("v.com/c=a") == RunDevice(name="v.com/c=a")
    assert parse_device("v.com/c=a,required") == RunDevice(name="v.com/c=a", required=True)
    assert parse_device("name=v.com/c,required=0") == RunDevice(name="v.com/c")


async def test_devices_become_cdi_devices_of_the_exec() -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN --device=vendor1.com/device=foo --device=class1,required env\n"
        "RUN echo plain\n"
    )
    options = ConvertOptions(build_platform=Platform.parse("linux/amd64"))
    result = await convert(parse_dockerfile(dockerfile), options, FakeResolver())
    execs = [node for node in result.definition() if node.kind == "exec"]
    assert len(execs) == 2
    first, second = execs
    if not first.op.exec.cdiDevices:
        first, second = second, first
    assert [(d.name, d.optional) for d in first.op.exec.cdiDevices] == [
        ("vendor1.com/device=foo", True),
        ("class1", False),
    ]
    assert first.metadata.caps["exec.meta.cdi"]
    assert not second.op.exec.cdiDevices
    assert "exec.meta.cdi" not in second.metadata.caps
