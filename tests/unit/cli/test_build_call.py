"""``dockyard build --call=build|check|outline|targets[,format=text|json]``: the flag
parsed (:class:`dockyard.cli._build.CallSpec`), what it asks of the build (nothing is
built: the run is replaced), how the answer prints, and bad values as usage errors."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from dockyard.cli import _build
from dockyard.cli._build import CallSpec
from dockyard.cli.main import main
from dockyard.client import BuildOptions, BuildResult
from dockyard.core import UsageError

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
        ("build,format=json", False, "format=json is for outline and targets"),
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

    async def build(self, options: BuildOptions, reporter: object) -> BuildResult:
        self.asked = options
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
