"""Build steps on the assembled engine: sandbox behaviour (cache mounts, tmpfs, secrets,
network, users), errors a user reads, cancellation and shutdown without leftovers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import CancelledError, CollectingReporter, ExecError, VertexLog, VertexStatus
from dockyard.engine import BuildRequest, Engine, EngineConfig, StateDirInUseError
from dockyard.session import Secrets, Session
from dockyard.testing.processes import processes_with

from .conftest import open_engine, solve_tree


def busybox() -> llb.State:
    return llb.image("busybox")


async def run_logs(engine: Engine, state: llb.State) -> str:
    """Solve ``state`` through :meth:`Engine.solve`; what its steps printed."""
    reporter = CollectingReporter()
    await engine.solve(BuildRequest(definition=state.marshal(), reporter=reporter))
    return reporter.logs().decode()


async def test_output_of_commands(engine: Engine) -> None:
    out = await run_logs(engine, busybox().run("echo hello; echo oops >&2").root)
    assert sorted(out.splitlines()) == ["hello", "oops"]


async def test_cache_mount_persists_across_builds_and_engines(state: Path) -> None:
    def step(tag: str) -> llb.State:
        return (
            busybox()
            .run(
                f"echo {tag} >> /cache/log && cat /cache/log",
                mounts=[llb.CacheMount("/cache", "persisting")],
            )
            .root
        )

    async with open_engine(state) as engine:
        assert await run_logs(engine, step("one")) == "one\n"
        assert await run_logs(engine, step("two")) == "one\ntwo\n"
        tree = await solve_tree(engine, step("two").marshal())
        assert "cache" not in tree or tree["cache"] == "dir"
        assert not any(path.startswith("cache/") for path in tree)
    async with open_engine(state) as engine:
        assert await run_logs(engine, step("three")) == "one\ntwo\nthree\n"


async def test_locked_cache_mount_serializes_users(engine: Engine) -> None:
    def user(tag: str) -> llb.State:
        script = (
            "if [ -e /cache/busy ]; then echo overlap; fi; touch /cache/busy; "
            f"echo {tag} start >> /cache/log; sleep 0.3; echo {tag} end >> /cache/log; "
            "rm /cache/busy; cat /cache/log"
        )
        mount = llb.CacheMount("/cache", "locked-one", sharing=llb.CacheSharing.LOCKED)
        return busybox().run(script, mounts=[mount]).root

    outs = await asyncio.gather(run_logs(engine, user("a")), run_logs(engine, user("b")))
    assert all("overlap" not in out for out in outs)
    final = max(outs, key=len).splitlines()
    assert sorted(final) == ["a end", "a start", "b end", "b start"]
    # one user's start and end are adjacent: the other waited
    assert final[0].split()[0] == final[1].split()[0]
    assert final[2].split()[0] == final[3].split()[0]


async def test_tmpfs_and_secrets_never_reach_the_result(engine: Engine) -> None:
    secret = b"s3cr3t-value-1234"
    state = (
        busybox()
        .run(
            "mkdir -p /out && cp /run/secrets/token /tmp/work/copy && echo scratch > /tmp/work/x "
            "&& ls /run/secrets > /out/listing && wc -c < /run/secrets/token > /out/size",
            mounts=[
                llb.TmpfsMount("/tmp/work"),
                llb.SecretMount("/run/secrets/token", "token"),
            ],
        )
        .root
    )
    session = Session(secrets=Secrets(values={"token": secret}))
    tree = await solve_tree(engine, state.marshal(), session=session)
    assert tree["out/listing"] == b"token\n"
    assert tree["out/size"].strip() == str(len(secret)).encode()  # type: ignore[attr-defined]
    assert not any(p.startswith("tmp/work/") for p in tree)
    assert "run/secrets/token" not in tree
    assert not any(isinstance(v, bytes) and secret in v for v in tree.values())


async def test_network_none_has_only_loopback(engine: Engine) -> None:
    out = await run_logs(
        engine,
        busybox()
        .run("cat /proc/net/dev | tail -n +3 | cut -d: -f1", network=llb.NetMode.NONE)
        .root,
    )
    assert [line.strip() for line in out.splitlines()] == ["lo"]
    host = await run_logs(engine, busybox().run("cat /proc/net/dev | tail -n +3 | wc -l").root)
    assert int(host.strip()) >= 1


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("app", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff)"),
        ("1000", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff)"),
        ("daemon", "uid=1(daemon) gid=1(daemon) groups=50(staff)"),
        ("app:staff", "uid=1000(app) gid=50(staff)"),
        ("4242:4343", "uid=4242 gid=4343"),
    ],
)
async def test_users_and_groups_from_etc_passwd(engine: Engine, user: str, expected: str) -> None:
    out = await run_logs(engine, busybox().run("id", user=user).root)
    # busybox prints "groups=" for the primary group only when it is the only one
    line = out.strip()
    assert line == expected or line == expected + " groups=" + expected.split("gid=")[1]


async def test_failing_command_names_command_status_and_last_lines(engine: Engine) -> None:
    state = busybox().run("for i in $(seq 1 30); do echo line $i; done; echo bad thing >&2; exit 3")
    with pytest.raises(ExecError) as info:
        await engine.solve(BuildRequest(definition=state.root.marshal()))
    err = info.value
    assert 'process "/bin/sh -c for i in $(seq 1 30); do echo line $i; done;' in str(err)
    assert "exit code: 3" in str(err)
    assert err.exit_status == 3
    assert "line 30" in err.log_tail
    assert "bad thing" in err.log_tail
    assert "line 1" not in err.log_tail  # only the last lines
    assert err.vertex is not None


async def test_cancelling_a_build_leaves_no_mount(engine: Engine, tmp_path: Path) -> None:
    started = asyncio.Event()

    class Watch(CollectingReporter):
        def emit(self, event: object) -> None:
            super().emit(event)  # type: ignore[arg-type]
            if isinstance(event, VertexLog) and b"running" in event.data:
                started.set()

    token = "dockyard-cancel-" + uuid.uuid4().hex
    state = busybox().run(f"echo running; sleep 60; : {token}").root
    before = _mountinfo(tmp_path)
    task = asyncio.create_task(
        engine.solve(BuildRequest(definition=state.marshal(), reporter=Watch()))
    )
    await asyncio.wait_for(started.wait(), 30)
    assert _mountinfo(tmp_path) != before  # the step's rootfs is mounted while it runs
    assert processes_with(token)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # right after the cancel, with the engine still open: mountinfo as it was, no process
    assert _mountinfo(tmp_path) == before
    assert processes_with(token) == []
    # (the mountinfo_unchanged fixture checks the state dir again after the engine closed)


def _mountinfo(under: Path) -> list[str]:
    """The mounts below ``under`` (the test's own; other tests mount elsewhere at the
    same time), without mount ids."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        lines = [" ".join(line.split(" ")[2:]) for line in f]
    return sorted(line for line in lines if str(under) in line)


