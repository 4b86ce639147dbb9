"""``dockyard debug dump-llb``: JSON lines in Definition order; bad input is a clear error
with exit code 1, never a traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli.main import main

from . import bad_definitions, graphs, test_wire

ROOT = Path(__file__).resolve().parents[3]
HELLO = ROOT / "examples" / "hello.py"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["debug", "dump-llb", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dump_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "def.pb"
    path.write_bytes(test_wire.DEFINITION)
    code, out, err = run(capsys, str(path))
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["Digest"] for r in records] == [test_wire.sha(op) for op in test_wire.OPS]
    assert set(records[0]) == {"Digest", "Op", "OpMetadata"}
    assert (
        records[0]["Op"]["source"]["identifier"]
        == "docker-image://docker.io/library/busybox:latest"
    )
    assert (
        records[2]["Op"]["file"]["actions"][3]["secondaryInput"] == "3"
    )  # protobuf JSON: int64 as string
    assert records[1]["OpMetadata"]["description"] == {"llb.customname": "compile"}


def test_dump_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Stdin(io.TextIOWrapper):
        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdin", Stdin(io.BytesIO(test_wire.DEFINITION)))
    code, out, _ = run(capsys, "-")
    assert code == 0
    assert len(out.splitlines()) == len(test_wire.OPS)


def test_dump_python_build_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--python", str(HELLO), "--platform", graphs.PLATFORM)
    assert (code, err) == (0, "")
    assert out == (ROOT / "tests" / "data" / "llb" / "hello.jsonl").read_text()
    code, out, _ = run(
        capsys, "--python", str(HELLO), "--platform", graphs.PLATFORM, "--build-arg", "GREETING=hi"
    )
    assert code == 0
    assert "GREETING=hi" in out


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["{file}"], b"\xff\xff", "corrupt or truncated Definition"),
        (["{file}"], test_wire.DEFINITION[:-20], "corrupt or truncated Definition"),
        (["{dir}/missing.pb"], None, "no such file"),
        (["--python", "{dir}/missing.py"], None, "not found"),
        (["--python", "{file}"], b"def build(:\n", "build.py:1: syntax error"),
        (
            ["--python", "{file}"],
            b"x = 1\n\ndef build():\n    return x.nope\n",
            "build.py:4: AttributeError in build()",
        ),
        (["--python", "{file}", "--build-arg", "NOEQUALS"], b"", "KEY=VALUE"),
        (["{file}", "--platform", "linux/amd64"], b"", "apply to --python only"),
        (["{file}", "--python", "{file}"], b"", "not both"),
    ],
)
def test_bad_input_is_a_clear_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    content: bytes | None,
    message: str,
) -> None:
    file = tmp_path / "build.py"
    if content is not None:
        file.write_bytes(content)
    code, out, err = run(capsys, *(a.format(file=file, dir=tmp_path) for a in args))
    assert code in (1, 2)
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("ERROR: ")


def test_invalid_definition_exit_code_is_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "def.pb"
    path.write_bytes(test_wire.DEFINITION[: len(test_wire.DEFINITION) // 2])
    code, _, err = run(capsys, str(path))
    assert code == 1
    assert "invalid" in err or "corrupt" in err


def test_console_script_end_to_end(tmp_path: Path) -> None:
    # The real entry point in a subprocess: stdout carries only the JSON lines.
    dockyard = Path(sys.executable).parent / "dockyard"
    result = subprocess.run(
        [str(dockyard), "debug", "dump-llb", "--python", str(HELLO), "--platform", graphs.PLATFORM],
        check=True,
        capture_output=True,
        text=True,
    )
    assert result.stdout == (ROOT / "tests" / "data" / "llb" / "hello.jsonl").read_text()
    bad = subprocess.run(
        [str(dockyard), "debug", "dump-llb", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("ERROR:")


@pytest.mark.parametrize("case", sorted(bad_definitions.CASES))
def test_bad_definitions_through_the_console_script(tmp_path: Path, case: str) -> None:
    # The real entry point in a subprocess, so that an uncaught exception would show as
    # the interpreter's traceback on stderr.
    data, message = bad_definitions.CASES[case]
    path = tmp_path / "def.pb"
    path.write_bytes(data)
    dockyard = Path(sys.executable).parent / "dockyard"
    result = subprocess.run(
        [str(dockyard), "debug", "dump-llb", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("ERROR: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
