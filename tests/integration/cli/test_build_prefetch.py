"""``dockyard build`` walks the context the way the last build of it was asked for as
soon as it starts (``cli._hints``, ``Session.prefetch``); a file changed between two
builds is always in the second one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.session import Session, SyncRequest


def build(state: Path, ctx: Path, out: Path) -> int:
    return main(
        ["build", "--state-dir", str(state), "-q", "-o", f"type=local,dest={out}", str(ctx)]
    )


async def test_a_change_between_prefetched_builds_is_built(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "unused").mkdir()
    (ctx / "unused" / "big.bin").write_bytes(b"x" * 1000)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY app/ /app/\n")
    (ctx / "app" / "stamp.txt").write_text("one\n")
    prefetched: list[SyncRequest] = []
    original = Session.prefetch

    def record(self: Session, requests: Sequence[SyncRequest]) -> None:
        prefetched.extend(requests)
        original(self, requests)

    monkeypatch.setattr(Session, "prefetch", record)

    # main() runs its own event loop: not in this test's thread
    loop = asyncio.get_running_loop()
    out = tmp_path / "out"
    assert await loop.run_in_executor(None, build, state, ctx, out) == 0
    assert prefetched == []  # nothing known of this context yet
    assert (out / "app" / "stamp.txt").read_text() == "one\n"

    for round in ("two", "three"):
        (ctx / "app" / "stamp.txt").write_text(f"{round}\n")
        out = tmp_path / f"out-{round}"
        assert await loop.run_in_executor(None, build, state, ctx, out) == 0
        # the last build's requests: the Dockerfile, .dockerignore, then app/ only
        context_requests = [r for r in prefetched if r.name == "context"]
        assert SyncRequest(name="context", follow_paths=("app",)) in context_requests
        assert (out / "app" / "stamp.txt").read_text() == f"{round}\n"
        assert not (out / "unused").exists()
        prefetched.clear()
