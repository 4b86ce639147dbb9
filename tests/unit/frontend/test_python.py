"""The Python frontend: build files, their context, and errors located at file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import FrontendError, NotFoundError, Platform, UsageError
from dockyard.frontend import BuildContext, load_build_file


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "build.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_build_without_context(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from dockyard import llb

        def build():
            return llb.image("busybox").run(["true"]).root
        """,
    )
    state = load_build_file(path)
    assert isinstance(state, llb.State)
    assert [op.kind for op in state.marshal()] == ["source", "exec", ""]


def test_build_with_context(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from dockyard import llb

        def build(ctx):
            assert __name__ == "__dockyard_build__"
            assert __file__.endswith("build.py")
            st = llb.scratch().with_env("V", ctx.build_arg("VERSION", "none"))
            return st.with_env("P", str(ctx.platform)).with_env("F", ctx.filename)
        """,
    )
    state = load_build_file(
        path, build_args={"VERSION": "2"}, platform=Platform.parse("linux/arm64")
    )
    assert state.env == {"V": "2", "P": "linux/arm64", "F": str(path)}
    assert load_build_file(path).get_env("V") == "none"


def test_context_is_read_only() -> None:
    ctx = BuildContext(build_args={"A": "1"})
    with pytest.raises(TypeError):
        ctx.build_args["B"] = "2"  # type: ignore[index]
    assert ctx.build_arg("A") == "1"
    assert ctx.build_arg("B") is None


def test_keyword_only_and_defaulted_parameters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from dockyard import llb

        def build(ctx=None, *, extra=1):
            return llb.scratch().with_env("HAS_CTX", str(ctx is not None))
        """,
    )
    assert load_build_file(path).env == {"HAS_CTX": "True"}


@pytest.mark.parametrize(
    ("source", "error", "where", "message"),
    [
        ("def build(:\n    pass\n", FrontendError, "build.py:1", "syntax error"),
        (
            "x = 1\ny = 1 / 0\n",
            FrontendError,
            "build.py:2",
            "ZeroDivisionError while loading the build file",
        ),
        ("x = 1\n", FrontendError, "build.py", "must define a function build()"),
        ("build = 3\n", FrontendError, "build.py", "must define a function build()"),
        (
            "def build():\n    return 42\n",
            FrontendError,
            "build.py:1",
            "must return an llb.State, not int",
        ),
        (
            "def helper():\n    raise ValueError('boom')\n\ndef build():\n    return helper()\n",
            FrontendError,
            "build.py:2",
            "ValueError in build(): boom",
        ),
        (
            "from dockyard import llb\ndef build():\n    return llb.image('NOT VALID')\n",
            UsageError,
            "build.py:3",
            "invalid image reference",
        ),
        ("import sys\nsys.exit(3)\n", FrontendError, "build.py:2", "exited"),
        ("def build(a, b):\n    pass\n", FrontendError, "build.py:1", "at most one argument"),
        ("import not_a_module_anywhere\n", FrontendError, "build.py:1", "ModuleNotFoundError"),
    ],
)
def test_errors_are_located(
    tmp_path: Path, source: str, error: type[Exception], where: str, message: str
) -> None:
    path = write(tmp_path, source)
    with pytest.raises(error) as info:
        load_build_file(path)
    text = str(info.value)
    assert text.startswith(str(tmp_path / where))
    assert message in text
    locations = getattr(info.value, "locations", ())
    assert locations
    assert locations[0].filename == str(path)
    assert locations[0].data == path.read_bytes()


def test_error_location_shows_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "def build():\n    return undefined_name\n")
    with pytest.raises(FrontendError) as info:
        load_build_file(path)
    assert info.value.locations[0].lines() == ["    return undefined_name"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        load_build_file(tmp_path / "nope.py")


def test_directory_is_not_a_build_file(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="cannot read"):
        load_build_file(tmp_path)


def test_example_builds() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "hello.py"
    state = load_build_file(example, build_args={"GREETING": "hi"})
    definition = state.marshal()
    assert [op.kind for op in definition] == ["source", "exec", "file", ""]
    exec_op = definition.ops[1]
    assert "GREETING=hi" in exec_op.op.exec.meta.env
