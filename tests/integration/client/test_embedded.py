"""The client on the embedded engine: builds load no grpc, ``solve`` of an LLB graph with
directories and exports, transfer counts, du/prune/info."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dockyard import llb
from dockyard.client import BuildOptions, Client, Transfer
from dockyard.engine import EngineConfig
from dockyard.exporter import parse_output
from tests.integration.cli.conftest import EXAMPLE, state

__all__ = ["state"]


def test_an_embedded_build_loads_no_grpc(state: Path, tmp_path: Path) -> None:
    script = f"""
import sys
from dockyard.cli.main import main
code = main(["build", "--state-dir", {str(state)!r}, "-q", "-o", {str(tmp_path / "out")!r}, {str(EXAMPLE)!r}])
assert code == 0, code
loaded = [m for m in sys.modules if m == "grpc" or m.startswith(("grpc.", "dockyard.daemon"))]
print(",".join(loaded))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert (tmp_path / "out" / "usr/local/bin/greet").is_file()


async def test_solve_a_definition_with_directories(state: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("aaa")
    graph = llb.image("busybox").run(
        "cat /src/a.txt > /out.txt", mounts=[llb.BindMount("/src", llb.local("src"))]
    )
    definition = llb.scratch().file(llb.copy(graph.root, "/out.txt", "/")).marshal()
    async with Client.embedded(EngineConfig(state_dir=state, runtime="crun")) as client:
        assert client.mode == "embedded"
        assert client.state_dir == state
        result = await client.solve(
            definition,
            directories={"src": src},
            exports=(parse_output(f"type=local,dest={tmp_path / 'out'}"),),
        )
        assert result.transfers["src"] == Transfer(files=1, bytes=3)
        assert (tmp_path / "out" / "out.txt").read_text() == "aaa"
        info = await client.info()
        assert (info.mode, info.state_dir) == ("embedded", str(state))
        records = await client.du()
        assert records
        pruned = await client.prune(all=True)
        assert pruned.records


async def test_builds_report_what_travelled(state: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /app\n")
    (ctx / "one.txt").write_text("1" * 100)
    (ctx / "two.txt").write_text("2" * 50)
    options = BuildOptions(context=str(ctx))
    async with Client.embedded(EngineConfig(state_dir=state, runtime="crun")) as client:
        first = await client.build(options)
        assert first.transfers["context"].files == 3
        (ctx / "two.txt").write_text("22")
        second = await client.build(options)
        assert second.transfers["context"] == Transfer(files=1, bytes=2)
        assert first.outputs == second.outputs == ()
