"""``RUN --device`` end to end on the embedded engine (crun, as root): a CDI spec in a
spec directory of the test's (``$DOCKYARD_CDI_SPEC_DIRS``) injects an environment
variable, a read-only bind mount, a device node (``/dev/null``'s numbers under another
path) and a host hook; the RUN step sees them, and none of it is left in the image.
A required device that is not there fails the build at its line; an optional one is
skipped; a device that is neither granted nor auto-allowed is refused."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from dockyard.cli.main import main

KIND = "dockyard.test/dev"


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


@pytest.fixture
def cdi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec directory (the engine's only one) with the device ``probe``; its mount's
    source and its hook's log live beside it."""
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data").write_text("from the host\n")
    spec = {
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "containerEdits": {"env": ["CDI_SPEC=spec-level"]},
        "devices": [
            {
                "name": "probe",
                "containerEdits": {
                    "env": ["CDI_PROBE=injected"],
                    "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null"}],
                    "mounts": [
                        {
                            "hostPath": str(shared),
                            "containerPath": "/opt/cdi-shared",
                            "options": ["ro", "rbind"],
                        }
                    ],
                    "hooks": [
                        {
                            "hookName": "createRuntime",
                            "path": "/bin/sh",
                            "args": ["sh", "-c", f"echo hooked >> {tmp_path / 'hook.log'}"],
                        }
                    ],
                },
            }
        ],
    }
    (spec_dir / "probe.json").write_text(json.dumps(spec))
    (spec_dir / "free.yaml").write_text(
        f"cdiVersion: 0.6.0\nkind: {KIND}\n"
        "annotations:\n  org.mobyproject.buildkit.device.autoallow: true\n"
        "devices:\n- name: free\n  containerEdits:\n    env: [CDI_FREE=yes]\n"
    )
    monkeypatch.setenv("DOCKYARD_CDI_SPEC_DIRS", str(spec_dir))
    monkeypatch.delenv("DOCKYARD_CDI_DISABLED", raising=False)
    return spec_dir


def context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


PROBE = (
    "FROM busybox\n"
    f"RUN --device={KIND}=probe,required sh -c '"
    'echo "env=$CDI_PROBE $CDI_SPEC" > /report;'
    " ls -l /dev/cdi-null >> /report;"
    " cat /opt/cdi-shared/data >> /report;"
    " echo x > /dev/cdi-null && echo node-writable >> /report;"
    " touch /opt/cdi-shared/new 2>/dev/null || echo mount-read-only >> /report'\n"
)


