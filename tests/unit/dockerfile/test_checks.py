"""Build checks from golden cases (tests/data/dockerfile/checks.txt)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dockyard import llb
from dockyard.core import FrontendError, Platform, SourceLocation, SourceRange
from dockyard.dockerfile import (
    RULES,
    BaseImage,
    CheckConfig,
    ConvertOptions,
    Expander,
    Linter,
    ResolvedImage,
    convert,
    lint,
    parse_dockerfile,
)

from ._golden import Case, load_cases
from .test_convert_golden import FakeResolver

CASES = load_cases("checks.txt")


def _base_env(section: str) -> dict[str, BaseImage]:
    images: dict[str, BaseImage] = {}
    for line in section.splitlines():
        image, *items = line.split()
        env: dict[str, str] = {}
        shell: tuple[str, ...] = ()
        mismatch: tuple[str, str] | None = None
        for item in items:
            if item.startswith("@shell="):
                shell = tuple(item.removeprefix("@shell=").split(","))
            elif item.startswith("@mismatch="):
                actual, expected = item.removeprefix("@mismatch=").split(",")
                mismatch = (actual, expected)
            else:
                key, _, value = item.partition("=")
                env[key] = value
        images[image] = BaseImage(env=env, shell=shell, platform_mismatch=mismatch)
    return images


def run_case(case: Case) -> tuple[list[str], str]:
    dockerfile = parse_dockerfile(case.sections["Dockerfile"])
    build_args = dict(
        line.split("=", 1) for line in case.sections.get("build-args", "").splitlines() if line
    )
    images = _base_env(case.sections.get("base-env", ""))
    report = lint(
        dockerfile,
        build_args=build_args,
        target=case.sections.get("target") or None,
        base_env=images.get if images else None,
        ignore=case.sections.get("dockerignore", "").splitlines(),
    )
    error = report.error()
    return [w.short for w in report.warnings], str(error) if error else "none"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_checks(case: Case) -> None:
    warnings, error = run_case(case)
    expected = case.sections["warnings"]
    assert warnings == (expected.splitlines() if expected else [])
    assert error == case.sections["error"]


def test_warnings_carry_rule_url_and_location() -> None:
    dockerfile = parse_dockerfile("FROM alpine as build\n", filename="ci/Dockerfile")
    (warning,) = lint(dockerfile).warnings
    assert warning.rule == "FromAsCasing"
    assert warning.url == "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
    assert warning.detail == (RULES["FromAsCasing"].description,)
    location = warning.locations[0]
    assert location.filename == "ci/Dockerfile"
    assert location.ranges[0].start == 1


def test_config_argument_overrides_directive() -> None:
    dockerfile = parse_dockerfile("# check=skip=all\nFROM alpine as build\n")
    assert lint(dockerfile).warnings == ()
    report = lint(dockerfile, config=CheckConfig.parse("error=true"))
    assert [w.rule for w in report.warnings] == ["FromAsCasing"]
    assert isinstance(report.error(), FrontendError)


def test_converter_reports_undefined_vars_through_linter() -> None:
    # The converter expands with the real stage environment and reports what is missing.
    dockerfile = parse_dockerfile("FROM alpine\nARG DECLARED\nCOPY $HOME $DECLARED $NOPE /x\n")
    copy = dockerfile.stages[0].commands[1]
    expander = Expander({"HOME": "/root", "HOST": "h"})
    copy.expand(expander)
    linter = Linter(dockerfile.check)
    linter.undefined_vars(
        expander.unmatched,
        build_args=["DECLARED"],
        env_keys=["HOME", "HOST"],
        location=copy.location,
    )
    assert [w.short for w in linter.warnings] == [
        "UndefinedVar: Usage of undefined variable '$NOPE' (did you mean $HOME?) (line 3)"
    ]


@pytest.mark.parametrize(
    ("text", "config"),
    [
        ("", CheckConfig()),
        ("skip=all", CheckConfig(skip_all=True)),
        ("skip=A, B ;error=true", CheckConfig(skip=frozenset({"A", "B"}), error=True)),
        ("error=false", CheckConfig()),
        (" error = 1 ", CheckConfig(error=True)),
        (
            "experimental=all;skip=A;error=true",
            CheckConfig(skip=frozenset({"A"}), error=True, experimental_all=True),
        ),
        (
            "experimental=B, C",
            CheckConfig(experimental=frozenset({"B", "C"})),
        ),
    ],
)
def test_check_config_parse(text: str, config: CheckConfig) -> None:
    assert CheckConfig.parse(text) == config


@pytest.mark.parametrize("text", ["skip", "error=maybe", "warn=true", "skip=a;error=true;x=y"])
def test_check_config_rejects(text: str) -> None:
    location = SourceLocation(filename="Dockerfile", ranges=(SourceRange(1, 1),))
    with pytest.raises(FrontendError, match="failed to parse check options"):
        CheckConfig.parse(text, location=location)


class _OtherPlatform(FakeResolver):
    """Answers every request with the image built for linux/arm64 (a single-platform
    image: the registry has nothing else)."""

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        found = await super().resolve(ref, platform=platform, resolve_mode=resolve_mode)
        assert found.config is not None
        config = json.loads(found.config)
        config.update(architecture="arm64", os="linux")
        config.pop("variant", None)
        return dataclasses.replace(found, config=json.dumps(config).encode())


@pytest.mark.parametrize(
    ("platform", "warned"),
    [(Platform.parse("linux/amd64"), True), (Platform.parse("linux/arm64/v8"), False)],
)
async def test_the_converter_reports_a_base_image_of_another_platform(
    platform: Platform, warned: bool
) -> None:
    dockerfile = parse_dockerfile("FROM alpine:3.19\nRUN true\n")
    options = ConvertOptions(target_platform=platform, build_platform=platform)
    result = await convert(dockerfile, options, _OtherPlatform())
    expected = [
        'InvalidBaseImagePlatform: Base image alpine:3.19 was pulled with platform "linux/arm64",'
        ' expected "linux/amd64" for current build (line 1)'
    ]
    assert [w.short for w in result.warnings] == (expected if warned else [])


def test_experimental_rules_run_only_when_named() -> None:
    text = "# a comment that is no description\nARG VERSION=1\nFROM scratch\n"
    rule = "InvalidDefinitionDescription"
    assert RULES[rule].experimental
    assert lint(parse_dockerfile(text)).warnings == ()
    for value in ("experimental=all", f"experimental={rule}", f"skip=all;experimental={rule}"):
        report = lint(parse_dockerfile(text), config=CheckConfig.parse(value))
        assert [w.rule for w in report.warnings] == [rule], value
    # naming a rule as experimental takes it out of skip (BuildKit's reading)
    config = CheckConfig.parse("skip=MaintainerDeprecated;experimental=MaintainerDeprecated")
    assert config.enabled("MaintainerDeprecated")
