"""Secrets given to a build leave no trace in what Dockyard itself writes or says:
progress (plain and rawjson), the error of a failing step, ``--metadata-file``, the
state directory and max-mode provenance. (A step's own output is the step's business:
BuildKit masks nothing there either.)"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from dockyard.cli.main import main

from .conftest import all_bytes_under


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


def _assert_nowhere(values: tuple[bytes, ...], *places: tuple[str, bytes]) -> None:
    for value in values:
        for name, data in places:
            assert value not in data, f"a secret in {name}"


@pytest.mark.parametrize("progress", ["plain", "rawjson"])
def test_a_failing_step_with_secrets_says_none_of_them(
    state: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    progress: str,
) -> None:
    token = "file-" + secrets.token_hex(16)
    from_env = "env-" + secrets.token_hex(16)
    monkeypatch.setenv("DY_TEST_SECRET", from_env)
    (tmp_path / "token").write_text(token)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token --mount=type=secret,id=envtok,env=TOKEN_ENV "
        "--mount=type=secret,id=token,env=FILE_ENV "
        'test -n "$TOKEN_ENV" && test -n "$FILE_ENV" && test -s /run/secrets/token; exit 3\n'
    )
    meta = tmp_path / "meta.json"
    code = build(
        state,
        "--progress",
        progress,
        "--secret",
        f"id=token,src={tmp_path / 'token'}",
        "--secret",
        "id=envtok,env=DY_TEST_SECRET",
        "--metadata-file",
        str(meta),
        "-o",
        f"type=local,dest={tmp_path / 'out'}",
        str(ctx),
    )
    captured = capsys.readouterr()
    assert code != 0
    assert "exit code: 3" in captured.err + captured.out
    places = [("stderr", captured.err.encode()), ("stdout", captured.out.encode())]
    if meta.exists():
        places.append(("metadata file", meta.read_bytes()))
    places += [(str(p), data) for p, data in all_bytes_under(state)]
    _assert_nowhere((token.encode(), from_env.encode()), *places)
