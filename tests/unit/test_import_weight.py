"""Import weight of the hot paths: a cached rebuild is mostly Python start-up and
imports, so what the seams and a cached solve load is pinned here (module sets, never
timings). A module listed as absent may well be needed elsewhere: it must just not load
where nothing uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard import llb

# never on a cached build that pulls nothing and shows no tty progress
HEAVY = ("httpx", "rich", "pygments", "grpc", "zstandard", "zlib_ng")


def loaded_after(code: str, *, cwd: Path | None = None) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        (
            "import dockyard.snapshot",
            ("dockyard.snapshot._native", "dockyard.snapshot._overlay", "tarfile"),
        ),
        (
            "from dockyard.snapshot import new_snapshotter, Mount, Kind",
            ("dockyard.snapshot._native", "dockyard.snapshot._overlay", "tarfile"),
        ),
        (
            "from dockyard.snapshot import OverlaySnapshotter",
            ("dockyard.snapshot._native", "tarfile"),
        ),
        (
            "import dockyard.source",
            ("dockyard.source._git", "dockyard.source._http", "dockyard.source._image", "tarfile"),
        ),
        (
            "from dockyard.source import parse_remote_context, LocalSource",
            ("dockyard.source._git", "dockyard.source._http", "dockyard.source._image", "httpx"),
        ),
        (
            "from dockyard.source import remote_sources\nremote_sources(object())  # type: ignore",
            ("dockyard.source._git", "dockyard.source._http", "dockyard.source._git_cli"),
        ),
        (
            "from dockyard.registry._http import _import_httpx\n_import_httpx()",
            ("rich", "pygments", "click", "httpx._main"),
        ),
    ],
)
def test_seams_load_only_what_they_name(code: str, absent: tuple[str, ...]) -> None:
    modules = loaded_after(code)
    for name in absent:
        assert name not in modules, f"{name} imported by {code!r}"


def test_a_cached_solve_loads_no_network_tar_or_tty_code(tmp_path: Path) -> None:
    """``dockyard solve`` of a local context and a copy, cached: no registry or HTTP
    client, no compressor, no git, no other snapshotter, no Dockerfile converter."""
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "main.py").write_text("print('hi')\n")
    definition = tmp_path / "def.pb"
    state = llb.scratch().file(llb.copy(llb.local("context"), "/src", "/app/"))
    definition.write_bytes(state.marshal().to_bytes())
    argv = [
        "solve",
        "--state-dir",
        str(tmp_path / "state"),
        "--snapshotter",
        "native",
        "--local",
        f"context={ctx}",
        "--progress",
        "quiet",
        str(definition),
    ]
    code = f"from dockyard.cli.main import main\nassert main({argv!r}) == 0"
    loaded_after(code)  # the first build
    modules = loaded_after(code)
    for name in (
        *HEAVY,
        "dockyard.source._git",
        "dockyard.source._http",
        "dockyard.snapshot._overlay",
        "dockyard.dockerfile",
        "dockyard.exporter._compress",
    ):
        assert name not in modules, f"{name} imported by a cached solve"
