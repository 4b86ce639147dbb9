"""Startup is a feature: what the engine commands and packages import, and what not."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "from dockyard.cli.main import main; main(['--version'])",
        "from dockyard.cli.main import main; main(['--help'])",
        "import dockyard.cli._solve, dockyard.cli._du",
    ],
)
def test_cli_startup_loads_no_engine(code: str) -> None:
    modules = loaded_after(code)
    if "--version" in code:
        assert "asyncio" not in modules
    for heavy in (
        "dockyard.engine",
        "dockyard.cache",
        "dockyard.llb",
        "dockyard.dockerfile",
        "google.protobuf",
    ):
        assert heavy not in modules, f"{heavy} imported by {code!r}"


def test_engine_and_frontends_load_the_dockerfile_converter_only_when_used() -> None:
    modules = loaded_after(
        "import dockyard.engine, dockyard.frontend\n"
        "from dockyard.engine._plugins import frontends\n"
        "registry = frontends()"
    )
    assert "dockyard.dockerfile" not in modules
    assert "dockyard.cache" not in modules  # services load in Engine.open
    modules = loaded_after("from dockyard.frontend import DockerfileFrontend")
    assert "dockyard.dockerfile" in modules
