"""``dockyard solve`` given a bad Definition (corrupt, truncated, an unknown input, an
index out of range, no terminal op): a clear error naming the op, exit code 1, and no
traceback — through the real console script, from a file and from stdin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.llb import bad_definitions

DOCKYARD = Path(sys.executable).parent / "dockyard"


def _solve(state: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_HOST"}
    return subprocess.run(
        [str(DOCKYARD), "solve", "--state-dir", str(state), "--progress", "plain", *args],
        input=stdin.decode("latin-1") if stdin is not None else "",
        capture_output=True,
        text=True,
        encoding="latin-1",
        env=env,
    )


@pytest.mark.parametrize("case", sorted(bad_definitions.CASES))
def test_a_bad_definition_is_a_clear_error(
    tmp_path: Path, case: str, mountinfo_unchanged: None
) -> None:
    data, message = bad_definitions.CASES[case]
    path = tmp_path / "def.pb"
    path.write_bytes(data)
    state = tmp_path / "state"
    out = tmp_path / "out"
    result = _solve(state, "-o", f"type=local,dest={out}", str(path))
    assert result.returncode == 1, result.stderr
    assert "ERROR: " in result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # nothing exported


def test_a_truncated_definition_on_stdin(tmp_path: Path, mountinfo_unchanged: None) -> None:
    data, message = bad_definitions.CASES["truncated"]
    result = _solve(tmp_path / "state", "-", stdin=data)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
