"""A client process that dies mid-build: the daemon notices, its calls fail and the
build using the session is cancelled."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from dockyard.core import SessionError
from dockyard.session import SessionManager
from tests.unit.session.harness import Harness

CLIENT = """
import asyncio, sys
import grpc
from dockyard.session import CHANNEL_OPTIONS, Session, attach

class Hang:
    async def get(self, id):
        print("asked", flush=True)
        await asyncio.Event().wait()

async def main():
    channel = grpc.aio.insecure_channel(sys.argv[1], options=CHANNEL_OPTIONS)
    attachment = await attach(Session(id=sys.argv[2], secrets=Hang()), channel)
    print("attached", flush=True)
    await attachment.wait_closed()

asyncio.run(main())
"""


@pytest.mark.parametrize("transport", ["grpc-unix", "grpc-tcp"])
async def test_killed_client_cancels_its_build(transport: str, tmp_path: Path) -> None:
    harness = Harness(transport, SessionManager(call_timeout=60))
    await harness.start()
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    errors = tmp_path / "client.err"
    with errors.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            harness.target,
            "victim",
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )

    async def line(expected: bytes) -> None:
        assert proc.stdout is not None
        try:
            got = await asyncio.wait_for(proc.stdout.readline(), 60)
        except TimeoutError:
            got = b"<nothing within 60s>"
        assert got == expected, f"client said {got!r}; stderr: {errors.read_text()[-2000:]}"

    try:
        await line(b"attached\n")
        handle = await harness.manager.get("victim")

        async def build() -> bytes:
            async with handle.cancel_on_close("running the build"):
                return await handle.secrets.get("token")

        task = asyncio.create_task(build())
        await line(b"asked\n")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        with pytest.raises(SessionError, match="ended"):
            await asyncio.wait_for(task, 60)
        assert handle.closed
        assert harness.manager.find("victim") is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await harness.stop()