async def test_closing_the_engine_cancels_builds(state: Path) -> None:
    started = asyncio.Event()

    class Watch(CollectingReporter):
        def emit(self, event: object) -> None:
            super().emit(event)  # type: ignore[arg-type]
            if isinstance(event, VertexStatus) and event.started and "sleep" in event.name:
                started.set()

    async with open_engine(state) as engine:
        task = asyncio.create_task(
            engine.solve(
                BuildRequest(definition=busybox().run("sleep 60").root.marshal(), reporter=Watch())
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        await engine.close()
        with pytest.raises(CancelledError, match="the engine was closed while the build ran"):
            await task
        with pytest.raises(CancelledError, match="the engine is closed"):
            await engine.solve(BuildRequest(definition=busybox().marshal()))


async def test_second_engine_on_the_state_dir_is_refused(state: Path) -> None:
    async with open_engine(state):
        with pytest.raises(StateDirInUseError, match="in use by another Dockyard engine"):
            await Engine.open(EngineConfig(state_dir=state))


async def test_opening_the_engine_cleans_up_after_a_dead_one(state: Path) -> None:
    # what a process killed mid-run leaves: a bundle with its root still mounted
    rootfs = state / "executor" / "bundles" / "dy-deadbeef00000000" / "rootfs"
    rootfs.mkdir(parents=True)
    mount = await asyncio.create_subprocess_exec("mount", "-t", "tmpfs", "tmpfs", str(rootfs))
    assert await mount.wait() == 0
    leftover = state / "tmp" / "client-files-x"
    leftover.mkdir(parents=True)
    async with open_engine(state) as engine:
        assert not rootfs.parent.exists()
        assert not leftover.exists()
        assert await run_logs(engine, busybox().run("echo works").root) == "works\n"
    # mountinfo_unchanged (through the state fixture) checks the tmpfs is gone
