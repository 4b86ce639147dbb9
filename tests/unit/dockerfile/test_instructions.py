"""Typed instructions from golden cases (tests/data/dockerfile/instructions.txt)."""

from __future__ import annotations

import pytest

from dockyard.dockerfile import Expander, parse_dockerfile

from ._golden import Case, describe, describe_stage, load_cases

CASES = load_cases("instructions.txt")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_instructions(case: Case) -> None:
    dockerfile = parse_dockerfile(case.sections["Dockerfile"])
    lines = [describe(arg) for arg in dockerfile.meta_args]
    for stage in dockerfile.stages:
        lines.extend(describe_stage(stage))
    assert "\n".join(lines) == case.sections["expect"]
    if "env" not in case.sections:
        return
    env = dict(line.split("=", 1) for line in case.sections["env"].splitlines() if line)
    expander = Expander(env, escape=dockerfile.escape)
    expanded = [
        describe(command.expand(expander))
        for stage in dockerfile.stages
        for command in stage.commands
    ]
    assert "\n".join(expanded) == case.sections["expanded"]
    assert " ".join(expander.unmatched) == case.sections["unmatched"]
