"""Definitions solved end to end on fakes: refs over plain directories, an executor that
runs Python instead of processes. Everything but the sandbox is real: the loader, the
op implementations, the solver and its cache keys."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import (
    CollectingReporter,
    ExecError,
    InvalidDefinitionError,
    NotFoundError,
    PathEscapeError,
    SourceRange,
    VertexLog,
)
from dockyard.executor.types import (
    BindMount,
    NetworkMode,
    OutputSink,
    SecretMount,
    SecurityMode,
    SshMount,
    TmpfsMount,
)
from dockyard.llbsolver import (
    Entitlement,
    EntitlementError,
    JobOptions,
    LlbSolver,
    Worker,
    load,
)
from dockyard.solver import InMemoryCacheKeyStorage, ResultRef, Solver, Vertex

from .fakes import Call, DirRef, DirRefs, DirSource, FakeExecutor, Secrets, SshAgents
from .trees import make_tree, read_tree

BUSYBOX = "docker.io/library/busybox:latest"
PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:\n"


@dataclass
class Env:
    refs: DirRefs
    executor: FakeExecutor
    source: DirSource
    worker: Worker
    keys: InMemoryCacheKeyStorage
    tmp: Path

    def bridge(self) -> LlbSolver:
        """A fresh solver over the same refs and key storage (a restart)."""
        return LlbSolver(self.worker, Solver(result_storage=self.refs, key_storage=self.keys))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    refs = DirRefs(tmp_path / "store")
    executor = FakeExecutor()
    trees: dict[str, Callable[[Path], object]] = {
        BUSYBOX: lambda p: make_tree(
            p, {"etc/": None, "etc/passwd": PASSWD, "etc/group": GROUP, "bin/": None}
        ),
        "ctx": lambda p: make_tree(
            p, {"app.py": "print(1)\n", "README": "docs", "sub/": None, "sub/x": "x"}
        ),
        "context": lambda p: make_tree(p, {"app.py": "print(1)\n"}),
    }
    source = DirSource(refs, trees)
    worker = Worker(refs=refs, executor=executor, sources={"docker-image": source, "local": source})
    return Env(refs, executor, source, worker, InMemoryCacheKeyStorage(), tmp_path)


@pytest.fixture
async def bridge(env: Env) -> AsyncIterator[LlbSolver]:
    yield env.bridge()
    env.refs.assert_no_leaks()


def tree(ref: ResultRef | None) -> dict[str, object]:
    assert ref is not None
    value = ref.value
    assert isinstance(value, DirRef)
    return read_tree(value.path)


async def solve(bridge: LlbSolver, state: llb.State, **kwargs: object) -> dict[str, object]:
    ref = await bridge.solve(state.marshal(), **kwargs)  # type: ignore[arg-type]
    try:
        return tree(ref)
    finally:
        if ref is not None:
            await ref.release()


# -- loading ----------------------------------------------------------------------


def test_vertices_mirror_the_definition(env: Env) -> None:
    base = llb.image("busybox")
    run = base.run("echo hi", name="say hi")
    other = llb.scratch().mkdir("/d")
    result = llb.merge([run.root, other])
    definition = result.marshal(
        constraints=llb.Constraints(progress_group=llb.ProgressGroup(id="pg"))
    )
    edge = load(definition, env.worker)
    assert edge is not None
    head = edge.vertex
    assert head.digest == str(definition.head.digest)  # type: ignore[union-attr]
    assert head.name == 'merge "say hi" + "mkdir /d"'
    names = {v.name for v in _walk(head)}
    assert names == {
        'merge "say hi" + "mkdir /d"',
        "say hi",
        "mkdir /d",
        f"docker-image://{BUSYBOX}",
    }
    assert all(v.options.progress_group == "pg" for v in _walk(head))
    for v in _walk(head):
        node = definition[v.digest]
        assert [e.vertex.digest for e in v.inputs] == [str(i.digest) for i in node.inputs]


def _walk(vertex: Vertex) -> list[Vertex]:
    out = [vertex]
    for e in vertex.inputs:
        out.extend(_walk(e.vertex))
    return out


def test_default_names(env: Env) -> None:
    upper = llb.image("busybox").run(["/bin/true", "x"]).root
    d = llb.diff(llb.image("busybox"), upper)
    edge = load(d.marshal(), env.worker)
    assert edge is not None
    assert edge.vertex.name == f'diff "docker-image://{BUSYBOX}" -> "/bin/true x"'
    copy = llb.scratch().file(llb.copy(llb.local("ctx"), "/a", "/b").mkdir("/c"))
    edge = load(copy.marshal(), env.worker)
    assert edge is not None
    assert edge.vertex.name == "copy /a /b; mkdir /c"


def test_ignore_cache_and_empty_definition(env: Env) -> None:
    d = llb.image("busybox").run("true", constraints=llb.Constraints(ignore_cache=True)).root
    edge = load(d.marshal(), env.worker)
    assert edge is not None
    assert edge.vertex.options.ignore_cache
    assert load(llb.scratch().marshal(), env.worker) is None


def test_unknown_source_scheme_names_the_op(env: Env) -> None:
    state = llb.git("https://example.com/repo.git")
    with pytest.raises(NotFoundError, match=r"no source for git://") as info:
        load(state.marshal(), env.worker)
    assert info.value.vertex is not None
    assert info.value.vertex.name.startswith("git://")


def test_errors_point_at_source_lines(env: Env) -> None:
    dockerfile = llb.SourceMap(filename="Dockerfile", data=b"FROM busybox\nRUN --network=host x\n")
    where = llb.Constraints(locations=(dockerfile.location(SourceRange(2, 2)),))
    state = llb.image("busybox").run("x", network=llb.NetMode.HOST, constraints=where).root
    with pytest.raises(EntitlementError, match=r"network\.host") as info:
        load(state.marshal(), env.worker)
    assert str(info.value).startswith("Dockerfile:2: ")
    assert info.value.locations[0].lines() == ["RUN --network=host x"]


def test_entitlements(env: Env) -> None:
    host = llb.image("busybox").run("x", network=llb.NetMode.HOST).root.marshal()
    insecure = llb.image("busybox").run("x", security=llb.SecurityMode.INSECURE).root.marshal()
    with pytest.raises(EntitlementError, match=r"network\.host"):
        load(host, env.worker)
    with pytest.raises(EntitlementError, match=r"security\.insecure"):
        load(insecure, env.worker, entitlements=frozenset({Entitlement.NETWORK_HOST}))
    assert load(host, env.worker, entitlements=frozenset({Entitlement.NETWORK_HOST}))
    assert load(insecure, env.worker, entitlements=frozenset({Entitlement.SECURITY_INSECURE}))
    # unset network is the worker's default: no entitlement needed
    assert load(llb.image("busybox").run("x").root.marshal(), env.worker)


def test_invalid_ops_are_rejected_at_load(env: Env) -> None:
    bad_mode = llb.scratch().file(llb.copy(llb.local("ctx"), "/a", "/b", mode="u+q"))
    with pytest.raises(InvalidDefinitionError, match="file action 0: invalid mode") as info:
        load(bad_mode.marshal(), env.worker)
    assert info.value.vertex is not None


# -- file ops ---------------------------------------------------------------------


async def test_file_chain_commits_once(env: Env, bridge: LlbSolver) -> None:
    state = llb.scratch().file(
        llb.mkdir("/a", 0o750)
        .mkfile("/a/f", 0o600, "hello")
        .symlink("/a/f", "/l")
        .rm("/a/f")
        .mkfile("/a/g", 0o644, "g")
    )
    assert await solve(bridge, state) == {"a/": None, "a/g": "g", "l": {"link": "/a/f"}}
    assert env.refs.commits == 1


async def test_copy_between_states(env: Env, bridge: LlbSolver) -> None:
    ctx = llb.local("ctx")
    state = llb.image("busybox").file(
        llb.copy(ctx, "/app.py", "/app/", create_dest_path=True).copy(ctx, "/sub", "/app/sub")
    )
    result = await solve(bridge, state)
    assert result["app/app.py"] == "print(1)\n"
    assert result["app/sub/x"] == "x"
    assert "etc/passwd" in result


async def test_copy_reading_an_earlier_action(env: Env, bridge: LlbSolver) -> None:
    staged = llb.mkdir("/stage").mkfile("/stage/f", 0o644, "staged").with_state(llb.scratch())
    state = llb.image("busybox").file(llb.copy(staged, "/stage/f", "/f"))
    result = await solve(bridge, state)
    assert result["f"] == "staged"


async def test_copy_escape_is_rejected_with_the_op_named(env: Env, bridge: LlbSolver) -> None:
    # dockyard.llb cleans "../" away; a hand-made Definition can still carry it
    definition = llb.scratch().file(llb.copy(llb.local("ctx"), "/app.py", "/x")).marshal()

    def escape(op: object) -> None:
        op.file.actions[0].copy.src = "../../etc/passwd"  # type: ignore[attr-defined]

    edited = _replace_op(definition, "file", escape)
    with pytest.raises(
        PathEscapeError, match=r"copy source '\.\./\.\./etc/passwd' points outside"
    ) as info:
        await bridge.solve(edited)
    assert info.value.vertex is not None
    assert info.value.vertex.name.startswith("copy")


def _replace_op(definition: llb.Definition, kind: str, change: object) -> llb.Definition:
    """A copy of ``definition`` with every op of ``kind`` changed and references fixed."""
    import hashlib

    from dockyard.api import ops as pb

    message = definition.to_pb()
    raw_ops = list(getattr(message, "def"))
    renamed: dict[str, str] = {}
    out: list[bytes] = []
    for raw in raw_ops:
        op = pb.Op()
        op.ParseFromString(raw)
        for inp in op.inputs:
            inp.digest = renamed.get(inp.digest, inp.digest)
        if op.WhichOneof("op") == kind:
            change(op)  # type: ignore[operator]
        data = op.SerializeToString(deterministic=True)
        old = "sha256:" + hashlib.sha256(raw).hexdigest()
        new = "sha256:" + hashlib.sha256(data).hexdigest()
        renamed[old] = new
        out.append(data)
    del getattr(message, "def")[:]
    getattr(message, "def").extend(out)
    for old, new in renamed.items():
        if old in message.metadata and old != new:
            message.metadata[new].CopyFrom(message.metadata[old])
            del message.metadata[old]
    return llb.Definition.from_pb(message)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
async def test_copy_owner_by_name_from_the_target(env: Env, bridge: LlbSolver) -> None:
    state = llb.image("busybox").copy(llb.local("ctx"), "/app.py", "/app.py", owner="app:staff")
    ref = await bridge.solve(state.marshal())
    assert ref is not None
    value = ref.value
    assert isinstance(value, DirRef)
    st = os.lstat(value.path / "app.py")
    assert (st.st_uid, st.st_gid) == (1000, 50)
    await ref.release()


async def test_a_missing_copy_source_is_named_by_where_it_was_looked_for(
    env: Env, bridge: LlbSolver
) -> None:
    state = llb.image("busybox").copy(llb.local("ctx"), "/nope.txt", "/x")
    with pytest.raises(NotFoundError, match=r"'/nope.txt' not found in the local source 'ctx'"):
        await bridge.solve(state.marshal())
    context = llb.local("context", exclude_patterns=["*.txt"])
    state = llb.image("busybox").copy(context, "/nope.txt", "/x")
    with pytest.raises(
        NotFoundError, match=r"not found in the build context or excluded by \.dockerignore"
    ):
        await bridge.solve(state.marshal())
    image = llb.image("busybox")
    state = llb.scratch().copy(image, "/nope.txt", "/x")
    with pytest.raises(NotFoundError, match=r"'/nope.txt' not found in the copy source"):
        await bridge.solve(state.marshal())


async def test_copy_owner_unknown_name(env: Env, bridge: LlbSolver) -> None:
    state = llb.image("busybox").copy(llb.local("ctx"), "/app.py", "/app.py", owner="nobody")
    with pytest.raises(NotFoundError, match="user 'nobody' not found"):
        await bridge.solve(state.marshal())


async def test_copy_is_keyed_by_the_content_it_reads(env: Env) -> None:
    ctx = llb.local("ctx")
    state = llb.image("busybox").file(llb.copy(ctx, "/app.py", "/app.py"))
    definition = state.marshal()
    first = env.bridge()
    assert (await solve(first, state))["app.py"] == "print(1)\n"
    commits = env.refs.commits

    # the context changes elsewhere (a new key for the source: it is fetched again)
    env.source.keys["ctx"] = "ctx-v2"
    env.source.trees["ctx"] = lambda p: make_tree(p, {"app.py": "print(1)\n", "README": "changed"})
    reporter = CollectingReporter()
    second = env.bridge()
    ref = await second.solve(definition, reporter=reporter)
    assert ref is not None
    await ref.release()
    assert env.refs.commits == commits  # the copy hit by content
    cached = {s.name for s in reporter.statuses() if s.cached}
    assert any(name.startswith("copy") for name in cached)
    assert env.source.snapshots.count("ctx") == 2

    # now the file the copy reads changes
    env.source.keys["ctx"] = "ctx-v3"
    env.source.trees["ctx"] = lambda p: make_tree(p, {"app.py": "print(2)\n", "README": "changed"})
    assert (await solve(env.bridge(), state))["app.py"] == "print(2)\n"
    assert env.refs.commits == commits + 1
    env.refs.assert_no_leaks()


async def test_second_solve_with_a_new_solver_runs_nothing(env: Env) -> None:
    state = llb.image("busybox").run("make").root.file(llb.mkfile("/out", 0o644, "x"))
    await solve(env.bridge(), state)
    assert len(env.executor.calls) == 1
    reporter = CollectingReporter()
    result = await solve(env.bridge(), state, reporter=reporter)
    assert result["out"] == "x"
    assert len(env.executor.calls) == 1
    finals = {s.digest: s for s in reporter.statuses()}
    assert all(s.cached for s in finals.values() if s.completed is not None)
    env.refs.assert_no_leaks()


# -- exec -------------------------------------------------------------------------


def write(rel: str, data: str, status: int = 0, output: bytes = b""):  # type: ignore[no-untyped-def]
    async def behaviour(call: Call, sink: OutputSink) -> int:
        path = call.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        if output:
            sink(1, output)
        return status

    return behaviour


async def test_exec_writes_into_its_root(env: Env, bridge: LlbSolver) -> None:
    env.executor.behaviour = write("built.txt", "made")
    state = (
        llb.image("busybox")
        .with_env("A", "1")
        .with_cwd("/work")
        .with_user("app")
        .run("make", hostname="h")
        .root
    )
    result = await solve(bridge, state)
    assert result["built.txt"] == "made"
    process = env.executor.calls[0].process
    assert process.args == ("/bin/sh", "-c", "make")
    assert "A=1" in process.env
    assert process.cwd == "/work"
    assert process.user == "app"
    assert process.hostname == "h"
    assert process.network is NetworkMode.HOST  # the worker's default
    assert process.security is SecurityMode.SANDBOX


async def test_exec_failure_names_command_status_and_output(env: Env, bridge: LlbSolver) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(40))
    env.executor.behaviour = write("x", "x", status=3, output=lines + b"fatal: it broke\n")
    dockerfile = llb.SourceMap(filename="Dockerfile", data=b"FROM busybox\nRUN make\n")
    where = llb.Constraints(locations=(dockerfile.location(SourceRange(2, 2)),))
    state = llb.image("busybox").run("make", constraints=where).root
    with pytest.raises(ExecError) as info:
        await bridge.solve(state.marshal())
    err = info.value
    assert (
        str(err)
        == 'Dockerfile:2: process "/bin/sh -c make" did not complete successfully: exit code: 3'
    )
    assert err.exit_status == 3
    assert err.process_args == ("/bin/sh", "-c", "make")
    assert err.log_tail[-1] == "fatal: it broke"
    assert len(err.log_tail) == 20
    assert err.vertex is not None
    assert err.vertex.name == "/bin/sh -c make"


async def test_valid_exit_codes(env: Env, bridge: LlbSolver) -> None:
    env.executor.behaviour = write("x", "x", status=3)
    state = llb.image("busybox").run("make", valid_exit_codes=[0, 3]).root
    assert (await solve(bridge, state))["x"] == "x"


async def test_exec_output_is_streamed_to_the_vertex(env: Env, bridge: LlbSolver) -> None:
    env.executor.behaviour = write("x", "x", output=b"hello\n")
    reporter = CollectingReporter()
    state = llb.image("busybox").run("echo hello").root
    await solve(bridge, state, reporter=reporter)
    logs = [e for e in reporter.events if isinstance(e, VertexLog)]
    assert [e.data for e in logs] == [b"hello\n"]
    assert logs[0].digest == str(state.marshal().head.digest)  # type: ignore[union-attr]


async def test_exec_mounts(env: Env, bridge: LlbSolver) -> None:
    async def behaviour(call: Call, sink: OutputSink) -> int:
        (call.mount_dirs["/out"] / "artifact").write_text("built")
        assert (call.mount_dirs["/src"] / "app.py").read_text() == "print(1)\n"
        (call.mount_dirs["/cache"] / "count").write_text("1")
        return 0

    env.executor.behaviour = behaviour
    base = llb.image("busybox")
    run = base.run(
        "build",
        mounts=[
            llb.BindMount("/src", llb.local("ctx"), readonly=True),
            llb.BindMount("/out", llb.scratch()),
            llb.CacheMount("/cache", "deps", sharing=llb.CacheSharing.LOCKED),
            llb.TmpfsMount("/tmp", size=1 << 20),
        ],
    )
    result = await solve(bridge, run.get_mount("/out"))
    assert result == {"artifact": "built"}
    call = env.executor.calls[0]
    kinds = {m.dest: type(m) for m in call.mounts}
    assert kinds == {"/src": BindMount, "/out": BindMount, "/cache": BindMount, "/tmp": TmpfsMount}
    assert [m.dest for m in call.mounts] == sorted(m.dest for m in call.mounts)
    src = next(m for m in call.mounts if m.dest == "/src")
    assert isinstance(src, BindMount)
    assert src.readonly
    tmpfs = next(m for m in call.mounts if m.dest == "/tmp")
    assert isinstance(tmpfs, TmpfsMount)
    assert tmpfs.size == 1 << 20
    # the cache mount persisted, the root (no output asked for) is not in the result
    caches = list((env.refs.root / "cache").iterdir())
    assert [(c / "count").read_text() for c in caches] == ["1"]


async def test_exec_selector_mount(env: Env, bridge: LlbSolver) -> None:
    seen: list[str] = []

    async def behaviour(call: Call, sink: OutputSink) -> int:
        seen.append((call.mount_dirs["/sub"] / "x").read_text())
        return 0

    env.executor.behaviour = behaviour
    state = (
        llb.image("busybox")
        .run("x", mounts=[llb.BindMount("/sub", llb.local("ctx"), selector="sub", readonly=True)])
        .root
    )
    await solve(bridge, state)
    assert seen == ["x"]


async def test_secrets(env: Env, bridge: LlbSolver) -> None:
    secrets = Secrets({"token": b"s3cr3t", "env": b"from-env"})
    state = (
        llb.image("busybox")
        .run(
            "use secret",
            mounts=[
                llb.SecretMount("/run/secrets/token", "token", uid=1000, mode=0o440),
                llb.SecretMount("/run/secrets/opt", "missing", optional=True),
            ],
            secret_env=[llb.SecretEnv("TOKEN", "env")],
        )
        .root
    )
    result = await solve(bridge, state, options=JobOptions(secrets=secrets))
    assert "run/" not in result
    call = env.executor.calls[0]
    mounts = [m for m in call.mounts if isinstance(m, SecretMount)]
    assert [(m.dest, m.data, m.uid, m.mode) for m in mounts] == [
        ("/run/secrets/token", b"s3cr3t", 1000, 0o440)
    ]
    assert "TOKEN=from-env" in call.process.env
    assert "s3cr3t" not in repr(mounts)

    missing = llb.image("busybox").run("x", mounts=[llb.SecretMount("/s", "nope")]).root
    with pytest.raises(NotFoundError, match="secret 'nope' not found"):
        await bridge.solve(missing.marshal(), options=JobOptions(secrets=secrets))


async def test_secret_values_do_not_change_the_cache_key(env: Env) -> None:
    state = llb.image("busybox").run("x", mounts=[llb.SecretMount("/s", "token")]).root
    await solve(env.bridge(), state, options=JobOptions(secrets=Secrets({"token": b"one"})))
    await solve(env.bridge(), state, options=JobOptions(secrets=Secrets({"token": b"two"})))
    assert len(env.executor.calls) == 1


async def test_ssh(env: Env, bridge: LlbSolver, tmp_path: Path) -> None:
    agents = SshAgents({"default": tmp_path / "agent.sock"})
    state = llb.image("busybox").run("git clone", mounts=[llb.SSHMount(uid=1000)]).root
    await solve(bridge, state, options=JobOptions(ssh_agents=agents))
    mounts = [m for m in env.executor.calls[0].mounts if isinstance(m, SshMount)]
    assert [(m.dest, m.socket) for m in mounts] == [
        ("/run/buildkit/ssh_agent.0", tmp_path / "agent.sock")
    ]
    assert agents.forwarded == [("default", 1000, 0, 0o600)]
    with pytest.raises(NotFoundError, match="SSH agent 'other'"):
        await bridge.solve(
            llb.image("busybox").run("x", mounts=[llb.SSHMount(id="other")]).root.marshal(),
            options=JobOptions(ssh_agents=agents),
        )


async def test_proxy_env_is_not_part_of_the_key(env: Env) -> None:
    def state(proxy: str) -> llb.State:
        return llb.image("busybox").run("fetch", proxy_env=llb.ProxyEnv(http_proxy=proxy)).root

    await solve(env.bridge(), state("http://proxy-a:3128"))
    await solve(env.bridge(), state("http://proxy-b:3128"))
    assert len(env.executor.calls) == 1
    assert "HTTP_PROXY=http://proxy-a:3128" in env.executor.calls[0].process.env
    assert "http_proxy=http://proxy-a:3128" in env.executor.calls[0].process.env
    await solve(env.bridge(), llb.image("busybox").run("fetch", env={"X": "1"}).root)
    assert len(env.executor.calls) == 2


async def test_read_only_input_is_keyed_by_content(env: Env) -> None:
    state = (
        llb.image("busybox")
        .run("x", mounts=[llb.BindMount("/src", llb.local("ctx"), selector="sub", readonly=True)])
        .root
    )
    await solve(env.bridge(), state)
    env.source.keys["ctx"] = "ctx-v2"
    env.source.trees["ctx"] = lambda p: make_tree(
        p, {"app.py": "changed", "sub/": None, "sub/x": "x"}
    )
    await solve(env.bridge(), state)
    assert len(env.executor.calls) == 1  # only sub/ is read, and it did not change
    env.source.keys["ctx"] = "ctx-v3"
    env.source.trees["ctx"] = lambda p: make_tree(p, {"sub/": None, "sub/x": "changed"})
    await solve(env.bridge(), state)
    assert len(env.executor.calls) == 2


async def test_exec_failure_leaves_nothing(env: Env, bridge: LlbSolver) -> None:
    env.executor.behaviour = write("x", "x", status=1)
    state = llb.image("busybox").run("x", mounts=[llb.BindMount("/out", llb.scratch())]).root
    with pytest.raises(ExecError):
        await bridge.solve(state.marshal())
    env.refs.assert_no_leaks()


_FAKE_BINFMT_MISC = Path(__file__).resolve().parents[2] / "data" / "executor" / "binfmt" / "proc"


async def test_platform_mismatch(
    env: Env, bridge: LlbSolver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no binfmt_misc here: nothing is emulated, the error says how to get emulation
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(tmp_path / "no-binfmt-misc"))
    other = "linux/s390x" if env.worker.platform.architecture != "s390x" else "linux/arm64"
    state = llb.image("busybox").with_platform(other).run("x").root
    with pytest.raises(Exception, match="cannot run a linux/") as info:
        await bridge.solve(state.marshal())
    assert "binfmt_misc is not mounted" in str(info.value)
    assert "apt-get install qemu-user-static && dockyard debug binfmt --install" in str(info.value)


async def test_platform_emulated_by_a_binfmt_handler_runs(
    env: Env, bridge: LlbSolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake binfmt_misc has qemu-s390x and qemu-aarch64 with the F flag
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(_FAKE_BINFMT_MISC))
    other = "linux/s390x" if env.worker.platform.architecture != "s390x" else "linux/arm64"
    state = llb.image("busybox").with_platform(other).run("x").root
    await solve(bridge, state)
    assert env.executor.calls[-1].process.args[-1] == "x"


# -- merge and diff ---------------------------------------------------------------


async def test_merge_and_diff(env: Env, bridge: LlbSolver) -> None:
    a = llb.scratch().mkfile("/a", 0o644, "A").mkfile("/both", 0o644, "from a")
    b = llb.scratch().mkfile("/b", 0o644, "B").mkfile("/both", 0o644, "from b")
    assert await solve(bridge, llb.merge([a, b])) == {"a": "A", "b": "B", "both": "from b"}
    upper = a.mkfile("/new", 0o644, "N")
    assert await solve(bridge, llb.diff(a, upper)) == {"new": "N"}
    assert await solve(bridge, llb.diff(llb.scratch(), a)) == {"a": "A", "both": "from a"}


async def test_exec_outputs_in_index_order(env: Env, bridge: LlbSolver) -> None:
    async def behaviour(call: Call, sink: OutputSink) -> int:
        (call.root / "in-root").write_text("r")
        (call.mount_dirs["/a"] / "in-a").write_text("a")
        (call.mount_dirs["/b"] / "in-b").write_text("b")
        return 0

    env.executor.behaviour = behaviour
    run = llb.image("busybox").run(
        "x", mounts=[llb.BindMount("/b", llb.scratch()), llb.BindMount("/a", llb.scratch())]
    )
    async with bridge.new_job() as job:
        outs = {}
        for dest in ("/", "/a", "/b"):
            state = run.root if dest == "/" else run.get_mount(dest)
            ref = await bridge.solve_in(job, state.marshal())
            outs[dest] = tree(ref)
    assert len(env.executor.calls) == 1
    assert outs["/a"] == {"in-a": "a"}
    assert outs["/b"] == {"in-b": "b"}
    assert outs["/"]["in-root"] == "r"
    assert "in-a" not in outs["/"]


async def test_read_only_root_is_the_input_itself(env: Env, bridge: LlbSolver) -> None:
    state = llb.image("busybox").run(
        "x", readonly_rootfs=True, mounts=[llb.BindMount("/out", llb.scratch())]
    )
    await solve(bridge, state.get_mount("/out"))
    call = env.executor.calls[0]
    assert call.root.parent.name == "refs"  # the image's committed tree, no writable copy
    assert env.refs.commits == 1  # only /out


def _definition(ops: list[object], head: tuple[int, int]) -> llb.Definition:
    """A Definition of ``pb.Op`` messages (inputs given as (op position, output))."""
    import hashlib

    from dockyard.api import ops as pb

    raws: list[bytes] = []
    digests: list[str] = []
    for op in ops:
        assert isinstance(op, pb.Op)
        raw = op.SerializeToString(deterministic=True)
        raws.append(raw)
        digests.append("sha256:" + hashlib.sha256(raw).hexdigest())
    terminal = pb.Op(inputs=[pb.Input(digest=digests[head[0]], index=head[1])])
    message = pb.Definition()
    getattr(message, "def").extend([*raws, terminal.SerializeToString(deterministic=True)])
    return llb.Definition.from_pb(message)


async def test_file_op_with_two_outputs(env: Env, bridge: LlbSolver) -> None:
    from dockyard.api import ops as pb

    op = pb.Op(
        file=pb.FileOp(
            actions=[
                pb.FileAction(
                    input=-1,
                    secondaryInput=-1,
                    output=0,
                    mkfile=pb.FileActionMkFile(path="/a", mode=0o644, data=b"A", timestamp=-1),
                ),
                pb.FileAction(
                    input=0,  # the result of action 0 (no op inputs)
                    secondaryInput=-1,
                    output=1,
                    mkfile=pb.FileActionMkFile(path="/b", mode=0o644, data=b"B", timestamp=-1),
                ),
            ]
        )
    )
    async with bridge.new_job() as job:
        first = await bridge.solve_in(job, _definition([op], (0, 0)))
        second = await bridge.solve_in(job, _definition([op], (0, 1)))
        assert tree(first) == {"a": "A"}
        assert tree(second) == {"a": "A", "b": "B"}
    assert env.refs.commits == 2


async def test_failing_action_releases_everything(env: Env, bridge: LlbSolver) -> None:
    state = llb.scratch().file(llb.mkdir("/a").mkfile("/missing/f", 0o644, "x"))
    with pytest.raises(NotFoundError, match="parent directory"):
        await bridge.solve(state.marshal())


def test_source_requests() -> None:
    from dockyard.core import UsageError, VertexRef
    from dockyard.llbsolver import SourceRequest

    where = VertexRef(digest="sha256:x", name="x")
    request = SourceRequest.parse(
        "docker-image://docker.io/library/busybox:latest", attrs={"a": "b"}, vertex=where
    )
    assert (request.scheme, request.path) == ("docker-image", "docker.io/library/busybox:latest")
    assert dict(request.attrs) == {"a": "b"}
    with pytest.raises(UsageError, match="no scheme"):
        SourceRequest.parse("busybox", vertex=where)


async def test_a_source_is_resolved_once_per_op(env: Env, bridge: LlbSolver) -> None:
    state = llb.local("ctx", include_patterns=["*.py"])
    await solve(bridge, state)
    await solve(bridge, state)
    assert len(env.source.requests) == 2  # once per load (each solve loads the Definition)
    request = env.source.requests[0]
    assert request.scheme == "local"
    assert request.attrs["local.includepattern"] == '["*.py"]'
    assert env.source.snapshots == ["ctx"]  # the second solve hit the cache


def test_job_options_values() -> None:
    from dockyard.llbsolver import ENTITLEMENTS, SECRETS, SESSION_ID

    secrets = Secrets({})
    values = JobOptions(
        session_id="s1", secrets=secrets, entitlements=frozenset({Entitlement.NETWORK_HOST})
    ).values()
    assert values[SESSION_ID] == "s1"
    assert values[SECRETS] is secrets
    assert values[ENTITLEMENTS] == frozenset({Entitlement.NETWORK_HOST})
    assert Entitlement.parse("security.insecure") is Entitlement.SECURITY_INSECURE


def test_build_ops_are_rejected(env: Env) -> None:
    from dockyard.api import ops as pb

    op = pb.Op(build=pb.BuildOp(builder=-1))
    with pytest.raises(InvalidDefinitionError, match="nested build ops"):
        load(_definition([op], (0, 0)), env.worker)
