"""The answer of a check run (:class:`dockyard.dockerfile.LintResults`): BuildKit's
``lint.LintResults`` document byte for byte (golden cases in
tests/data/dockerfile/lint-results.txt), read back, and its failure as the error a build
raises."""

from __future__ import annotations

import base64
import json

import pytest

from dockyard.core import BuildWarning, FrontendError, SourceLocation, SourceRange
from dockyard.dockerfile import (
    LINT_VERSION,
    LintFailure,
    LintResults,
    LintWarning,
    lint,
    parse_dockerfile,
)

from ._golden import Case, load_cases

CASES = load_cases("lint-results.txt")


def answer(text: str, filename: str = "Dockerfile") -> LintResults:
    """What the frontend answers for ``text``: the checks, or the parse error that
    stops them."""
    data = text.encode()
    try:
        dockerfile = parse_dockerfile(data, filename=filename)
    except FrontendError as exc:
        return LintResults.from_warnings((), filename=filename, source=data, failure=exc)
    report = lint(dockerfile)
    return LintResults.from_warnings(
        report.warnings, filename=filename, source=data, failure=report.error()
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_document_is_buildkits(case: Case) -> None:
    results = answer(case.sections["Dockerfile"])
    assert results.to_json() == case.sections["result.json"]
    assert str(results.status_code) == case.sections["statuscode"]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_document_reads_back(case: Case) -> None:
    results = answer(case.sections["Dockerfile"])
    again = LintResults.from_json(results.to_json())
    assert again == results
    assert again.to_json() == results.to_json()
    error, before = again.error(), results.error()
    assert (str(error) if error else None) == (str(before) if before else None)


def test_field_order_and_omitempty_follow_the_go_structs() -> None:
    document = json.loads(answer("FROM alpine as build\n").to_json())
    assert list(document) == ["warnings", "sources"]  # no buildError: omitempty
    (warning,) = document["warnings"]
    assert list(warning) == ["ruleName", "description", "url", "detail", "location"]
    assert list(document["sources"][0]) == ["filename", "data", "language"]
    # source 0: sourceIndex is left out, as Go leaves a zero int32 out
    assert warning["location"] == {"ranges": [{"start": {"line": 1}, "end": {"line": 1}}]}
    bare = LintWarning(rule="Custom").as_json()
    assert bare == {"ruleName": "Custom"}  # every other field is omitempty
    failed = LintFailure(message="broken").as_json()
    assert failed == {"message": "broken", "location": {}}  # a struct: always there


def test_characters_are_written_where_known() -> None:
    location = SourceLocation(filename="Dockerfile", ranges=(SourceRange(2, 3, 5, 0),))
    warning = LintWarning(rule="R", location=location).as_json()
    assert warning["location"] == {
        "ranges": [{"start": {"line": 2, "character": 5}, "end": {"line": 3}}]
    }


def test_the_detail_is_the_message_without_rule_and_line() -> None:
    located = SourceLocation(filename="Dockerfile", ranges=(SourceRange(4, 4),))
    warning = BuildWarning(
        short="UndefinedVar: Usage of undefined variable '$X' (line 4)",
        detail=("Variables should be defined before their use",),
        url="https://docs.docker.com/go/dockerfile/rule/undefined-var/",
        rule="UndefinedVar",
        locations=(located,),
    )
    converted = LintWarning.from_warning(warning)
    assert converted.detail == "Usage of undefined variable '$X'"
    assert converted.description == "Variables should be defined before their use"
    assert converted.location == located
    unlocated = BuildWarning(short="Odd: something (line 4)", rule="Odd")
    assert LintWarning.from_warning(unlocated).detail == "something (line 4)"


def test_the_failure_is_the_error_a_build_raises() -> None:
    text = "# check=error=true\nFROM alpine\nCMD run\n"
    raised = lint(parse_dockerfile(text)).error()  # what a build raises
    assert raised is not None
    results = LintResults.from_json(answer(text).to_json())
    error = results.error()
    assert error is not None
    assert (
        str(error)
        == str(raised)
        == ("Dockerfile:3: lint violation found for rules: JSONArgsRecommended")
    )
    (location,) = error.locations
    assert location.data == text.encode()  # the Dockerfile, for the source excerpt
    assert location.lines() == ["CMD run"]
    assert answer("FROM alpine\n").error() is None
    unlocated = LintResults(failure=LintFailure(message="no location"))
    assert LintResults.from_json(unlocated.to_json()).error() is not None
    assert str(LintResults.from_json(unlocated.to_json()).error()) == "no location"


def test_a_document_as_buildkit_writes_it_reads() -> None:
    # a second source, a definition and characters: what this module does not write
    document = {
        "warnings": [
            {
                "ruleName": "StageNameCasing",
                "description": "Stage names should be lowercase",
                "detail": "Stage name 'Build' should be lowercase",
                "location": {
                    "sourceIndex": 1,
                    "ranges": [{"start": {"line": 2, "character": 3}, "end": {"line": 2}}],
                },
            }
        ],
        "sources": [
            {"filename": "other", "data": base64.b64encode(b"x").decode()},
            {
                "filename": "ci/Dockerfile",
                "data": base64.b64encode(b"# s\nFROM a AS Build\n").decode(),
                "definition": {"def": []},
                "language": "Dockerfile",
            },
        ],
        "buildError": {"message": "stopped", "location": {}},
    }
    results = LintResults.from_json(json.dumps(document))
    (warning,) = results.warnings
    assert warning.rule == "StageNameCasing"
    assert warning.url == ""
    assert warning.location is not None
    assert warning.location.filename == "ci/Dockerfile"
    assert warning.location.ranges == (SourceRange(2, 2, 3, 0),)
    assert warning.location.lines() == ["FROM a AS Build"]
    assert results.failure == LintFailure(message="stopped")
    assert results.status_code == 1


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"warnings": [{"detail": "no rule name"}], "sources": []}',
        '{"warnings": null, "sources": [{"filename": "D", "data": "%%%"}]}',
        '{"warnings": [{"ruleName": "R", "location": {"sourceIndex": 3, "ranges": '
        '[{"start": {"line": 1}, "end": {"line": 1}}]}}], "sources": []}',
        '{"buildError": {"location": {}}}',
    ],
)
def test_a_document_that_is_not_one_is_a_frontend_error(text: str) -> None:
    with pytest.raises(FrontendError, match="the check result is not a lint document"):
        LintResults.from_json(text)


def test_version() -> None:
    assert LINT_VERSION == "1.0.0"
