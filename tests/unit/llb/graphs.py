"""Graphs shared by the golden, determinism and CLI tests (importable in a subprocess)."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard import llb
from dockyard.core import SourceRange

PLATFORM = "linux/amd64"


def kitchen_sink() -> llb.State:
    """One graph with every op kind and most options."""
    dockerfile = llb.SourceMap(
        filename="Dockerfile", data=b"FROM alpine\nRUN make\n", language="Dockerfile"
    )
    at = llb.Constraints(locations=(dockerfile.location(SourceRange(2, 2)),))

    alpine = llb.image("alpine:3.20", platform="linux/arm64", resolve_mode=llb.ResolveMode.PULL)
    context = llb.local(
        "context",
        session_id="s1",
        include_patterns=["src/", "*.go"],
        exclude_patterns=["**/*_test.go", "<tmp>&"],
        follow_paths=["go.mod"],
        shared_key_hint="context",
    )
    repo = llb.git(
        "https://github.com/moby/buildkit.git", "v0.13.0", subdir="docs", keep_git_dir=True
    )
    asset = llb.http(
        "https://example.com/a.tgz", checksum="sha256:" + "1" * 64, filename="a.tgz", perm=0o644
    )
    layout = llb.oci_layout("store@sha256:" + "2" * 64, store_id="store")

    base = (
        alpine.with_env("PATH", "/usr/bin:/bin")
        .with_env("CGO_ENABLED", "0")
        .with_cwd("/src")
        .with_user("builder")
        .with_hostname("builder")
        .with_extra_host("db", "10.0.0.2")
        .with_ulimit("nofile", 1024, 2048)
    )
    built = base.run(
        ["make", "all"],
        mounts=[
            llb.BindMount("/src", context, selector="src"),
            llb.BindMount("/vendor", repo, readonly=True),
            llb.BindMount("/out", llb.scratch()),
            llb.CacheMount("/root/.cache", "go-build", sharing=llb.CacheSharing.PRIVATE),
            llb.TmpfsMount("/tmp", size=64 << 20),
            llb.SecretMount("/run/secrets/token", "token", mode=0o440, optional=True),
            llb.SSHMount(id="default"),
        ],
        secret_env=[llb.SecretEnv("API_KEY", "api")],
        network=llb.NetMode.HOST,
        valid_exit_codes=[0, 1],
        proxy_env=llb.ProxyEnv(http_proxy="http://proxy:3128"),
        name="make all",
        constraints=at.merged(
            llb.Constraints(progress_group=llb.ProgressGroup(id="g1", name="build"))
        ),
    )
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    staged = llb.mkdir("/stage", 0o755, parents=True, owner="app:app").mkfile(
        "/stage/VERSION", 0o644, "1.0\n", owner=1000, created=created
    )
    files = (
        llb.mkdir("app", 0o750, owner=llb.Chown(0, "staff"))
        .copy(
            built.get_mount("/out"),
            "/",
            "app/bin/",
            dir_contents_only=True,
            mode="u+x",
            include_patterns=["*"],
            exclude_patterns=["*.o"],
            replace_existing=True,
        )
        .copy(asset, "a.tgz", "/app/", attempt_unpack=True, create_dest_path=True, mode=0o600)
        .copy(
            staged.with_state(llb.scratch()),
            "/stage/VERSION",
            "/app/VERSION",
            follow_symlinks=True,
            allow_wildcard=True,
            allow_empty_wildcard=True,
            required_paths=["stage"],
        )
        .symlink("bin/app", "/app/run", created=created)
        .rm("/app/bin/*.debug", allow_not_found=True, allow_wildcard=True)
    )
    runtime = (
        llb.image("alpine:3.20", platform="linux/arm64")
        .with_cwd("/srv")
        .file(files, name="assemble", constraints=at)
    )
    delta = llb.diff(alpine, runtime, name="changes")
    return llb.merge(
        [layout, delta, built.root],
        constraints=llb.Constraints(ignore_cache=True, export_cache=True),
    )


def digests(state: llb.State) -> list[str]:
    return [str(op.digest) for op in state.marshal(platform=PLATFORM)]
