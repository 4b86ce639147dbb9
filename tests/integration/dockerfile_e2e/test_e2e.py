"""Dockerfiles built end to end by ``dockyard build`` give the files, modes, owners and
image config that docker's BuildKit gave for them (``peer/``), or, for features the peer
(BuildKit v0.8) lacks, what BuildKit's documentation says (``expected/``); a Dockerfile
with an error fails at its line with a message and exports nothing. The cases are data:
``tests/data/dockerfile/e2e/<case>/`` (see :mod:`.cases`).

``DOCKYARD_UPDATE_GOLDEN=1`` rewrites the ``expected/`` files of ``source = "docs"``
builds from Dockyard's results (review the diff against the documentation); the
``peer/`` files only ever come from ``peer/regenerate.py``. ``DOCKYARD_E2E_DUMP=DIR``
writes every build's actual result under DIR.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest

from . import cases as c
from .images import SavedImage, read_saved_image
from .runner import dockyard_build

CASES = c.load_cases()
UPDATE = os.environ.get("DOCKYARD_UPDATE_GOLDEN", "") not in ("", "0")
STEP = re.compile(r"^#\d+ \[(?!internal\])[^\]]*\] (?!FROM )", re.M)
"""A progress line of a build step (not the internal loading steps, not FROM)."""
DUMP = os.environ.get("DOCKYARD_E2E_DUMP", "")
"""A directory to write every build's actual result to (``<case>/<build>.tree/.json``),
for comparing by hand."""


def build_args(spec: c.BuildSpec, ws: c.Workspace, out: Path) -> list[str]:
    args = ["-f", str(ws.context / spec.dockerfile), "-o", f"type=docker,dest={out}"]
    if spec.target:
        args += ["--target", spec.target]
    for key, value in spec.build_args.items():
        args += ["--build-arg", f"{key}={ws.fill(value)}"]
    for key, value in spec.labels.items():
        args += ["--label", f"{key}={value}"]
    for ident, src in spec.secrets.items():
        args += ["--secret", f"id={ident},src={spec_case(spec).path / src}"]
    if spec.ssh:
        args += ["--ssh", "default"]
    for name, value in spec.build_contexts.items():
        kind, _, where = value.partition(":")
        if kind == "dir":
            value = str(ws.context / where)
        elif kind == "image":
            value = f"docker-image://{where}"
        elif kind == "oci-layout":
            value = f"oci-layout://{ws.fill(where)}"
        else:
            raise ValueError(f"{spec.id}: unknown build context kind {kind!r}")
        args += ["--build-context", f"{name}={value}"]
    if spec.tag:
        args += ["-t", spec.tag, "-o", "type=image"]
    return args


def diff(expected: str, actual: str) -> str:
    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            "expected",
            "dockyard",
        )
    )


def spec_case(spec: c.BuildSpec) -> c.Case:
    return next(case for case in CASES if case.name == spec.case)


def check_error(
    spec: c.BuildSpec, ws: c.Workspace, code: int, stderr: str, out: Path, state: Path
) -> list[str]:
    assert spec.error is not None
    problems = []
    if code != spec.error.exit_code:
        problems.append(f"exit code {code}, expected {spec.error.exit_code}")
    if spec.error.line and not re.search(rf"Dockerfile[^\s:]*:{spec.error.line}\b", stderr):
        problems.append(f"no Dockerfile:{spec.error.line} in the error output")
    wanted = [ws.fill(text) for text in spec.error.contains]
    problems += [f"no {t!r} in the error output" for t in wanted if t not in stderr]
    if spec.error.runs_nothing and STEP.search(stderr):
        problems.append(f"a build step ran: {STEP.search(stderr)}")
    if "Traceback" in stderr:
        problems.append("a traceback in the error output")
    if out.exists():
        problems.append(f"{out} was exported")
    if spec.tag and spec.tag in images_listing(state):
        problems.append(f"{spec.tag} was stored")
    return [f"{spec.id}: {p}\n--- stderr:\n{stderr}" for p in problems]


def images_listing(state: Path) -> str:
    from .runner import dockyard_cli

    return dockyard_cli(["images", "--state-dir", str(state)]).stdout


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(case: c.Case, e2e_state: Path, e2e_base: SavedImage, tmp_path: Path) -> None:
    problems = run_case(case, e2e_state, e2e_base, tmp_path)
    assert not problems, "\n\n".join(problems)


REBUILT = ("copy", "filesystem", "image-config", "language", "onbuild", "stages")


@pytest.mark.parametrize("name", REBUILT)
def test_a_rebuild_from_the_cache_gives_the_same_images(
    name: str, e2e_state: Path, e2e_base: SavedImage, tmp_path: Path
) -> None:
    """Built once more on the same state directory (test_case built them first, or this
    does): the steps come from the cache and the images are the same."""
    case = next(case for case in CASES if case.name == name)
    first = run_case(case, e2e_state, e2e_base, tmp_path / "first")
    assert not first, "\n\n".join(first)
    cached: list[str] = []
    again = run_case(case, e2e_state, e2e_base, tmp_path / "again", log=cached)
    assert not again, "\n\n".join(again)
    ran = [name for stderr in cached for name in steps_that_ran(stderr)]
    assert not ran, f"steps ran again instead of coming from the cache: {ran}"


STEP_NAME = re.compile(r"^#(\d+) (\[(?!internal\])[^\]]*\] (?:RUN|COPY|ADD|WORKDIR) .*)$", re.M)
STEP_DONE = re.compile(r"^#(\d+) DONE\b", re.M)


def steps_that_ran(stderr: str) -> list[str]:
    """The RUN/COPY/ADD/WORKDIR steps of plain progress output that ran (a step from
    the cache reports CACHED, not DONE)."""
    done = set(STEP_DONE.findall(stderr))
    return [name for number, name in STEP_NAME.findall(stderr) if number in done]


def run_case(
    case: c.Case,
    state: Path,
    base: SavedImage,
    tmp_path: Path,
    *,
    log: list[str] | None = None,
) -> list[str]:
    """Build every build of ``case`` and compare; the problems found (``log`` collects
    the progress output of the builds)."""
    problems: list[str] = []
    with c.workspace(case, tmp_path / "ws") as ws:
        for spec in case.builds:
            out = tmp_path / f"{spec.name}.tar"
            outcome = dockyard_build(state, ws.context, build_args(spec, ws, out), env=ws.env)
            if log is not None:
                log.append(outcome.stderr)
            if spec.error is not None:
                problems += check_error(spec, ws, outcome.code, outcome.stderr, out, state)
                continue
            if outcome.code != 0:
                problems.append(f"{spec.id}: the build failed:\n{outcome.stderr}")
                continue
            actual = c.result_of(read_saved_image(out), base, ws, times=spec.times)
            if DUMP:
                c.write_result(Path(DUMP) / case.name, spec.name, actual)
            if UPDATE and spec.source == "docs":
                c.write_result(c.DATA / case.name / "expected", spec.name, actual)
                continue
            expected = c.expected_result(spec)
            if actual.tree_text() != expected.tree_text():
                problems.append(
                    f"{spec.id}: files differ\n" + diff(expected.tree_text(), actual.tree_text())
                )
            if actual.config != expected.config:
                problems.append(
                    f"{spec.id}: image config differs\n"
                    + diff(expected.config_text(), actual.config_text())
                )
    return problems
