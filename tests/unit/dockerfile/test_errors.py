"""Every malformed Dockerfile fails with ``Dockerfile:LINE: message``
(tests/data/dockerfile/errors.txt)."""

from __future__ import annotations

import pytest

from dockyard.core import FrontendError
from dockyard.dockerfile import Expander, parse_dockerfile

from ._golden import Case, load_cases

CASES = load_cases("errors.txt")


def _parse_and_expand(case: Case) -> None:
    dockerfile = parse_dockerfile(case.sections["Dockerfile"])
    if "env" not in case.sections:
        return
    env = dict(line.split("=", 1) for line in case.sections["env"].splitlines() if line)
    expander = Expander(env, escape=dockerfile.escape)
    for stage in dockerfile.stages:
        for command in stage.commands:
            command.expand(expander)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_error(case: Case) -> None:
    with pytest.raises(FrontendError) as info:
        _parse_and_expand(case)
    assert str(info.value) == case.sections["error"]
    location = info.value.locations[0]
    assert location.filename == "Dockerfile"
    assert location.ranges


def test_errors_carry_the_source_lines() -> None:
    with pytest.raises(FrontendError) as info:
        parse_dockerfile("FROM scratch\nRUN --network=bridge \\\n  true\n")
    assert info.value.locations[0].lines() == ["RUN --network=bridge \\", "  true"]


def test_filename_is_used_in_locations() -> None:
    with pytest.raises(FrontendError, match=r"^build/app\.Dockerfile:1: unknown instruction"):
        parse_dockerfile("FORM alpine\n", filename="build/app.Dockerfile")
