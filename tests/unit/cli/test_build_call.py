"""``dockyard build --call=build|check|outline|targets[,format=text|json]``: the flag
parsed (:class:`dockyard.cli._build.CallSpec`), what it asks of the build (nothing is
built: the run is replaced), how the answer prints, and bad values as usage errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from dockyard.cli import _build
from dockyard.cli._build import CallSpec
from dockyard.cli.main import main
from dockyard.client import BuildOptions, BuildResult
from dockyard.core import (
    BuildWarning,
    FrontendError,
    Reporter,
    SourceLocation,
    SourceRange,
    UsageError,
)
from dockyard.dockerfile import LintResults

from .test_build_flags import Captured, captured  # noqa: F401 - fixture


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)


def build(tmp_path: Path, *args: str) -> int:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    return main(["build", "--state-dir", str(tmp_path / "state"), *args, str(ctx)])


@pytest.mark.parametrize(
    ("value", "check", "expected"),
    [
        (None, False, CallSpec()),
        (None, True, CallSpec(name="check")),
        ("build", False, CallSpec()),
        ("check", True, CallSpec(name="check")),
        ("targets", False, CallSpec(name="targets")),
        ("outline,format=json", False, CallSpec(name="outline", format="json")),
        ("Outline, format=TEXT", False, CallSpec(name="outline")),
        ("targets,format=json", False, CallSpec(name="targets", format="json")),
        ("check,format=json", False, CallSpec(name="check", format="json")),
        ("check,format=json", True, CallSpec(name="check", format="json")),
    ],
)
def test_call_values(value: str | None, check: bool, expected: CallSpec) -> None:
    assert CallSpec.parse(value, check=check) == expected


def test_subrequest_of_each_call() -> None:
    assert [CallSpec(name=n).subrequest for n in ("build", "check", "outline", "targets")] == [
        None,
        None,
        "outline",
        "targets",
    ]


@pytest.mark.parametrize(
    ("value", "check", "message"),
    [
        ("lint", False, "--call lint: unknown function 'lint' (expected build, check, outline"),
        ("", False, "--call : unknown function ''"),
        ("outline,format=yaml", False, "--call outline,format=yaml: unknown format 'yaml'"),
        ("outline,colour=red", False, "--call outline,colour=red: unexpected 'colour=red'"),
        ("outline,targets", False, "--call outline,targets: unexpected 'targets'"),
        ("build,format=json", False, "format=json is for check, outline and targets"),
        ("outline", True, "--check is --call=check: it cannot go with --call=outline"),
    ],
)
def test_bad_call_values(value: str, check: bool, message: str) -> None:
    with pytest.raises(UsageError) as info:
        CallSpec.parse(value, check=check)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("flags", "check", "subrequest", "call_format"),
    [
        (["--call=targets"], False, "targets", "text"),
        (["--call", "outline,format=json", "--target", "app"], False, "outline", "json"),
        (["--call=check"], True, None, "text"),
        (["--check"], True, None, "text"),
        (["--call=check,format=json"], True, None, "json"),
        (["--check", "--call", "check,format=json"], True, None, "json"),
    ],
)
def test_call_reaches_the_build(
    captured: Captured,  # noqa: F811 - the fixture
    tmp_path: Path,
    flags: list[str],
    check: bool,
    subrequest: str | None,
    call_format: str,
) -> None:
    assert build(tmp_path, "-t", "app", *flags) == 0
    options = captured.options
    assert (options.check, options.subrequest) == (check, subrequest)
    assert not options.builds
    assert captured.kwargs["call_format"] == call_format
    assert captured.kwargs["memo"] is None  # a call that builds nothing is never replayed


def test_a_bad_call_is_a_usage_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(tmp_path, "--call=print") == 2
    err = capsys.readouterr().err
    assert "--call print: unknown function 'print'" in err
    assert "failed to solve" not in err
    assert not (tmp_path / "state").exists()  # no engine was opened


class _Client:
    """What ``run_build`` needs of a client: an async context and ``build``."""

    def __init__(self, result: BuildResult) -> None:
        self.result = result
        self.asked: BuildOptions | None = None

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def build(self, options: BuildOptions, reporter: Reporter) -> BuildResult:
        self.asked = options
        for warning in self.result.warnings:  # as the engine reports them
            reporter.emit(warning)
        return self.result


ANSWER = BuildResult(
    metadata=MappingProxyType(
        {"result.txt": "TARGET DESCRIPTION\napp    \n", "result.json": '{\n  "targets": []\n}'}
    ),
    built=False,
)


@pytest.mark.parametrize(
    ("call_format", "expected"),
    [("text", "TARGET DESCRIPTION\napp    \n"), ("json", '{\n  "targets": []\n}\n')],
)
def test_the_answer_prints_on_stdout(
    capsys: pytest.CaptureFixture[str], call_format: Any, expected: str
) -> None:
    client = _Client(ANSWER)
    options = BuildOptions(context=".", subrequest="targets")
    code = _build.run_build(
        client,  # type: ignore[arg-type]  # a stand-in
        options,
        progress="quiet",
        call_format=call_format,
    )
    assert code == 0
    assert client.asked is options
    out = capsys.readouterr().out
    assert out == expected


def test_no_answer_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    client = _Client(BuildResult(built=False))
    options = BuildOptions(context=".", subrequest="outline")
    code = _build.run_build(client, options, progress="quiet")  # type: ignore[arg-type]
    assert code == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "did not answer the outline request" in printed.err


# -- --call=check[,format=json] ---------------------------------------------------------

CHECKED = b"FROM busybox as base\nCMD run\n"
WARNING = BuildWarning(
    short="FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
    detail=("The 'as' keyword should match the case of the 'from' keyword",),
    url="https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
    rule="FromAsCasing",
    locations=(SourceLocation(filename="Dockerfile", ranges=(SourceRange(1, 1),), data=CHECKED),),
)
FAILURE = FrontendError("lint violation found for rules: FromAsCasing")


def checked(
    warnings: tuple[BuildWarning, ...] = (), *, failed: bool = False, document: bool = True
) -> BuildResult:
    """A check run's result as the engine returns it (the frontend's metadata)."""
    metadata: dict[str, str] = {"check.warnings": str(len(warnings))}
    if document:
        failure = FrontendError(FAILURE.message, locations=WARNING.locations) if failed else None
        results = LintResults.from_warnings(
            warnings, filename="Dockerfile", source=CHECKED, failure=failure
        )
        metadata["result.json"] = results.to_json()
        metadata["result.statuscode"] = str(results.status_code)
        metadata["version"] = "1.0.0"
    return BuildResult(metadata=MappingProxyType(metadata), warnings=warnings, built=False)


def run_check(
    result: BuildResult, call_format: Any, tmp_path: Path, progress: str = "plain"
) -> int:
    return _build.run_build(
        _Client(result),  # type: ignore[arg-type]  # a stand-in
        BuildOptions(context=".", check=True),
        progress=progress,
        call_format=call_format,
        metadata_file=str(tmp_path / "metadata.json"),
    )


def test_check_as_json_prints_the_document_and_exits_1_with_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = checked((WARNING,))
    assert run_check(result, "json", tmp_path) == 1
    printed = capsys.readouterr()
    assert printed.out == result.metadata["result.json"] + "\n"  # buildx: and a newline
    (warning,) = json.loads(printed.out)["warnings"]
    assert warning["ruleName"] == "FromAsCasing"
    # the warnings are in the document, not repeated on stderr; no text summary
    assert "FromAsCasing" not in printed.err
    assert "Check complete" not in printed.err
    assert (tmp_path / "metadata.json").exists()

    assert run_check(checked(), "json", tmp_path) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["warnings"] is None
    assert printed.err == ""


def test_check_as_json_with_a_failure_prints_it_after_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_check(checked((WARNING,), failed=True), "json", tmp_path) == 1
    printed = capsys.readouterr()
    document = json.loads(printed.out)
    assert document["buildError"]["message"] == "lint violation found for rules: FromAsCasing"
    assert printed.err.endswith(
        ">>> FROM busybox as base\n"
        "   2 |     CMD run\n"
        "--------------------\n"
        "ERROR: Dockerfile:1: lint violation found for rules: FromAsCasing\n"
    )
    assert not (tmp_path / "metadata.json").exists()  # the checks failed


def test_check_as_text_is_the_summary_or_the_failed_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_check(checked((WARNING,)), "text", tmp_path) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "FromAsCasing: 'as' and 'FROM' keywords' casing do not match" in printed.err
    assert printed.err.endswith("Check complete, 1 warning has been found!\n")

    assert run_check(checked(), "text", tmp_path) == 0
    assert capsys.readouterr().err.endswith("Check complete, no warnings found.\n")

    # a failure in the document: reported as the build's error, as before
    (tmp_path / "metadata.json").unlink()
    assert run_check(checked((WARNING,), failed=True), "text", tmp_path) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.endswith(
        "ERROR: failed to solve: Dockerfile:1: lint violation found for rules: FromAsCasing\n"
    )
    assert "Check complete" not in printed.err
    assert not (tmp_path / "metadata.json").exists()


def test_check_without_a_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an engine that answers no lint document: text as before, JSON cannot be printed
    assert run_check(checked((WARNING,), document=False), "text", tmp_path) == 1
    assert capsys.readouterr().err.endswith("Check complete, 1 warning has been found!\n")
    assert run_check(checked(document=False), "json", tmp_path) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "the frontend did not answer the check request" in printed.err
