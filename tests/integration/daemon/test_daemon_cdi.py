"""CDI devices through a real ``dockyardd``: ``[cdi]`` of its config file names the spec
directory, ``allowed-entitlements`` lets builds ask for ``device``, a RUN step gets the
device, ``dockyard debug workers -v`` (ListWorkers) lists it, and a daemon that does not
allow the entitlement refuses a build that grants it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main

from .conftest import DaemonProcess

KIND = "dockyard.test/daemon"


def _spec_dir(tmp_path: Path) -> Path:  # (the default config does not name it)
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    spec = {
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "devices": [
            {
                "name": "one",
                "annotations": {"org.mobyproject.buildkit.device.class": "probe"},
                "containerEdits": {
                    "env": ["CDI_DAEMON=one"],
                    "deviceNodes": [{"path": "/dev/cdi-zero", "hostPath": "/dev/zero"}],
                },
            }
        ],
    }
    (spec_dir / "daemon.json").write_text(json.dumps(spec))
    return spec_dir


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --device=probe,required sh -c"
        " 'echo $CDI_DAEMON > /report; head -c 4 /dev/cdi-zero | od -An -tx1 >> /report'\n"
    )
    return ctx


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    return _spec_dir(tmp_path)


@pytest.fixture
def cdi_config(tmp_path: Path, spec_dir: Path) -> Path:
    """A config file with [cdi] and the device entitlement allowed."""
    path = tmp_path / "dockyardd-cdi.toml"
    path.write_text(
        'allowed-entitlements = ["device"]\n'
        '[worker]\nruntime = "crun"\n'
        f'[cdi]\nspec-dirs = ["{spec_dir}"]\n'
    )
    return path


def _read(path: Path) -> str:
    return path.read_text()


async def cli(daemon: DaemonProcess, *args: str) -> int:
    return await asyncio.to_thread(main, ["--addr", f"unix://{daemon.socket}", *args])


async def test_a_daemon_serves_cdi_devices(
    daemon: DaemonProcess,
    cdi_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon.config = cdi_config
    await daemon.start()
    out = tmp_path / "out"
    code = await cli(
        daemon, "build", "-q", "--allow", "device", "-o", str(out), str(_context(tmp_path))
    )
    assert code == 0, daemon.log_text()
    report = await asyncio.to_thread(_read, out / "report")
    assert report.split() == ["one", "00", "00", "00", "00"]
    capsys.readouterr()
    assert await cli(daemon, "debug", "workers", "-v") == 0
    listing = capsys.readouterr().out
    assert f"\tName:\t\t{KIND}=one\n\tAutoAllow:\tfalse\n" in listing
    assert "\t\torg.mobyproject.buildkit.device.class:\tprobe" in listing
    # without the grant, the daemon's loader refuses the step
    code = await cli(daemon, "build", "-q", "-o", str(tmp_path / "no"), str(_context(tmp_path)))
    assert code != 0
    assert f"asks for device {KIND}=one" in capsys.readouterr().err


async def test_a_daemon_that_does_not_allow_devices(
    running: DaemonProcess, spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await cli(
        running, "build", "-q", "--allow", f"device={KIND}=one", "-o", str(tmp_path / "out"),
        str(_context(tmp_path)),
    )  # fmt: skip
    assert code != 0
    assert "granting entitlement device is not allowed" in capsys.readouterr().err
