"""A container never outlives the process that runs it, even when that process is
killed by SIGKILL (no chance to cancel): its watchdog kills the container, and what is
left on disk (the bundle and its mounts) is reaped at the next start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dockyard.executor import OciExecutor
from dockyard.testing.processes import processes_with, wait_for
from tests.integration.conftest import Overlay

BOTH = pytest.mark.parametrize("runtime", ["crun", "runc"], indirect=True)

# runs one process in a container from a thread of the default executor, as the
# engine does, and waits; the test kills it
RUNNER = """
import asyncio, json, sys
from pathlib import Path
from dockyard.executor import OciExecutor, ProcessSpec
from dockyard.snapshot.types import Mount

state, runtime, root, marker = sys.argv[1:]
mounts = [Mount(type=m["type"], source=m["source"], options=tuple(m["options"]))
          for m in json.loads(root)]

async def main() -> None:
    executor = OciExecutor(Path(state), runtime=runtime)
    script = "sleep 100000; echo never"
    process = ProcessSpec(args=("/bin/sh", "-c", script, marker + "-in-the-container"))
    await executor.run(root=mounts, process=process)

asyncio.run(main())
"""


@BOTH
def test_sigkill_of_the_running_process_kills_its_container(
    runtime: str, busybox_overlay: Overlay, tmp_path: Path, mountinfo_unchanged: None
) -> None:
    marker = "dockyard-sigkill-" + uuid.uuid4().hex
    container = marker + "-in-the-container"  # (the runner's argv has only the marker)
    state = tmp_path / "state"
    root = json.dumps(
        [{"type": m.type, "source": m.source, "options": m.options} for m in busybox_overlay.mounts]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(state), runtime, root, marker],
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: bool(processes_with(container)), 60), "the container never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    gone = wait_for(lambda: not processes_with(container), 20)
    # what it left on disk goes at the next start (as would a container, on failure)
    executor = OciExecutor(state, runtime=runtime)
    reaped = executor.reap_stale()
    assert gone, "the container outlived the process that ran it"
    assert reaped == 1
    assert list((state / "bundles").iterdir()) == []
    assert list(executor.runtime.state_dir.iterdir()) == []
