"""The converter's smaller pieces: git references of ``ADD``, build-context values, paths,
Go duration text, follow paths, and the options that shape every ``RUN``."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import llb
from dockyard.core import Platform, UsageError
from dockyard.dockerfile import (
    ConvertOptions,
    NetworkMode,
    UnresolvedImages,
    convert,
    load_named_context,
    parse_context_spec,
    parse_dockerfile,
)
from dockyard.dockerfile._convert_context import follow_paths
from dockyard.dockerfile._convert_copy import GitRef, GitRefError, _url_filename, parse_git_ref
from dockyard.dockerfile._convert_image import go_duration
from dockyard.dockerfile._convert_paths import normalize_path
from dockyard.dockerfile._convert_stages import familiar_name

from .test_convert_golden import FakeResolver

AMD64 = Platform.parse("linux/amd64")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("src/app", None),
        ("./x.git", None),
        ("github.com/moby/buildkit", None),  # indistinguishable from a local path
        ("https://example.com/file.tar.gz", None),
        ("ftp://example.com/repo.git", None),
        (
            "https://github.com/moby/buildkit.git",
            GitRef(remote="https://github.com/moby/buildkit.git"),
        ),
        (
            "https://github.com/moby/buildkit.git#v0.13:docs/attic",
            GitRef(remote="https://github.com/moby/buildkit.git", ref="v0.13", subdir="docs/attic"),
        ),
        (
            "git@github.com:moby/buildkit.git#main",
            GitRef(remote="git@github.com:moby/buildkit.git", ref="main"),
        ),
        ("ssh://git@host/repo", GitRef(remote="ssh://git@host/repo")),
        ("git://host/repo.git#abc", GitRef(remote="git://host/repo.git", ref="abc")),
        (
            "https://h/r.git?tag=v1&subdir=x&keep-git-dir&submodules=false",
            GitRef(
                remote="https://h/r.git",
                ref="refs/tags/v1",
                subdir="x",
                keep_git_dir=True,
                submodules=False,
            ),
        ),
        (
            "https://h/r.git?branch=main",
            GitRef(remote="https://h/r.git", ref="refs/heads/main"),
        ),
        (
            "https://h/r.git?checksum=" + "a" * 40,
            GitRef(remote="https://h/r.git", ref="a" * 40, checksum="a" * 40),
        ),
    ],
)
def test_parse_git_ref(text: str, expected: GitRef | None) -> None:
    assert parse_git_ref(text) == expected


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://example.com/releases/tool-1.0.tar.gz", "tool-1.0.tar.gz"),
        ("https://example.com/file.txt?x=1#frag", "file.txt"),
        # Go's path.Base drops trailing slashes (docker 20.10's BuildKit names it "dir")
        ("http://127.0.0.1:8000/dir/", "dir"),
        ("http://127.0.0.1:8000/dir//", "dir"),
        # url.Parse decodes the path: BuildKit writes "my file.txt" and "a%b.txt"
        ("http://127.0.0.1:8000/my%20file.txt", "my file.txt"),
        ("http://127.0.0.1:8000/a%25b.txt", "a%b.txt"),
        ("http://127.0.0.1:8000/a%2Fb", "b"),
        ("https://example.com/", "__unnamed__"),
        ("https://example.com", "__unnamed__"),
        ("https://example.com/a/.", "__unnamed__"),
        ("https://example.com/bad%zzescape", "__unnamed__"),
        ("https://example.com/ctl\x7f", "__unnamed__"),
    ],
)
def test_url_filename_is_gos_path_base_of_the_decoded_path(url: str, name: str) -> None:
    assert _url_filename(url) == name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://h/r.git?ref=a&ref=b", "multiple values"),
        ("https://h/r.git?ref=", "has no value"),
        ("https://h/r.git#x?ref=y", None),
        ("https://h/r.git?tag=a&branch=b", "branch conflicts with tag"),
        ("https://h/r.git?colour=red", "unexpected query"),
        ("https://h/r.git?keep-git-dir=maybe", "invalid keep-git-dir"),
        ("https://h/r.git#a?subdir=x", None),
    ],
)
def test_bad_git_queries(text: str, message: str | None) -> None:
    if message is None:
        parse_git_ref(text)
        return
    with pytest.raises(GitRefError, match=message):
        parse_git_ref(text)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("./web", "local"),
        ("/abs/dir", "local"),
        ("docker-image://alpine:3.19", "image"),
        ("oci-layout://store@sha256:" + "a" * 64, "oci-layout"),
        ("https://github.com/a/b.git#main", "git"),
        ("https://example.com/ctx.tar", "http"),
        ("git@github.com:a/b.git", "git"),
        ("ssh://host/repo", "git"),
    ],
)
def test_parse_context_spec(value: str, kind: str) -> None:
    assert parse_context_spec(value).kind == kind


@pytest.mark.parametrize("value", ["", "s3://bucket/x"])
def test_bad_context_spec(value: str) -> None:
    with pytest.raises(UsageError):
        parse_context_spec(value)


async def test_load_named_contexts() -> None:
    fake = FakeResolver()
    image = await load_named_context(
        "base", "docker-image://golang:1.22", resolver=fake, platform=AMD64
    )
    assert image.config is not None
    assert image.state.cwd == "/go"
    assert image.state.get_env("GOPATH") == "/go"
    local = await load_named_context(
        "web", "./web", resolver=fake, platform=AMD64, excludes=["*.tmp"], session_id="s"
    )
    source = local.state.output.vertex  # type: ignore[union-attr]
    assert isinstance(source, llb.SourceOp)
    assert source.identifier == "local://web"
    assert source.attrs["local.session"] == "s"
    git = await load_named_context(
        "src", "https://github.com/a/b.git", resolver=fake, platform=AMD64
    )
    assert isinstance(git.state.output.vertex, llb.SourceOp)  # type: ignore[union-attr]
    assert git.state.output.vertex.identifier == "git://github.com/a/b.git"  # type: ignore[union-attr]
    scratch = await load_named_context("x", "docker-image://scratch", resolver=fake, platform=AMD64)
    assert scratch.state.is_scratch
    with pytest.raises(UsageError, match="did not resolve to a digest"):
        await load_named_context(
            "l", "oci-layout://store:tag", resolver=UnresolvedImages(), platform=AMD64
        )
    fake.images["oci-layout://store"] = fake.images["docker.io/library/busybox:latest"]
    fake.images["oci-layout://store:v1"] = fake.images["docker.io/library/busybox:latest"]
    tagged = await load_named_context("l", "oci-layout://store:v1", resolver=fake, platform=AMD64)
    assert tagged.state.output.vertex.identifier.startswith("oci-layout://store@sha256:")  # type: ignore[union-attr]
    layout = await load_named_context(
        "l", "oci-layout://store@sha256:" + "b" * 64, resolver=fake, platform=AMD64
    )
    assert layout.config is not None
    assert layout.state.output.vertex.identifier.startswith("oci-layout://store@")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("parent", "path", "keep", "expected"),
    [
        ("/app", ".", False, "/app"),
        ("/app", "./", True, "/app/"),
        ("/", "./", True, "/"),
        ("/app", "sub/", True, "/app/sub/"),
        ("/app", "sub/.", True, "/app/sub/."),
        ("/app", "/abs/../x/", True, "/abs/../x/"),  # absolute paths are kept as written
        ("/app", "../up", False, "/up"),
        ("", "rel", False, "/rel"),
        ("rel", "x", False, "/rel/x"),
    ],
)
def test_normalize_path(parent: str, path: str, keep: bool, expected: str) -> None:
    assert normalize_path(parent, path, keep_slash=keep) == expected


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (2_000_000, "2ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-5_000_000_000, "-5s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_follow_paths() -> None:
    assert follow_paths({"/b", "/a/x", "/c/*.go"}) == ["a/x", "b", "c/*.go"]
    assert follow_paths({"/b", "/"}) == []
    assert follow_paths(set()) == []


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("alpine", "alpine"),
        ("alpine:latest", "alpine"),
        ("docker.io/library/alpine:3.19", "alpine:3.19"),
        ("docker.io/foo/bar", "foo/bar"),
        ("ghcr.io/x/y:1", "ghcr.io/x/y:1"),
        ("NotARef", "NotARef"),
    ],
)
def test_familiar_name(ref: str, name: str) -> None:
    assert familiar_name(ref) == name


async def test_run_options_network_hostname_hosts_and_cache_namespace() -> None:
    text = "FROM busybox\nRUN --mount=type=cache,target=/c a\nRUN --network=host b\n"
    options: dict[str, Any] = {
        "build_platform": AMD64,
        "network": NetworkMode.NONE,
        "hostname": "builder",
        "extra_hosts": (llb.HostIP(host="db", ip="10.0.0.2"),),
        "cache_id_namespace": "ns",
    }
    result = await convert(parse_dockerfile(text), ConvertOptions(**options), FakeResolver())
    first, second = [op.op.exec for op in result.definition() if op.kind == "exec"]
    assert int(first.network) == llb.NetMode.NONE
    assert int(second.network) == llb.NetMode.HOST
    assert first.meta.hostname == "builder"
    assert [(h.Host, h.IP) for h in second.meta.extraHosts] == [("db", "10.0.0.2")]
    cache = next(m for m in first.mounts if m.dest == "/c")
    assert cache.cacheOpt.ID == "ns//c"
