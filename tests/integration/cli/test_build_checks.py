"""Build checks through ``dockyard build`` (issue 5, deliver 5): the lint rules run on
every build and their warnings are printed at the end; ``# check=skip=…;error=true``
turns the rules that are not skipped into a failure at the offending line before any
step runs. (``--check`` alone: ``test_build.py::test_check_mode``.) Also: independent
stages of a multi-stage Dockerfile run at the same time."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cli.main import main


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), "--progress", "plain", *args])


def context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def test_a_build_runs_and_prints_its_warnings_at_the_end(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(
        tmp_path,
        "FROM busybox as base\nMAINTAINER someone\nRUN echo built > /built.txt\nCMD echo hi\n",
    )
    out = tmp_path / "out"
    assert build(state, "-o", f"type=local,dest={out}", str(ctx)) == 0
    err = capsys.readouterr().err
    assert (out / "built.txt").read_text() == "built\n"  # the warnings stopped nothing
    summary = err[err.index(" 3 warnings found") :]
    assert err.index("RUN echo built") < err.index(" 3 warnings found")
    assert "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)" in summary
    assert (
        "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label"
        " (line 2)"
    ) in summary
    assert (
        "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended"
        " behavior related to OS signals (line 4)"
    ) in summary


def test_check_directive_skip_and_error(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(
        tmp_path,
        "# check=skip=FromAsCasing;error=true\n"
        "FROM busybox as base\n"
        "RUN echo never > /never.txt\n"
        "CMD echo hi\n",
    )
    out = tmp_path / "out"
    assert build(state, "-o", f"type=local,dest={out}", str(ctx)) == 1
    err = capsys.readouterr().err
    assert "Dockerfile:4: lint violation found for rules: JSONArgsRecommended" in err
    assert "FromAsCasing" not in err  # skipped
    assert "] RUN echo never" not in err  # no step started (only the source excerpt)
    assert ">>> CMD echo hi" in err
    assert not out.exists()
    assert "Traceback" not in err

    # with every failing rule skipped, error=true has nothing to fail on
    context(
        tmp_path,
        "# check=skip=FromAsCasing,JSONArgsRecommended;error=true\n"
        "FROM busybox as base\n"
        "RUN echo built > /built.txt\n"
        "CMD echo hi\n",
    )
    assert build(state, "-o", f"type=local,dest={out}", str(ctx)) == 0
    err = capsys.readouterr().err
    assert (out / "built.txt").read_text() == "built\n"
    assert "warnings found" not in err


def test_independent_stages_run_at_the_same_time(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 5, deliver 4: independent stages run in parallel. Each of two stages marks
    its start in a shared cache mount and then waits (up to 20 s) for the other's mark;
    built one after the other, the first would give up and fail the build."""
    wait = (
        "RUN --mount=type=cache,id=rendezvous,target=/sync,sharing=shared "
        "touch /sync/{me} && i=0 && "
        "while [ ! -e /sync/{other} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done && "
        "test -e /sync/{other} && echo {me} > /{me}.txt\n"
    )
    ctx = context(
        tmp_path,
        "FROM busybox AS a\n"
        + wait.format(me="a", other="b")
        + "FROM busybox AS b\n"
        + wait.format(me="b", other="a")
        + "FROM scratch\nCOPY --from=a /a.txt /\nCOPY --from=b /b.txt /\n",
    )
    out = tmp_path / "out"
    code = build(state, "-o", f"type=local,dest={out}", str(ctx))
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
