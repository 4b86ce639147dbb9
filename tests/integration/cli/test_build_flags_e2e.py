"""``dockyard build`` flags end to end on the embedded engine (issue 6), the ones other
tests only parse: ``--network none|host|default`` as RUN steps see it, ``--label`` in the
image config, ``--platform`` of this host and of another (a cross build), and ``--pull`` — an image of the
local store by default, the registry's with ``--pull``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.core import host_platform
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import requirement_missing
from tests.integration.engine.conftest import store_image


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


def interfaces(out: Path) -> list[str]:
    return (out / "ifaces").read_text().split()


def test_network_modes_as_run_steps_see_them(state: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > /ifaces\n"
    )
    host = sorted(os.listdir("/sys/class/net"))
    for mode in ("none", "host", "default"):
        assert build(state, "-q", "--network", mode, "-o", str(tmp_path / mode), str(ctx)) == 0
    assert interfaces(tmp_path / "none") == ["lo"]  # its own network namespace
    assert interfaces(tmp_path / "host") == host
    # without a bridge or CNI network configured, the default is the host's network
    # (BuildKit's fallback when it has no CNI)
    assert interfaces(tmp_path / "default") == host


def test_labels_and_this_hosts_platform(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nLABEL from.dockerfile="yes"\n')
    code = build(
        state, "-q", "-t", "labelled", "--label", "org.example.team=builders",
        "--label", "from.dockerfile=overridden", "--platform", str(host_platform()), str(ctx),
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert main(["image", "inspect", "--state-dir", str(state), "labelled"]) == 0
    (inspected,) = json.loads(capsys.readouterr().out)
    config = inspected["Config"]
    assert config["config"]["Labels"] == {
        "org.example.team": "builders",
        "from.dockerfile": "overridden",  # --label wins over LABEL, as buildx
    }
    assert (config["os"], config["architecture"]) == (
        host_platform().os,
        host_platform().architecture,
    )


def test_a_cross_build_for_another_platform(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = host_platform()
    other = "linux/arm64" if host.architecture != "arm64" else "linux/amd64"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM --platform=$BUILDPLATFORM busybox AS build\n"
        "ARG TARGETPLATFORM BUILDPLATFORM\n"
        'RUN echo "$TARGETPLATFORM on $BUILDPLATFORM" > /built.txt\n'
        "FROM scratch\n"
        "COPY --from=build /built.txt /\n"
    )
    out = tmp_path / "out"
    assert build(state, "-q", "--platform", other, "-o", str(out), str(ctx)) == 0
    assert (out / "built.txt").read_text() == f"{other} on {host.os}/{host.architecture}\n"
    assert build(state, "-q", "--platform", other, "-t", "crossed", str(ctx)) == 0
    capsys.readouterr()
    assert main(["image", "inspect", "--state-dir", str(state), "crossed"]) == 0
    (inspected,) = json.loads(capsys.readouterr().out)
    assert f"{inspected['Config']['os']}/{inspected['Config']['architecture']}" == other

    # a command of the target platform cannot run on a host without emulation (detection
    # pointed at an empty binfmt_misc): a clear error at its line
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(tmp_path / "no-binfmt-misc"))
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    assert build(state, "-q", "--platform", other, str(ctx)) == 1
    err = capsys.readouterr().err
    assert f"Dockerfile:2: cannot run a {other} process on this" in err
    assert "FROM --platform=$BUILDPLATFORM" in err


def _layer(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_pull_asks_the_registry_for_an_image_of_the_local_store(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")
    with start_registry(tmp_path / "registry") as registry:
        name = registry.ref("base:1")
        # the registry's base:1 says "registry", made and pushed by another state dir
        other = tmp_path / "other-state"
        asyncio.run(
            store_image(other, "docker.io/library/seed:1", [_layer("which", b"registry\n")])
        )
        pusher = tmp_path / "pusher"
        pusher.mkdir()
        (pusher / "Dockerfile").write_text("FROM seed:1\n")
        assert build(other, "-q", "-t", name, "--push", str(pusher)) == 0
        # this state's own store has another base:1 that says "local"
        asyncio.run(store_image(state, name, [_layer("which", b"local\n")]))

        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {name}\nCOPY --from={name} /which /seen\n")
        assert build(state, "-q", "-o", str(tmp_path / "default"), str(ctx)) == 0
        assert (tmp_path / "default/seen").read_text() == "local\n"
        assert build(state, "-q", "--pull", "-o", str(tmp_path / "pulled"), str(ctx)) == 0
        assert (tmp_path / "pulled/seen").read_text() == "registry\n"
    capsys.readouterr()
