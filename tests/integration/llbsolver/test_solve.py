"""Definitions solved for real: overlayfs refs of the cache manager, crun, SQLite keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import ImmutableRef
from dockyard.core import ExecError, NotFoundError, VertexLog
from dockyard.llbsolver import JobOptions

from .conftest import Engine, final_statuses, open_engine


def _on_host(path: str) -> bool:
    return os.path.lexists(path)


def busybox() -> llb.State:
    return llb.image("busybox")


async def test_exec_writes_files_and_file_ops_chain(engine: Engine) -> None:
    run = busybox().run(
        "mkdir -p /out/d && echo hello > /out/hello.txt && echo x > /out/d/x && ln -s hello.txt /out/link"
    )
    result = llb.scratch().file(
        llb.copy(run.root, "/out", "/", dir_contents_only=True)
        .mkdir("/meta/sub", 0o750, parents=True)
        .mkfile("/meta/sub/info", 0o600, "made by a file op")
        .symlink("/hello.txt", "/meta/hello")
        .rm("/d/x")
    )
    ref, reporter = await engine.solve(result.marshal())
    try:
        tree = await engine.read(ref)
    finally:
        await ref.release()
    assert tree == {
        "hello.txt": b"hello\n",
        "link": {"link": "hello.txt"},
        "d/": None,
        "meta/": None,
        "meta/sub/": None,
        "meta/sub/info": b"made by a file op",
        "meta/hello": {"link": "/hello.txt"},
    }
    assert len(engine.executor.runs) == 1
    assert not any(s.cached for s in final_statuses(reporter).values())


async def test_cache_hit_with_a_new_solver_on_the_same_state_dir(
    engine_parts: tuple[Path, Path], tmp_path: Path
) -> None:
    state, rootfs = engine_parts
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.sh").write_text("echo built > /built\n")
    (ctx / "notes.txt").write_text("v1")
    build = (
        busybox()
        .copy(llb.local("ctx"), "/app.sh", "/app.sh")
        .run("sh /app.sh")
        .root.file(llb.mkfile("/stamp", 0o644, "done"))
    )
    definition = build.marshal()
    async with open_engine(state, rootfs, {"ctx": ctx}) as first:
        ref, _ = await first.solve(definition)
        assert (await first.read(ref))["built"] == b"built\n"
        await ref.release()
        assert len(first.executor.runs) == 1

    async with open_engine(state, rootfs, {"ctx": ctx}) as second:
        ref, reporter = await second.solve(definition)
        tree = await second.read(ref)
        await ref.release()
        assert tree["built"] == b"built\n"
        assert tree["stamp"] == b"done"
        assert second.executor.runs == []  # nothing executed
        assert second.images.snapshots == 0
        statuses = final_statuses(reporter)
        assert statuses
        assert all(s.cached for s in statuses.values()), [
            s.name for s in statuses.values() if not s.cached
        ]

    # a change elsewhere in the context: the context is read again, the copy hits by
    # content, nothing runs
    (ctx / "notes.txt").write_text("v2")
    async with open_engine(state, rootfs, {"ctx": ctx}) as third:
        ref, reporter = await third.solve(definition)
        await ref.release()
        assert third.executor.runs == []
        assert third.locals.snapshots == ["ctx"]

    # the file the build reads changes: the exec runs again
    (ctx / "app.sh").write_text("echo rebuilt > /built\n")
    async with open_engine(state, rootfs, {"ctx": ctx}) as fourth:
        ref, _ = await fourth.solve(definition)
        assert (await fourth.read(ref))["built"] == b"rebuilt\n"
        await ref.release()
        assert len(fourth.executor.runs) == 1


async def test_exec_error_names_command_status_and_output(engine: Engine) -> None:
    failing = busybox().run(
        "echo first line; echo to stderr >&2; for i in 1 2 3; do echo step $i; done; exit 7"
    )
    with pytest.raises(ExecError) as info:
        await engine.solve(failing.root.marshal())
    err = info.value
    assert "did not complete successfully: exit code: 7" in str(err)
    assert 'process "/bin/sh -c echo first line;' in str(err)
    assert err.exit_status == 7
    # stdout and stderr are separate pipes: their lines may interleave either way
    assert {"first line", "to stderr", "step 1", "step 2", "step 3"} == set(err.log_tail)
    assert err.vertex is not None


async def test_output_streams_to_the_vertex(engine: Engine) -> None:
    state = busybox().run("echo out; echo err >&2").root
    ref, reporter = await engine.solve(state.marshal())
    await ref.release()
    logs = [e for e in reporter.events if isinstance(e, VertexLog)]
    assert {e.digest for e in logs} == {str(state.marshal().head.digest)}  # type: ignore[union-attr]
    assert b"".join(e.data for e in logs if e.stream == 1) == b"out\n"
    assert b"".join(e.data for e in logs if e.stream == 2) == b"err\n"


async def test_merge_and_diff(engine: Engine) -> None:
    base = busybox()
    changed = base.run("echo new > /new.txt && rm /etc/group").root
    only_changes = llb.diff(base, changed)
    extra = llb.scratch().mkfile("/extra", 0o644, "e")
    merged = llb.merge([extra, only_changes])
    ref, _ = await engine.solve(only_changes.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert tree["new.txt"] == b"new\n"
    assert "bin/busybox" not in tree
    ref, _ = await engine.solve(merged.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert tree["extra"] == b"e"
    assert tree["new.txt"] == b"new\n"
    # the diff's deletion applies when it is merged onto the base again
    rebuilt = llb.merge([base, only_changes])
    ref, _ = await engine.solve(rebuilt.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert "etc/group" not in tree
    assert "etc/passwd" in tree
    assert tree["new.txt"] == b"new\n"


async def test_users_and_owners(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("data")
    engine.locals.dirs["ctx"] = ctx
    state = (
        busybox()
        .copy(llb.local("ctx"), "/f", "/home/app/f", owner="app:staff")
        .run(
            "id -u > /tmp/uid; id -g > /tmp/gid; stat -c %u:%g /home/app/f > /tmp/owner", user="app"
        )
        .root
    )
    ref, _ = await engine.solve(state.marshal())
    value = ref.value
    assert isinstance(value, ImmutableRef)
    async with value.mount() as root:
        assert (root / "tmp/uid").read_text() == "1000\n"
        assert (root / "tmp/gid").read_text() == "1000\n"
        assert (root / "tmp/owner").read_text() == "1000:50\n"
        st = os.lstat(root / "home/app/f")
        assert (st.st_uid, st.st_gid) == (1000, 50)
    await ref.release()


async def test_cache_mount_persists_and_is_not_in_the_result(engine: Engine) -> None:
    cache = llb.CacheMount("/cache", "counter", sharing=llb.CacheSharing.LOCKED)
    first = busybox().run("echo 1 >> /cache/count; cp /cache/count /seen", mounts=[cache]).root
    second = busybox().run("echo 2 >> /cache/count; cp /cache/count /seen", mounts=[cache]).root
    ref, _ = await engine.solve(first.marshal())
    assert (await engine.read(ref))["seen"] == b"1\n"
    await ref.release()
    ref, _ = await engine.solve(second.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert tree["seen"] == b"1\n2\n"
    assert "cache/count" not in tree


async def test_tmpfs_and_secrets_never_reach_the_result(engine: Engine) -> None:
    class Secrets:
        async def get(self, id: str) -> bytes:
            if id != "token":
                raise NotFoundError(f"secret {id!r} not found")
            return b"s3cr3t-value"

    state = (
        busybox()
        .run(
            'cat /run/secrets/token > /tmp/t/copy; test "$(cat /run/secrets/token)" = s3cr3t-value && echo ok > /result',
            mounts=[llb.SecretMount("/run/secrets/token", "token"), llb.TmpfsMount("/tmp/t")],
        )
        .root
    )
    ref, reporter = await engine.solve(state.marshal(), options=JobOptions(secrets=Secrets()))
    tree = await engine.read(ref)
    await ref.release()
    assert tree["result"] == b"ok\n"
    assert not any(b"s3cr3t" in v for v in tree.values() if isinstance(v, bytes))
    assert "tmp/t/copy" not in tree
    assert "run/secrets/token" not in tree
    assert not any(b"s3cr3t" in e.data for e in reporter.events if isinstance(e, VertexLog))

    missing = busybox().run("true", mounts=[llb.SecretMount("/run/secrets/other", "other")]).root
    with pytest.raises(NotFoundError, match="secret 'other' not found"):
        await engine.solve(missing.marshal(), options=JobOptions(secrets=Secrets()))


async def test_hostile_context_is_contained(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink("/etc/passwd", ctx / "passwd-link")
    os.symlink("../../../../../../etc/shadow", ctx / "shadow-link")
    engine.locals.dirs["ctx"] = ctx
    copied = llb.scratch().copy(llb.local("ctx"), "/", "/ctx/", dir_contents_only=True)
    ref, _ = await engine.solve(copied.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert tree["ctx/passwd-link"] == {"link": "/etc/passwd"}
    assert tree["ctx/shadow-link"] == {"link": "../../../../../../etc/shadow"}

    followed = llb.scratch().copy(llb.local("ctx"), "/passwd-link", "/p", follow_symlinks=True)
    with pytest.raises(NotFoundError):
        await engine.solve(followed.marshal())

    # a build step that plants a link to the host's /etc, then a copy through it
    planted = busybox().run("ln -s /etc /escape").root
    through = planted.copy(
        llb.local("ctx"), "/passwd-link", "/escape/planted", create_dest_path=True
    )
    ref, _ = await engine.solve(through.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert tree["etc/planted"] == {"link": "/etc/passwd"}  # inside the image's own /etc
    assert not _on_host("/etc/planted")


async def test_exec_and_copy_on_top_of_a_merge(engine: Engine) -> None:
    layer = llb.scratch().mkfile("/layer.txt", 0o644, "from a layer")
    merged = llb.merge([busybox(), layer])
    run = merged.run("cat /layer.txt > /seen && rm /layer.txt").root
    state = run.file(llb.copy(merged, "/layer.txt", "/again.txt"))
    ref, _ = await engine.solve(state.marshal())
    tree = await engine.read(ref)
    await ref.release()
    assert tree["seen"] == b"from a layer"
    assert "layer.txt" not in tree
    assert tree["again.txt"] == b"from a layer"
