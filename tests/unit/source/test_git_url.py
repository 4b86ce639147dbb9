"""Git remotes, specs from source ops, cache keys, and scrubbing credentials out of text."""

from __future__ import annotations

import pytest

from dockyard import llb
from dockyard.core import InvalidDefinitionError, VertexRef
from dockyard.llbsolver import SourceRequest
from dockyard.source import GitRemote, GitSource, GitSpec, ResolvedRef, redact_url
from dockyard.source._git_url import Scrubber, is_commit_sha

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("text", "url", "scheme", "host"),
    [
        ("https://example.com/repo.git", "https://example.com/repo.git", "https", "example.com"),
        ("http://127.0.0.1:8080/r", "http://127.0.0.1:8080/r", "http", "127.0.0.1:8080"),
        ("git://example.com/r.git", "git://example.com/r.git", "git", "example.com"),
        (
            "ssh://git@example.com:2222/r.git",
            "ssh://git@example.com:2222/r.git",
            "ssh",
            "example.com:2222",
        ),
        (
            "git@github.com:moby/buildkit.git",
            "git@github.com:moby/buildkit.git",
            "ssh",
            "github.com",
        ),
        ("file:///srv/repo", "file:///srv/repo", "file", ""),
        ("github.com/moby/buildkit", "https://github.com/moby/buildkit", "https", "github.com"),
        (
            "https://tok@example.com/r.git#main",
            "https://tok@example.com/r.git",
            "https",
            "example.com",
        ),
    ],
)
def test_remote_forms(text: str, url: str, scheme: str, host: str) -> None:
    remote = GitRemote.parse(text)
    assert (remote.url, remote.scheme, remote.host) == (url, scheme, host)