def test_a_run_sees_its_device(state: Path, cdi: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = build(state, "-q", "--allow", "device", "-o", str(out), str(context(tmp_path, PROBE)))
    assert code == 0
    lines = (out / "report").read_text().splitlines()
    assert lines[0] == "env=injected spec-level"
    assert re.match(r"^c\S+\s+\d+\s+\S+\s+\S+\s+1,\s+3\s.*/dev/cdi-null$", lines[1]), lines[1]
    assert lines[2:] == ["from the host", "node-writable", "mount-read-only"]
    assert (tmp_path / "hook.log").read_text() == "hooked\n"  # ran on the host
    assert not (tmp_path / "shared" / "new").exists()
    # nothing of the device is left in the result: no mount point, no node
    assert not (out / "opt" / "cdi-shared").exists()
    assert not (out / "dev" / "cdi-null").exists()


def test_a_device_not_granted_is_refused(
    state: Path, cdi: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = build(state, "-q", "-o", str(out), str(context(tmp_path, PROBE)))
    assert code != 0
    err = capsys.readouterr().err
    assert f"asks for device {KIND}=probe, which this build was not granted" in err
    assert f"--allow device={KIND}=probe" in err
    assert not out.exists()
    # granted by name, it runs
    assert (
        build(
            state,
            "-q",
            "--allow",
            f"device={KIND}=probe",
            "-o",
            str(out),
            str(context(tmp_path, PROBE)),
        )
        == 0
    )


def test_auto_allowed_device_needs_no_entitlement(state: Path, cdi: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dockerfile = f"FROM busybox\nRUN --device={KIND}=free sh -c 'echo $CDI_FREE > /free'\n"
    assert build(state, "-q", "-o", str(out), str(context(tmp_path, dockerfile))) == 0
    assert (out / "free").read_text() == "yes\n"


def test_a_required_device_that_is_not_there(
    state: Path, cdi: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN echo before > /before\n"
        f"RUN --device={KIND}=gone,required echo never > /never\n"
    )
    out = tmp_path / "out"
    code = build(state, "--allow", "device", "-o", str(out), str(context(tmp_path, dockerfile)))
    assert code != 0
    err = capsys.readouterr().err
    assert f"required device '{KIND}=gone' is not registered" in err
    assert str(cdi) in err  # where it was looked for
    assert "Dockerfile:3" in err


def test_an_optional_device_that_is_not_there(
    state: Path, cdi: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = f"FROM busybox\nRUN --device={KIND}=gone echo ran > /ran\n"
    out = tmp_path / "out"
    assert (
        build(state, "-o", str(out), "--progress", "plain", str(context(tmp_path, dockerfile))) == 0
    )
    assert (out / "ran").read_text() == "ran\n"
    assert f"optional device '{KIND}=gone' is not registered" in capsys.readouterr().err


def test_cdi_disabled(
    state: Path, cdi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DOCKYARD_CDI_DISABLED", "1")
    out = tmp_path / "out"
    code = build(state, "-q", "--allow", "device", "-o", str(out), str(context(tmp_path, PROBE)))
    assert code != 0
    assert "CDI is disabled on this worker" in capsys.readouterr().err
    assert os.environ["DOCKYARD_CDI_SPEC_DIRS"] == str(cdi)


def test_a_device_node_outside_dev_is_not_left_in_the_image(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "cdi-outside"
    spec_dir.mkdir()
    spec = {
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "devices": [
            {
                "name": "outside",
                "containerEdits": {
                    "deviceNodes": [{"path": "/opt/node/null", "hostPath": "/dev/null"}]
                },
            }
        ],
    }
    (spec_dir / "outside.json").write_text(json.dumps(spec))
    monkeypatch.setenv("DOCKYARD_CDI_SPEC_DIRS", str(spec_dir))
    dockerfile = f"FROM busybox\nRUN --device={KIND}=outside sh -c 'ls -l /opt/node/null > /seen'\n"
    out = tmp_path / "out"
    code = build(
        state, "-q", "--allow", "device", "-o", str(out), str(context(tmp_path, dockerfile))
    )
    assert code == 0
    assert (out / "seen").read_text().startswith("c")
    assert not (out / "opt").exists()


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_the_device_cgroup_allows_a_cdi_device_with_its_access(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    """Both runtimes put the step in a device cgroup that denies every node but the
    defaults and what the spec allows (runc's own; crun's made by the executor):
    ``/dev/loop-control`` (c 10:237, not a default) opens only through the device's
    allow rule, with the access the rule gives."""
    from tests.integration.conftest import need_tools

    need_tools(runtime)
    if not Path("/dev/loop-control").exists():
        pytest.fail("/dev/loop-control is missing on this host")
    spec_dir = tmp_path / "cdi-loop"
    spec_dir.mkdir()
    spec = {
        "cdiVersion": "0.6.0",
        "kind": KIND,
        "devices": [
            {
                "name": "loop",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/cdi-loop", "hostPath": "/dev/loop-control"}]
                },
            },
            {
                "name": "loop-read-only",
                "containerEdits": {
                    "deviceNodes": [
                        {
                            "path": "/dev/cdi-loop",
                            "hostPath": "/dev/loop-control",
                            "permissions": "w",
                        }
                    ]
                },
            },
        ],
    }
    (spec_dir / "loop.json").write_text(json.dumps(spec))
    monkeypatch.setenv("DOCKYARD_CDI_SPEC_DIRS", str(spec_dir))
    probe = "sh -c '(exec 3</dev/cdi-loop) 2>/dev/null && echo opened > /r || echo denied > /r'"
    results = {}
    for name in ("loop", "loop-read-only"):
        out = tmp_path / f"out-{name}"
        dockerfile = f"FROM busybox\nRUN --device={KIND}={name} {probe}\n"
        ctx = context(tmp_path, dockerfile)
        code = build(
            state, "-q", "--runtime", runtime, "--allow", "device", "-o", str(out), str(ctx)
        )
        assert code == 0
        results[name] = (out / "r").read_text().strip()
    # allowed "rwm" by default; a rule allowing only writes refuses the read
    assert results == {"loop": "opened", "loop-read-only": "denied"}
