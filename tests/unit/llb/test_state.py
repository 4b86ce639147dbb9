"""The State builder: settings carried on states, exec mounts and outputs, file actions,
sources, merge/diff and per-op options."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import pytest

from dockyard import llb
from dockyard.api import ops as pb
from dockyard.core import Platform, SourceRange, UsageError

AMD64 = "linux/amd64"


def ops_of(state: llb.State, **kwargs: object) -> list[llb.OpNode]:
    return list(state.marshal(platform=AMD64, **kwargs))  # type: ignore[arg-type]


def last_op(state: llb.State) -> llb.OpNode:
    definition = state.marshal(platform=AMD64)
    head = definition.head
    assert head is not None
    return definition[head.digest]


# -- settings carried on the state -------------------------------------------------------


def test_states_are_immutable() -> None:
    base = llb.image("busybox")
    changed = base.with_env("A", "1").with_cwd("/x").with_user("u")
    assert (base.env, base.cwd, base.user) == ({}, "/", "")
    assert (changed.env, changed.cwd, changed.user) == ({"A": "1"}, "/x", "u")
    assert changed.output is base.output


def test_env_replacing_moves_the_variable_to_the_end() -> None:
    state = llb.scratch().with_env("A", "1").with_env("B", "2").with_env("A", "3")
    assert list(state.env.items()) == [("B", "2"), ("A", "3")]
    assert state.get_env("A") == "3"
    assert state.get_env("C", "none") == "none"
    with pytest.raises(UsageError):
        state.with_env("BAD=NAME", "x")


def test_env_of_states_set_from_one_base_stay_apart() -> None:
    base = llb.scratch().with_env("A", "1")
    first = base.with_env("B", "2")
    second = base.with_env("C", "3")  # the base's log was extended by first: a branch
    third = first.with_envs({"A": "4", "D": "5"})
    fourth = second.with_env("B", "6")
    assert list(base.env.items()) == [("A", "1")]
    assert list(first.env.items()) == [("A", "1"), ("B", "2")]
    assert list(second.env.items()) == [("A", "1"), ("C", "3")]
    assert list(third.env.items()) == [("B", "2"), ("A", "4"), ("D", "5")]
    assert list(fourth.env.items()) == [("A", "1"), ("C", "3"), ("B", "6")]
    op = first.run(["true"]).root.marshal(platform=AMD64)
    head = op.head
    assert head is not None
    assert list(op[head.digest].op.exec.meta.env) == ["A=1", "B=2"]


def test_env_set_again_and_again_keeps_its_order() -> None:
    state = llb.scratch().with_env("A", "0").with_env("B", "0")
    for i in range(100):
        state = state.with_env("A", str(i))
        assert state.get_env("A") == str(i)  # reads compact the log now and then
    state = state.with_env("C", "c").with_env("B", "b")
    assert list(state.env.items()) == [("A", "99"), ("C", "c"), ("B", "b")]


def test_the_empty_environment_lends_no_list() -> None:
    # a state from scratch starts a list of its own: appended to the shared empty
    # environment's list, the first chain of states would stay alive for good
    from dockyard.llb import _state

    llb.scratch().with_env("A", "1").with_env("B", "2")
    assert llb.scratch().with_env("C", "3").env == {"C": "3"}
    assert llb.scratch().env == {}
    assert _state._NO_ENV._log._items == []  # its storage, not only its length


def test_env_states_in_a_line_share_their_variables() -> None:
    # each with_env copied the whole environment: 2000 states kept (as the ops of 2000
    # ENV and RUN lines keep them) held 2 million entries; now one list holds them all
    def retained(n: int) -> int:
        tracemalloc.start()
        try:
            state = llb.scratch()
            kept = []
            for i in range(n):
                state = state.with_env(f"K{i}", "v")
                kept.append(state)
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    small, large = retained(1000), retained(2000)
    assert large < 2.5 * small, (small, large)


def test_cwd_relative_paths_join_the_current_one() -> None:
    state = llb.scratch()
    assert state.cwd == "/"
    assert state.with_cwd("a").with_cwd("b/../c").cwd == "/a/c"
    assert state.with_cwd("/a").with_cwd("/abs").cwd == "/abs"
    assert state.with_cwd("/a").with_cwd("..").with_cwd("..").cwd == "/"


def test_exec_uses_the_state_settings() -> None:
    state = (
        llb.image("busybox")
        .with_env("A", "1")
        .with_cwd("/work")
        .with_user("nobody")
        .with_hostname("h")
        .with_cgroup_parent("/cg")
        .with_network(llb.NetMode.NONE)
        .with_security(llb.SecurityMode.INSECURE)
    )
    op = last_op(state.run(["true"]).root)
    meta = op.op.exec.meta
    assert list(meta.env) == ["A=1"]
    assert (meta.cwd, meta.user, meta.hostname, meta.cgroupParent) == (
        "/work",
        "nobody",
        "h",
        "/cg",
    )
    assert op.op.exec.network == pb.NetMode.NONE
    assert op.op.exec.security == pb.SecurityMode.INSECURE
    assert meta.removeMountStubsRecursive
    assert {"exec.meta.network", "exec.meta.security"} <= set(op.metadata.caps)


def test_run_options_apply_to_that_exec_only() -> None:
    base = llb.image("busybox").with_env("A", "1")
    result = base.run(["true"], env={"B": "2"}, cwd="/tmp", user="u", hostname="h")
    meta = last_op(result.root).op.exec.meta
    assert list(meta.env) == ["A=1", "B=2"]
    assert (meta.cwd, meta.user, meta.hostname) == ("/tmp", "u", "h")
    # The result keeps the settings of the state run() was called on (as in BuildKit).
    assert (result.env, result.cwd, result.user) == ({"A": "1"}, "/", "")
    assert result.root.env == {"A": "1"}


def test_shell_string_and_argument_list() -> None:
    base = llb.image("busybox")
    assert list(last_op(base.run("echo hi > /x").root).op.exec.meta.args) == [
        "/bin/sh",
        "-c",
        "echo hi > /x",
    ]
    assert list(last_op(base.run(["echo", "hi"]).root).op.exec.meta.args) == ["echo", "hi"]
    with pytest.raises(UsageError, match="arguments are required"):
        base.run([]).root.marshal()


def test_platform_is_carried_from_image_to_exec() -> None:
    arm = llb.image("busybox", platform="linux/arm64")
    assert arm.platform == Platform.parse("linux/arm64")
    after = arm.run(["true"]).root
    assert after.platform == Platform.parse("linux/arm64")
    ops = ops_of(after)
    assert [(o.op.platform.OS, o.op.platform.Architecture) for o in ops[:2]] == [
        ("linux", "arm64"),
        ("linux", "arm64"),
    ]
    # with_platform on a state changes the exec's platform, not the image's
    plain = llb.image("busybox").with_platform("linux/arm/v7").run(["true"]).root
    image_op, exec_op = ops_of(plain)[:2]
    assert image_op.op.platform.Architecture == "amd64"
    assert (exec_op.op.platform.Architecture, exec_op.op.platform.Variant) == ("arm", "v7")


def test_image_config_sets_env_cwd_and_platform() -> None:
    config = {
        "architecture": "arm64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin", "A=b=c"], "WorkingDir": "/app"},
    }
    state = llb.image("busybox").with_image_config(config)
    assert state.env == {"PATH": "/bin", "A": "b=c"}
    assert state.cwd == "/app"
    assert state.platform == Platform.parse("linux/arm64")
    with pytest.raises(UsageError):
        llb.scratch().with_image_config(b"not json")


def test_extra_hosts_ulimits_exit_codes_proxy() -> None:
    state = llb.image("busybox").with_extra_host("a", "1.2.3.4").with_ulimit("nofile", 1, 2)
    op = last_op(
        state.run(
            ["true"],
            extra_hosts={"b": "::1"},
            ulimits=[llb.Ulimit(name="nproc", soft=3, hard=4)],
            valid_exit_codes=[0, 2],
            proxy_env=llb.ProxyEnv(https_proxy="p", no_proxy="n"),
        ).root
    )
    meta = op.op.exec.meta
    assert [(h.Host, h.IP) for h in meta.extraHosts] == [("a", "1.2.3.4"), ("b", "::1")]
    assert [(u.Name, u.Soft, u.Hard) for u in meta.ulimit] == [("nofile", 1, 2), ("nproc", 3, 4)]
    assert list(meta.validExitCodes) == [0, 2]
    assert (meta.proxy_env.https_proxy, meta.proxy_env.no_proxy) == ("p", "n")
    assert {"exec.meta.ulimit", "exec.validexitcode", "exec.meta.proxyenv"} <= set(op.metadata.caps)


# -- mounts and outputs --------------------------------------------------------------------


def test_mount_order_outputs_and_input_dedup() -> None:
    base = llb.image("busybox")
    ctx = llb.local("context")
    result = base.run(
        ["true"],
        mounts=[
            llb.TmpfsMount("/tmp", size=1024),
            llb.BindMount("/b", ctx),
            llb.BindMount("/a", ctx, selector="sub"),
            llb.BindMount("/ro", ctx, readonly=True),
            llb.BindMount("/discard", ctx, no_output=True),
            llb.CacheMount("/cache", "c1", sharing=llb.CacheSharing.LOCKED),
            llb.SecretMount("/run/secrets/s", "s"),
            llb.SSHMount(),
            llb.SSHMount("/ssh2", id="other"),
        ],
    )
    op = last_op(result.root)
    mounts = op.op.exec.mounts
    assert [m.dest for m in mounts] == [
        "/",
        "/a",
        "/b",
        "/cache",
        "/discard",
        "/ro",
        "/tmp",
        "/run/secrets/s",
        "/run/buildkit/ssh_agent.0",
        "/ssh2",
    ]
    # Writable bind mounts get outputs in sorted order; the others none.
    assert [m.output for m in mounts[:7]] == [0, 1, 2, -1, -1, -1, -1]
    # One op input per distinct source: the image and the context.
    assert len(op.op.inputs) == 2
    assert [m.input for m in mounts] == [0, 1, 1, -1, 1, 1, -1, -1, -1, -1]
    assert mounts[1].selector == "sub"
    assert mounts[3].mountType == pb.MountType.CACHE
    assert mounts[3].cacheOpt.sharing == pb.CacheSharingOpt.LOCKED
    assert mounts[6].mountType == pb.MountType.TMPFS
    assert mounts[6].TmpfsOpt.size == 1024
    assert mounts[7].mountType == pb.MountType.SECRET
    assert mounts[7].secretOpt.mode == 0o400
    assert mounts[8].mountType == pb.MountType.SSH
    assert mounts[8].SSHOpt.mode == 0o600
    assert "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0" in op.op.exec.meta.env
    assert op.outputs == 3

    # get_mount: new outputs for writable binds, the source itself for read-only ones
    a = result.get_mount("/a")
    assert a.output is not None
    assert a.output.index == 1
    assert a.output.vertex is result.exec_op
    assert result.get_mount("/b").output.index == 2  # type: ignore[union-attr]
    assert result.get_mount("/ro") is ctx
    assert result.get_mount("/").output is result.root.output
    for dest in ("/cache", "/tmp", "/discard", "/run/secrets/s", "/ssh2"):
        with pytest.raises(UsageError, match="has no output"):
            result.get_mount(dest)
    with pytest.raises(UsageError, match="no mount"):
        result.get_mount("/nope")


def test_reading_a_mount_output_downstream() -> None:
    result = llb.image("busybox").run(["make"], mounts=[llb.BindMount("/out", llb.scratch())])
    copied = llb.scratch().file(llb.copy(result.get_mount("/out"), "/", "/"))
    definition = copied.marshal(platform=AMD64)
    file_op = definition[definition.head.digest]  # type: ignore[union-attr]
    exec_op = definition.ops[1]
    assert file_op.inputs == (llb.OpInput(exec_op.digest, 1),)
    assert exec_op.outputs == 2


def test_ssh_auth_sock_is_kept_when_set() -> None:
    state = llb.image("busybox").with_env("SSH_AUTH_SOCK", "/mine")
    meta = last_op(state.run(["true"], mounts=[llb.SSHMount()]).root).op.exec.meta
    assert list(meta.env) == ["SSH_AUTH_SOCK=/mine"]


def test_readonly_rootfs_has_no_root_output() -> None:
    base = llb.image("busybox")
    result = base.run(["true"], readonly_rootfs=True, mounts=[llb.BindMount("/out", llb.scratch())])
    assert result.root.output is base.output
    op = result.get_mount("/out")
    assert op.output is not None
    assert op.output.index == 0


def test_secret_env() -> None:
    op = last_op(
        llb.image("busybox")
        .run(["true"], secret_env=[llb.SecretEnv("TOKEN", "tok", optional=True)])
        .root
    )
    assert [(s.ID, s.name, s.optional) for s in op.op.exec.secretenv] == [("tok", "TOKEN", True)]
    assert {"exec.secretenv", "exec.mount.secret"} <= set(op.metadata.caps)


def test_mount_errors() -> None:
    base = llb.image("busybox")
    with pytest.raises(UsageError, match="two mounts at /a"):
        base.run(["true"], mounts=[llb.TmpfsMount("/a"), llb.SecretMount("/a", "s")])
    with pytest.raises(UsageError, match="two mounts at /"):
        base.run(["true"], mounts=[llb.BindMount("/", base)])
    with pytest.raises(UsageError, match="id is required"):
        base.run(["true"], mounts=[llb.CacheMount("/c", "")])


# -- file actions --------------------------------------------------------------------------


def test_file_paths_resolve_against_the_working_directory() -> None:
    src = llb.image("busybox").with_cwd("/srcdir")
    state = (
        llb.scratch()
        .with_cwd("/work")
        .file(
            llb.mkdir("a")
            .mkfile("a/f", 0o600, "x")
            .rm("old")
            .copy(src, "rel/file", "dest/")
            .symlink("t", "l")
        )
    )
    actions = last_op(state).op.file.actions
    assert actions[0].mkdir.path == "/work/a"
    assert actions[1].mkfile.path == "/work/a/f"
    assert actions[1].mkfile.data == b"x"
    assert actions[2].rm.path == "/work/old"
    assert (actions[3].copy.src, actions[3].copy.dest) == ("/srcdir/rel/file", "/work/dest/")
    assert (actions[4].symlink.oldpath, actions[4].symlink.newpath) == ("t", "l")


def test_copy_destination_keeps_its_trailing_slash() -> None:
    def dest(path: str) -> str:
        return (
            last_op(llb.scratch().copy(llb.image("busybox"), "/x", path))
            .op.file.actions[0]
            .copy.dest
        )

    assert dest("/a/") == "/a/"
    assert dest("/a/.") == "/a/."
    assert dest("/a//b/../c") == "/a/c"
    assert dest("./") == "/"
    assert dest("b/.") == "/b/."


def test_owner_mode_and_time() -> None:
    when = datetime(2000, 1, 1, tzinfo=UTC)
    base = llb.image("busybox")
    state = base.file(
        llb.mkdir("/d", 0o4755, owner="www-data:1000", created=when)
        .copy(base, "/etc", "/e", owner=llb.Chown("root"), mode="go-w")
        .copy(base, "/etc", "/f", mode=0o640)
        .copy(base, "/etc", "/g")
    )
    actions = last_op(state).op.file.actions
    mkdir = actions[0].mkdir
    assert mkdir.mode == 0o755  # permission bits only, as BuildKit's client
    assert (mkdir.owner.user.byName.name, mkdir.owner.user.byName.input) == ("www-data", 0)
    assert mkdir.owner.group.byID == 1000
    assert mkdir.timestamp == 946684800 * 10**9
    copy_e = actions[1].copy
    assert copy_e.owner.user.byID == 0
    assert not copy_e.owner.HasField("group")
    assert (copy_e.modeStr, copy_e.mode) == ("go-w", 0)
    assert (actions[2].copy.modeStr, actions[2].copy.mode) == ("", 0o640)
    assert (actions[3].copy.mode, actions[3].copy.timestamp) == (-1, -1)


def test_chown_parse() -> None:
    assert llb.Chown.parse("root") == llb.Chown(0)
    assert llb.Chown.parse("1000:1001") == llb.Chown(1000, 1001)
    assert llb.Chown.parse("app:staff") == llb.Chown("app", "staff")
    # an empty part is id 0 (BuildKit's WithUser marshals an empty name as ID 0)
    assert llb.Chown.parse(":staff") == llb.Chown(0, "staff")
    assert llb.Chown.parse(":5") == llb.Chown(0, 5)
    assert llb.Chown.parse("app:") == llb.Chown("app", 0)
    with pytest.raises(UsageError):
        llb.Chown.parse("4294967296")


def test_actions_can_read_earlier_actions_results() -> None:
    # The same bound chain used twice is computed once inside the op.
    prepared = llb.mkdir("/p").mkfile("/p/f", 0o644, b"")
    source = prepared.with_state(llb.scratch())
    state = llb.image("busybox").file(llb.copy(source, "/p/f", "/one").copy(source, "/p", "/two"))
    op = last_op(state)
    actions = op.op.file.actions
    assert [a.WhichOneof("action") for a in actions] == ["mkdir", "mkfile", "copy", "copy"]
    n = len(op.op.inputs)
    assert n == 1
    assert (actions[2].input, actions[2].secondaryInput) == (0, n + 1)
    assert (actions[3].input, actions[3].secondaryInput) == (n + 2, n + 1)
    assert [a.output for a in actions] == [-1, -1, -1, 0]


def test_file_op_has_no_platform() -> None:
    assert not last_op(llb.image("busybox").mkdir("/x")).op.HasField("platform")


def test_copy_rejects_bad_sources() -> None:
    with pytest.raises(UsageError):
        llb.copy("not a state", "/a", "/b")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        llb.scratch().file("mkdir /x")  # type: ignore[arg-type]


# -- sources ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "identifier"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("index.docker.io/user/app", "docker.io/user/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("ghcr.io/o/r/app:1.0", "ghcr.io/o/r/app:1.0"),
        ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
        ("busybox:1@sha256:" + "a" * 64, "docker.io/library/busybox:1@sha256:" + "a" * 64),
    ],
)
def test_image_reference_normalization(ref: str, identifier: str) -> None:
    assert last_op(llb.image(ref)).op.source.identifier == "docker-image://" + identifier


@pytest.mark.parametrize(
    "ref", ["", "Busybox", "bad ref", "busybox:", "busybox@sha256:123", "a//b"]
)
def test_invalid_image_references(ref: str) -> None:
    with pytest.raises(UsageError, match="invalid image reference"):
        llb.image(ref)


def test_image_attrs() -> None:
    op = last_op(llb.image("busybox", resolve_mode="local", layer_limit=3, record_type="internal"))
    assert dict(op.op.source.attrs) == {
        "image.resolvemode": "local",
        "image.layerlimit": "3",
        "image.recordtype": "internal",
    }
    assert dict(last_op(llb.image("busybox", resolve_mode="default")).op.source.attrs) == {}


def test_local_source() -> None:
    op = last_op(llb.local("ctx", include_patterns=["a"], differ=llb.LocalDiffer.NONE))
    assert op.op.source.identifier == "local://ctx"
    assert dict(op.op.source.attrs) == {"local.includepattern": '["a"]', "local.differ": "none"}
    assert not op.op.HasField("platform")
    # BuildKit's client adds a random local.unique per marshal; we only on request, so
    # that the same graph keeps the same digests.
    unique = llb.local("ctx").marshal(local_unique_id="u1")
    assert dict(unique.ops[0].op.source.attrs) == {"local.unique": "u1"}
    with_session = llb.local("ctx", session_id="s").marshal(local_unique_id="u1")
    assert "local.unique" not in with_session.ops[0].op.source.attrs


@pytest.mark.parametrize(
    ("url", "ref", "identifier", "attrs"),
    [
        (
            "https://github.com/moby/buildkit.git",
            "",
            "git://github.com/moby/buildkit.git",
            {"git.fullurl": "https://github.com/moby/buildkit.git"},
        ),
        (
            "github.com/moby/buildkit",
            "main",
            "git://github.com/moby/buildkit#main",
            {"git.fullurl": "https://github.com/moby/buildkit"},
        ),
        (
            "https://github.com/moby/buildkit.git#v1:docs",
            "",
            "git://github.com/moby/buildkit.git#v1:docs",
            {"git.fullurl": "https://github.com/moby/buildkit.git"},
        ),
        (
            "git@github.com:moby/buildkit.git",
            "",
            "git://github.com/moby/buildkit.git",
            {"git.fullurl": "git@github.com:moby/buildkit.git", "git.mountsshsock": "default"},
        ),
    ],
)
def test_git_source(url: str, ref: str, identifier: str, attrs: dict[str, str]) -> None:
    op = last_op(llb.git(url, ref))
    assert op.op.source.identifier == identifier
    expected = {
        "git.authtokensecret": "GIT_AUTH_TOKEN",
        "git.authheadersecret": "GIT_AUTH_HEADER",
        **attrs,
    }
    assert dict(op.op.source.attrs) == expected


def test_git_rejects_unknown_schemes() -> None:
    with pytest.raises(UsageError):
        llb.git("ftp://example.com/repo")


def test_http_source() -> None:
    op = last_op(llb.http("https://e.com/x", filename="x.bin", perm=0o755, uid=1, gid=2))
    assert op.op.source.identifier == "https://e.com/x"
    assert dict(op.op.source.attrs) == {
        "http.filename": "x.bin",
        "http.perm": "0755",
        "http.uid": "1",
        "http.gid": "2",
    }
    with pytest.raises(UsageError):
        llb.http("file:///etc/passwd")
    with pytest.raises(UsageError):
        llb.http("https://e.com/x", checksum="md5:abc")


def test_oci_layout_source_is_platform_specific() -> None:
    op = last_op(llb.oci_layout("s@sha256:" + "b" * 64, session_id="sess", layer_limit=2))
    assert op.op.source.identifier == "oci-layout://s@sha256:" + "b" * 64
    assert dict(op.op.source.attrs) == {"oci.session": "sess", "oci.layerlimit": "2"}
    assert op.op.platform.Architecture == "amd64"


# -- merge and diff --------------------------------------------------------------------------


def test_merge() -> None:
    a, b = llb.image("alpine"), llb.image("busybox").with_env("X", "1")
    assert llb.merge([]).is_scratch
    assert llb.merge([llb.scratch(), a, llb.scratch()]) is a
    merged = llb.merge([a, llb.scratch(), b, a])
    assert merged.env == {}  # a merge starts with default settings
    op = last_op(merged)
    assert op.kind == "merge"
    assert [m.input for m in op.op.merge.inputs] == [0, 1, 2]
    assert len(op.op.inputs) == 3
    assert not op.op.HasField("platform")


def test_diff() -> None:
    lower = llb.image("alpine").with_cwd("/x")
    upper = lower.run(["touch", "f"]).root
    assert llb.diff(llb.scratch(), upper) is upper
    assert llb.diff(llb.scratch(), llb.scratch()).is_scratch
    diffed = llb.diff(lower, upper)
    assert diffed.cwd == "/x"
    op = last_op(diffed)
    assert (op.op.diff.lower.input, op.op.diff.upper.input) == (0, 1)
    to_scratch = last_op(llb.diff(lower, llb.scratch()))
    assert (to_scratch.op.diff.lower.input, to_scratch.op.diff.upper.input) == (0, -1)


# -- per-op options --------------------------------------------------------------------------


def test_constraints_become_metadata() -> None:
    state = llb.image(
        "busybox",
        name="base image",
        constraints=llb.Constraints(
            description={"x": "y"},
            ignore_cache=True,
            export_cache=False,
            progress_group=llb.ProgressGroup(id="g", name="group", weak=True),
            caps=frozenset({"custom.cap"}),
            worker_constraints=("label==a",),
        ),
    )
    op = last_op(state)
    md = op.metadata
    assert dict(md.description) == {"x": "y", "llb.customname": "base image"}
    assert md.ignore_cache
    assert md.HasField("export_cache")
    assert not md.export_cache.Value
    assert (md.progress_group.id, md.progress_group.name, md.progress_group.weak) == (
        "g",
        "group",
        True,
    )
    assert {"custom.cap", "source.image"} <= set(md.caps)
    assert list(op.op.constraints.filter) == ["label==a"]
    assert op.name == "base image"


def test_marshal_level_constraints_apply_to_every_op() -> None:
    state = llb.image("busybox").run(["true"]).root
    definition = state.marshal(
        platform=AMD64, constraints=llb.Constraints(ignore_cache=True, worker_constraints=("w",))
    )
    for op in definition.ops[:-1]:
        assert op.metadata.ignore_cache
        assert list(op.op.constraints.filter) == ["w"]
    assert definition.terminal is not None
    assert "meta.ignorecache" in definition.terminal.metadata.caps


def test_identical_ops_are_emitted_once_with_merged_metadata() -> None:
    a = llb.image("busybox", name="first")
    b = llb.image("busybox", constraints=llb.Constraints(ignore_cache=True))
    definition = llb.merge([a, b]).marshal(platform=AMD64)
    assert [op.kind for op in definition] == ["source", "merge", ""]
    image = definition.ops[0]
    assert image.metadata.ignore_cache
    assert image.custom_name == "first"
    merge = definition.ops[1]
    assert [i.digest for i in merge.inputs] == [image.digest, image.digest]


def test_source_locations() -> None:
    dockerfile = llb.SourceMap(filename="Dockerfile", data=b"FROM busybox\nRUN true\n")
    at_1 = llb.Constraints(locations=(dockerfile.location(SourceRange(1, 1)),))
    at_2 = llb.Constraints(locations=(dockerfile.location(SourceRange(2, 2, 0, 8)),))
    state = llb.image("busybox", constraints=at_1).run(["true"], constraints=at_2).root
    definition = state.marshal(platform=AMD64)
    image, exec_op = definition.ops[:2]
    assert [str(loc) for loc in definition.locations(image.digest)] == ["Dockerfile:1"]
    (loc,) = exec_op.locations
    assert (loc.filename, loc.ranges, loc.lines()) == (
        "Dockerfile",
        (SourceRange(2, 2, 0, 8),),
        ["RUN true"],
    )
    source = definition.to_pb().Source
    assert len(source.infos) == 1
    assert source.infos[0].filename == "Dockerfile"
    assert definition.locations(definition.terminal.digest) == ()  # type: ignore[union-attr]


def test_platform_argument_errors() -> None:
    with pytest.raises(UsageError):
        llb.image("busybox", platform="linux/arm64/v8/extra")
    with pytest.raises(UsageError):
        llb.scratch().marshal(platform="")


def test_deep_graph_does_not_recurse() -> None:
    state = llb.image("busybox")
    for i in range(3000):
        state = state.run(["step", str(i)]).root
    definition = state.marshal(platform=AMD64)
    assert len(definition) == 3002
    assert llb.Definition.load(definition.to_bytes()).head == definition.head


def test_scratch_marshals_to_an_empty_definition() -> None:
    definition = llb.scratch().marshal()
    assert definition.is_empty
    assert definition.head is None
    assert definition.terminal is None
    assert definition.to_bytes() == b""
    assert definition.dump() == []
