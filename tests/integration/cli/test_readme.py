"""The README's first command, ``scripts/setup``, ends with the example image built
(issue 6's acceptance): run as the README says, with the apt step skipped (CI's
``.ci/run`` has just installed the packages; ``SKIP_APT=1``) and the engine's state in a
temporary directory (``DOCKYARD_STATE_DIR``) instead of ``/var/lib/dockyard``.

CI itself runs ``scripts/setup`` with ``SKIP_EXAMPLE=1``, so without this test the
main job the README promises (base image made locally, then ``dockyard build -t
greeting examples/greeting``) would never run there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.conftest import need_tools

from .conftest import ROOT

pytestmark = pytest.mark.slow


def test_scripts_setup_ends_with_the_example_image_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mountinfo_unchanged: None
) -> None:
    need_tools("crun")
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```sh\n", 1)[1].split("\n", 1)[0]
    assert first.split()[0] == "scripts/setup", first  # the README's first command

    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_HOST", "SKIP_EXAMPLE")}
    env.update(SKIP_APT="1", DOCKYARD_STATE_DIR=str(state))
    done = subprocess.run(
        [str(ROOT / "scripts" / "setup")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    found = re.search(
        r"Image docker\.io/library/greeting:latest \((sha256:[0-9a-f]{64})\) stored in the "
        rf"image store of {re.escape(str(state))}",
        output,
    )
    assert found is not None, output
    assert "[build 4/4] RUN sed" in output  # the example's RUN step was part of it
    assert "run it with docker:" in output  # and how to run the result
    assert output.rstrip().endswith("done. Run the test suite with: scripts/test"), output

    # the image is in the store of that state directory, under the id it printed
    assert main(["images", "--state-dir", str(state)]) == 0
    listing = capsys.readouterr().out
    assert any(
        line.split()[:3] == ["greeting", "latest", found.group(1)[7:19]]
        for line in listing.splitlines()
    ), listing


def test_the_readmes_runc_example_runs_the_image(state: Path, tmp_path: Path) -> None:
    """The README's second block, line by line: the OCI tarball of the example, unpacked
    by umoci at the tag the README names and run by runc (its console turned off: no
    terminal here). An unnamed OCI output has no tag for umoci, as with BuildKit."""
    need_tools("umoci", "runc")
    readme = (ROOT / "README.md").read_text()
    block = readme.split("or with runc from an OCI layout:\n\n```sh\n", 1)[1].split("```", 1)[0]
    build, unpack_layout, unpack_and_run = block.strip().splitlines()
    assert build.startswith("dockyard build ")
    assert build.endswith(" examples/greeting")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_HOST"}
    env.update(DOCKYARD_STATE_DIR=str(state), DOCKYARD_WARM="0")
    dockyard = str(ROOT / ".venv" / "bin" / "dockyard")

    def sh(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-ec", line.replace("dockyard ", f"{dockyard} ", 1)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    for line in (build, unpack_layout):
        done = sh(line)
        assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
    unpack, run = unpack_and_run.split(" && ")
    done = sh(unpack)
    assert done.returncode == 0, f"{unpack}: {done.stdout}{done.stderr}"
    config_path = tmp_path / "greeting-bundle" / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config_path.write_text(json.dumps(config))
    assert run.split()[:4] == ["runc", "run", "-b", "greeting-bundle"]
    done = sh(f"runc run -b greeting-bundle readme-{os.getpid()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "hello from dockyard"
