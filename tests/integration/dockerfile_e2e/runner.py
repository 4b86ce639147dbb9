"""Dockyard's side of an end-to-end build: ``dockyard build`` run in this process
(``dockyard.cli.main.main``) with its output captured."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.cli.main import main


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dockyard_cli(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Outcome:
    """``dockyard ARGV`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(env or {}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(list(argv))
    return Outcome(code=code, stdout=out.getvalue(), stderr=err.getvalue())


def dockyard_build(
    state: Path, context: Path, args: Sequence[str], *, env: Mapping[str, str] | None = None
) -> Outcome:
    """``dockyard build --state-dir STATE --progress plain ARGS CONTEXT``."""
    argv = ["build", "--state-dir", str(state), "--progress", "plain", *args, str(context)]
    return dockyard_cli(argv, env=env)
