"""``Client.workers()`` and ``dockyard debug workers``: the embedded engine's worker from
its configuration (its CDI spec directories read, the engine not opened), a daemon's
from ``ListWorkers``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from dockyard.client import Client, WorkerDevice
from dockyard.client._remote import RemoteBackend
from dockyard.core import Platform
from dockyard.engine import EngineConfig
from dockyard.executor.cdi import CdiConfig

SPEC = """\
cdiVersion: "0.6.0"
kind: "vendor1.com/device"
devices:
- name: foo
  annotations:
    org.mobyproject.buildkit.device.class: class1
  containerEdits:
    env:
    - FOO=injected
- name: bar
  annotations:
    org.mobyproject.buildkit.device.autoallow: "true"
  containerEdits:
    env:
    - BAR=injected
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cdi"
    d.mkdir()
    (d / "vendor1.yaml").write_text(SPEC)
    (d / "broken.json").write_text("{}")
    return d


async def test_embedded_workers(tmp_path: Path, spec_dir: Path) -> None:
    state = tmp_path / "state"
    config = EngineConfig(state_dir=state, cdi=CdiConfig(spec_dirs=(spec_dir,)))
    async with Client.embedded(config) as client:
        (worker,) = await client.workers()
    assert worker.id == "embedded"
    assert worker.platforms[0] == config.platform
    assert worker.labels["org.mobyproject.buildkit.worker.executor"] == "oci"
    assert worker.devices == (
        WorkerDevice(
            name="vendor1.com/device=bar",
            auto_allow=True,
            annotations={"org.mobyproject.buildkit.device.autoallow": "true"},
        ),
        WorkerDevice(
            name="vendor1.com/device=foo",
            annotations={"org.mobyproject.buildkit.device.class": "class1"},
        ),
    )
    assert worker.cdi_problems == (f"{spec_dir / 'broken.json'}: cdiVersion is required",)
    assert not state.exists()  # the engine was not opened


async def test_embedded_workers_without_cdi(tmp_path: Path, spec_dir: Path) -> None:
    config = EngineConfig(state_dir=tmp_path, cdi=CdiConfig(disabled=True, spec_dirs=(spec_dir,)))
    async with Client.embedded(config) as client:
        (worker,) = await client.workers()
    assert worker.devices == ()
    assert worker.cdi_problems == ()


async def test_daemon_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.api._gen import control_pb2 as pb
    from dockyard.api._gen import ops_pb2

    response = pb.ListWorkersResponse(
        record=[
            pb.WorkerRecord(
                id="w1",
                labels={"org.mobyproject.buildkit.worker.executor": "oci"},
                platforms=[ops_pb2.Platform(OS="linux", Architecture="amd64")],
                cdi_devices=[
                    pb.CDIDevice(name="v.com/c=a", auto_allow=True, annotations={"k": "v"})
                ],
            )
        ]
    )

    def unary(name: str, request_type: Any, response_type: Any) -> Any:
        assert name == "ListWorkers"

        async def call(request: Any) -> Any:
            return response

        return call

    backend = RemoteBackend("unix:///nowhere")
    monkeypatch.setattr(backend, "_unary", unary)
    (worker,) = await backend.workers()
    assert worker.id == "w1"
    assert worker.platforms == (Platform.parse("linux/amd64"),)
    assert worker.devices == (
        WorkerDevice(name="v.com/c=a", auto_allow=True, annotations={"k": "v"}),
    )


def test_debug_workers_verbose(
    tmp_path: Path,
    spec_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKYARD_CDI_SPEC_DIRS", str(spec_dir))
    assert main(["debug", "workers", "--state-dir", str(tmp_path / "s"), "-v"]) == 0
    out = capsys.readouterr().out
    assert "ID:\t\tembedded\n" in out
    assert (
        "Devices:\n"
        "\tName:\t\tvendor1.com/device=bar\n"
        "\tAutoAllow:\ttrue\n"
        "\tAnnotations:\n"
        "\t\torg.mobyproject.buildkit.device.autoallow:\ttrue\n"
        "\tName:\t\tvendor1.com/device=foo\n"
        "\tAutoAllow:\tfalse\n"
    ) in out
    assert f"Skipped CDI specs:\n\t{spec_dir / 'broken.json'}: cdiVersion is required" in out
    assert main(["debug", "workers", "--state-dir", str(tmp_path / "s")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "PLATFORMS"]
    assert table[1].startswith("embedded  linux/")
