"""Startup is a feature: ``dockyard build`` imports what a build needs, when it needs it."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_the_command_and_the_client_load_no_engine_and_no_grpc() -> None:
    modules = loaded_after(
        "import dockyard.cli._build, dockyard.client\n"
        "from dockyard.cli.main import main\n"
        "main(['build', '--help'])"
    )
    for heavy in ("grpc", "google.protobuf", "dockyard.engine", "dockyard.cache", "dockyard.llb"):
        assert heavy not in modules, heavy


def test_version_stays_light() -> None:
    modules = loaded_after("from dockyard.cli.main import main; main(['--version'])")
    assert "dockyard.client" not in modules
    assert "asyncio" not in modules