@pytest.mark.parametrize(
    "text",
    [
        "ext::sh -c touch% /tmp/pwned",
        "fd::3",
        "ftp://example.com/r.git",
        "-uupload-pack=touch /tmp/x",
        "file://otherhost/srv/repo",
        "file:relative",
        "https:///no-host",
        "",
    ],
)
def test_unusable_remotes_are_refused(text: str) -> None:
    with pytest.raises(InvalidDefinitionError):
        GitRemote.parse(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:secret@example.com/r.git", "https://user:xxxxx@example.com/r.git"),
        ("https://ghp_token123@example.com/r.git", "https://xxxxx@example.com/r.git"),
        ("ssh://git@example.com/r.git", "ssh://git@example.com/r.git"),
        ("ssh://git:pw@example.com/r.git", "ssh://git:xxxxx@example.com/r.git"),
        (
            "fatal: unable to access 'https://a:b@h/x/': 403",
            "fatal: unable to access 'https://a:xxxxx@h/x/': 403",
        ),
        ("git@github.com:moby/buildkit.git", "git@github.com:moby/buildkit.git"),
    ],
)
def test_redact_url(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_scrubber_removes_values_and_url_credentials() -> None:
    remote = GitRemote.parse("https://me:hunter22@example.com/r.git")
    scrub = Scrubber([remote]).with_secrets(["s3cr3t-token"])
    text = "cloning https://me:hunter22@example.com/r.git with s3cr3t-token and hunter22"
    out = scrub(text)
    assert "hunter22" not in out
    assert "s3cr3t-token" not in out
    assert "https://me:xxxxx@example.com/r.git" in out


def test_spec_from_llb_git() -> None:
    state = llb.git(
        "https://example.com/org/repo.git",
        "v1.2",
        subdir="a/../b/c/",
        keep_git_dir=True,
        checksum="ABCDEF1",
    )
    assert state.output is not None
    op = state.output.vertex
    assert isinstance(op, llb.SourceOp)
    request = SourceRequest.parse(
        op.identifier, attrs=op.attrs, vertex=VertexRef(digest="d", name="n")
    )
    spec = GitSpec.from_request(request)
    assert spec.remote.url == "https://example.com/org/repo.git"
    assert (spec.ref, spec.subdir, spec.keep_git_dir, spec.checksum) == (
        "v1.2",
        "b/c",
        True,
        "abcdef1",
    )
    assert spec.auth_token_secret == "GIT_AUTH_TOKEN"
    assert spec.auth_header_secret == "GIT_AUTH_HEADER"
    assert spec.display == "https://example.com/org/repo.git#v1.2:b/c"


def test_spec_from_scp_like_llb_git_mounts_the_default_agent() -> None:
    state = llb.git(
        "git@example.com:org/repo.git#main", known_ssh_hosts="example.com ssh-ed25519 AAAA"
    )
    assert state.output is not None
    op = state.output.vertex
    assert isinstance(op, llb.SourceOp)
    request = SourceRequest.parse(
        op.identifier, attrs=op.attrs, vertex=VertexRef(digest="d", name="n")
    )
    spec = GitSpec.from_request(request)
    assert spec.remote.scheme == "ssh"
    assert spec.remote.url == "git@example.com:org/repo.git"
    assert spec.ref == "main"
    assert spec.mount_ssh_sock == "default"
    assert spec.known_ssh_hosts == "example.com ssh-ed25519 AAAA\n"


def test_spec_without_full_url_attr_means_https() -> None:
    request = SourceRequest.parse(
        "git://github.com/moby/buildkit#v0.13:docs", vertex=VertexRef(digest="d", name="n")
    )
    spec = GitSpec.from_request(request)
    assert spec.remote.url == "https://github.com/moby/buildkit"
    assert (spec.ref, spec.subdir) == ("v0.13", "docs")


@pytest.mark.parametrize(
    "ref", ["-delete", "a..b", "x y", "a:b", "refs/heads/", "x~1", "@{-1}", "a\\b"]
)
def test_bad_refs_are_refused(ref: str) -> None:
    with pytest.raises(InvalidDefinitionError, match="invalid git ref"):
        GitSpec.create("https://example.com/r.git", ref=ref)


def test_bad_checksum_is_refused() -> None:
    with pytest.raises(InvalidDefinitionError, match="expected a hex commit hash"):
        GitSpec.create("https://example.com/r.git", checksum="sha256:abc")


def test_parse_url_fragment() -> None:
    spec = GitSpec.parse_url("git://h/r.git#refs/pull/7/head:/docs/../src")
    assert (spec.ref, spec.subdir) == ("refs/pull/7/head", "src")


def test_commit_ids() -> None:
    assert is_commit_sha(SHA)
    assert is_commit_sha("a" * 64)
    assert not is_commit_sha(SHA[:12])
    assert not is_commit_sha(SHA.upper())


def test_cache_keys_follow_buildkit() -> None:
    plain = GitSpec.create("https://example.com/r.git", ref="main")
    commit = ResolvedRef(commit=SHA, object=SHA, ref="refs/heads/main")
    assert GitSource.cache_key(plain, commit) == SHA
    tag_object = "f" * 40
    tagged = ResolvedRef(commit=SHA, object=tag_object, ref="refs/tags/v1")
    assert GitSource.cache_key(plain, tagged) == SHA  # the commit an annotated tag names
    keep = GitSpec.create("https://example.com/r.git", ref="v1", keep_git_dir=True)
    assert GitSource.cache_key(keep, tagged) == f"{tag_object}.git#refs/tags/v1"
    sub = GitSpec.create(
        "https://example.com/r.git", ref="main", subdir="docs", skip_submodules=True
    )
    assert GitSource.cache_key(sub, commit) == f"{SHA}:docs(skip-submodules)"
    # two names, one commit: one key; the key never carries the URL or credentials
    other = GitSpec.create("https://user:pw@example.com/r.git", ref="v1")
    assert GitSource.cache_key(other, tagged) == GitSource.cache_key(plain, commit)
