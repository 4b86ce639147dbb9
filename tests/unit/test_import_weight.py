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
        (
            "from dockyard.client._address import check_address, grpc_target\n"
            "grpc_target(check_address('tcp://127.0.0.1:1234'))",
            ("dockyard.daemon", "dockyard.cache", "grpc"),
        ),
        (
            "from dockyard.daemon import error_from_rpc, status_to_events",
            ("dockyard.daemon._config", "dockyard.daemon._server", "dockyard.cache", "tomllib"),
        ),
        (
            "from dockyard.engine import EngineConfig\n"
            "EngineConfig.parse_entitlements(['network.host'])",
            ("dockyard.llbsolver", "dockyard.remotecache", "dockyard.cache"),
        ),
        (
            "from dockyard.frontend import DockerfileOptions, DOCKERFILE_FRONTEND",
            ("dockyard.dockerfile._parser", "dockyard.dockerfile._convert", "dockyard.llb"),
        ),
        (
            "import sys\nfrom dockyard.cli.progress import make_renderer\n"
            "make_renderer('quiet', sys.stderr)",
            ("dockyard.cli.progress._plain", "dockyard.cli.progress._rawjson", "rich"),
        ),
        (
            "from dockyard.exporter import ImageExport, ImageOptions\nImageExport(image=ImageOptions())",
            ("dockyard.oci", "dockyard.exporter.types", "dockyard.cache"),
        ),
        (
            "from dockyard.source import parse_remote_context\n"
            "parse_remote_context('https://example.com/repo.git')",
            ("dockyard.llb", "dockyard.cache", "dockyard.solver"),
        ),
        (  # an exec request without devices, and a registry nothing asked yet
            "from dockyard.executor.types import ProcessSpec\n"
            "from dockyard.executor.cdi import CdiConfig, DeviceRegistry\n"
            "ProcessSpec(args=('true',))\nDeviceRegistry.from_config(CdiConfig())",
            ("dockyard.executor.cdi._spec", "dockyard.executor.cdi._apply", "yaml"),
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


def _build_context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("hi\n")
    return ctx


def test_a_cached_embedded_build_loads_only_what_it_uses(tmp_path: Path) -> None:
    """``dockyard build -t`` on the embedded engine, everything cached: no daemon, grpc
    or registry client, no runner (nothing runs), no OCI-layout, remote-cache, archive,
    secret or SSH code, no progress renderer for ``--progress quiet``."""
    ctx = _build_context(tmp_path)
    argv = [
        "build",
        "--state-dir",
        str(tmp_path / "state"),
        "--snapshotter",
        "native",
        "-t",
        "weight:latest",
        "--progress",
        "quiet",
        str(ctx),
    ]
    code = f"from dockyard.cli.main import main\nassert main({argv!r}) == 0"
    loaded_after(code)  # the first build
    modules = loaded_after(code)
    assert "dockyard.engine._engine" in modules  # it did build in this process
    for name in (
        "grpc",
        "httpx",
        "rich",
        "tarfile",
        "dockyard.daemon",
        "dockyard.core.address",
        "dockyard.client._remote",
        "dockyard.remotecache",
        "dockyard.executor._oci",
        "dockyard.content._layout",
        "dockyard.source._ocilayout",
        "dockyard.source._git",
        "dockyard.source._http",
        "dockyard.session._secrets",
        "dockyard.session._ssh",
        "dockyard.exporter._archive",
        "dockyard.exporter._dest",
        "dockyard.frontend._python",
        "dockyard.cli.progress._plain",
        "dockyard.cli.progress._rawjson",
    ):
        assert name not in modules, f"{name} imported by a cached embedded build"


def test_a_daemon_client_build_loads_no_engine(tmp_path: Path) -> None:
    """``dockyard --addr unix://... build -t``: the client parses, prepares the context,
    makes the request and dials (no daemon listens here, so it stops at the session)
    without loading the engine, the cache, the solvers, LLB, the Dockerfile converter,
    the daemon's configuration or server, OCI values or the registry's HTTP client."""
    ctx = _build_context(tmp_path)
    argv = [
        "--addr",
        f"unix://{tmp_path}/nobody.sock",
        "build",
        "-t",
        "weight:latest",
        "--progress",
        "quiet",
        str(ctx),
    ]
    code = f"from dockyard.cli.main import main\nassert main({argv!r}) == 1"
    modules = loaded_after(code)
    assert "dockyard.api._gen.control_pb2" in modules  # the request was made
    assert "dockyard.session._grpc_client" in modules  # and the session dialled
    for name in (
        "httpx",
        "tomllib",
        "dockyard.engine",
        "dockyard.cache",
        "dockyard.solver",
        "dockyard.llbsolver",
        "dockyard.llb",
        "dockyard.snapshot",
        "dockyard.executor",
        "dockyard.oci",
        "dockyard.remotecache",
        "dockyard.content",
        "dockyard.source",
        "dockyard.dockerfile._parser",
        "dockyard.dockerfile._convert",
        "dockyard.daemon._config",
        "dockyard.daemon._server",
        "dockyard.session._ssh",
        "dockyard.session._secrets",
        "dockyard.session._manager",
        "dockyard.cli.progress._plain",
    ):
        assert name not in modules, f"{name} imported by a daemon client's build"
