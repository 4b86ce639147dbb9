"""The git source over ``file://`` repositories the tests make, on a native-snapshotter
cache: refs of every kind, keys, the repository cache, checkouts, credentials."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from dockyard.cache import CacheManager, ImmutableRef, RecordType, UsageFilter
from dockyard.core import CollectingReporter, ContentError, NotFoundError, VertexLog, VertexRef
from dockyard.llbsolver import SourceRequest
from dockyard.snapshot.mount import mountpoints_under
from dockyard.solver import JobValue, Vertex, VertexContext
from dockyard.source import GitCredentials, GitSource, GitSpec
from dockyard.testing.gitserver import TestRepo


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[CacheManager]:
    manager = await CacheManager.open(tmp_path / "state", snapshotter="native")
    try:
        yield manager
        assert manager.statistics().in_use == 0, "cache records still in use"
    finally:
        await manager.close()
    assert not mountpoints_under(tmp_path), "mounts left behind"


@pytest.fixture
def repo(tmp_path: Path) -> TestRepo:
    repo = TestRepo(tmp_path / "repos" / "proj")
    repo.commit({"README": "one\n", "docs/guide.md": "guide\n", "bin/tool": "#!/bin/sh\n"}, "one")
    (repo.path / "bin/tool").chmod(0o755)
    repo.commit({}, "executable tool")
    return repo


def url(repo: TestRepo) -> str:
    return "file://" + str(repo.path)


def tree(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = (path.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def git_in(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={root}/.git", f"--work-tree={root}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def known_hosts_files_left(marker: str) -> list[Path]:
    return [
        p
        for p in Path(tempfile.gettempdir()).glob("dockyard-known-hosts-*")
        if marker in p.read_text(errors="replace")
    ]


async def read(ref: ImmutableRef) -> dict[str, object]:
    try:
        async with ref.mount() as root:
            return tree(root)
    finally:
        await ref.release()


async def fetch(source: GitSource, text: str, **options: object) -> dict[str, object]:
    spec = GitSpec.parse_url(text, **options)
    _, ref = await source.fetch(spec)
    return await read(ref)


async def test_branch_tag_commit_and_pull_request_refs(cache: CacheManager, repo: TestRepo) -> None:
    source = GitSource(cache=cache)
    first = repo.rev_parse("HEAD")
    repo.tag("v1")
    repo.tag("v1-annotated", annotated=True)
    repo.branch("feature")
    second = repo.commit({"README": "two\n"}, "two")
    repo.update_ref("refs/pull/1/head", first)
    old = {
        "README": (b"one\n", 0o644),
        "docs": ("dir", 0o755),
        "docs/guide.md": (b"guide\n", 0o644),
        "bin": ("dir", 0o755),
        "bin/tool": (b"#!/bin/sh\n", 0o755),
    }
    new = {**old, "README": (b"two\n", 0o644)}
    assert await fetch(source, url(repo)) == new  # the default branch
    assert await fetch(source, url(repo) + "#main") == new
    assert await fetch(source, url(repo) + "#refs/heads/main") == new
    assert await fetch(source, url(repo) + "#feature") == old
    assert await fetch(source, url(repo) + "#v1") == old
    assert await fetch(source, url(repo) + "#v1-annotated") == old
    assert await fetch(source, url(repo) + "#refs/pull/1/head") == old
    assert await fetch(source, url(repo) + "#" + first) == old
    assert await fetch(source, url(repo) + "#" + second[:8]) == new  # abbreviated
    stats = source.statistics()
    # old and new trees: two checkouts, every other name reused one of them
    assert stats.checkouts == 2
    assert stats.reused == 7


async def test_resolving_is_one_ls_remote_and_keys_name_commits(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    head = repo.rev_parse("HEAD")
    repo.tag("v1", annotated=True)
    by_branch = await source.resolve_ref(GitSpec.create(url(repo), ref="main"))
    by_tag = await source.resolve_ref(GitSpec.create(url(repo), ref="v1"))
    assert (by_branch.commit, by_branch.ref) == (head, "refs/heads/main")
    assert (by_tag.commit, by_tag.ref) == (head, "refs/tags/v1")
    assert by_tag.object == repo.rev_parse("refs/tags/v1") != head
    assert GitSource.cache_key(GitSpec.create(url(repo)), by_branch) == head
    assert GitSource.cache_key(GitSpec.create(url(repo)), by_tag) == head
    stats = source.statistics()
    assert (stats.ls_remotes, stats.fetches) == (2, 0)  # nothing fetched to resolve
    # a full commit id needs no network at all
    await source.resolve_ref(GitSpec.create(url(repo), ref=head))
    assert source.statistics().ls_remotes == 2


async def test_a_moved_branch_gets_a_new_key_and_is_fetched(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    spec = GitSpec.create(url(repo), ref="main")
    before = await source.resolve_ref(spec)
    assert (await fetch(source, url(repo) + "#main"))["README"] == (b"one\n", 0o644)
    repo.commit({"README": "moved\n"}, "moved")
    after = await source.resolve_ref(spec)
    assert GitSource.cache_key(spec, after) != GitSource.cache_key(spec, before)
    fetches = source.statistics().fetches
    _, ref = await source.fetch(spec)
    assert (await read(ref))["README"] == (b"moved\n", 0o644)
    assert source.statistics().fetches == fetches + 1  # resolving fetched nothing
    # the repository is cached: one persistent record for the remote, kept until pruned
    records = await cache.du(UsageFilter(types=frozenset({RecordType.SOURCE_GIT}), mutable=True))
    assert len(records) == 1
    assert "shared git repo for file://" in records[0].description


async def test_unknown_ref_names_ref_and_repository(cache: CacheManager, repo: TestRepo) -> None:
    source = GitSource(cache=cache)
    with pytest.raises(NotFoundError) as info:
        await source.resolve_ref(GitSpec.create(url(repo), ref="no-such-branch"))
    assert str(info.value) == f"git ref 'no-such-branch' not found in repository {url(repo)}"
    with pytest.raises(NotFoundError, match="'deadbeef' not found in repository"):
        await source.resolve_ref(GitSpec.create(url(repo), ref="deadbeef"))


async def test_missing_repository(cache: CacheManager, tmp_path: Path) -> None:
    source = GitSource(cache=cache)
    with pytest.raises(Exception, match=r"ls-remote of file://.*/nope failed"):
        await source.resolve_ref(GitSpec.create("file://" + str(tmp_path / "nope"), ref="main"))


async def test_checksum_mismatch_is_refused_before_anything_is_stored(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    head = repo.rev_parse("HEAD")
    with pytest.raises(ContentError, match=f"expected 0000000, got {head}"):
        await source.resolve_ref(GitSpec.create(url(repo), ref="main", checksum="0000000"))
    with pytest.raises(ContentError):
        await source.resolve_ref(GitSpec.create(url(repo), ref=head, checksum="1234"))
    assert source.statistics().fetches == 0
    assert await cache.du() == []
    ok = await source.resolve_ref(GitSpec.create(url(repo), ref="main", checksum=head[:10].upper()))
    assert ok.commit == head


async def test_checksum_may_name_an_annotated_tag(cache: CacheManager, repo: TestRepo) -> None:
    source = GitSource(cache=cache)
    tag = repo.tag("v2", annotated=True)
    resolved = await source.resolve_ref(GitSpec.create(url(repo), ref="v2", checksum=tag[:12]))
    assert resolved.object == tag


async def test_keep_git_dir(cache: CacheManager, repo: TestRepo) -> None:
    source = GitSource(cache=cache)
    repo.tag("v1", annotated=True)
    head = repo.rev_parse("HEAD")
    spec = GitSpec.create(url(repo), ref="v1", keep_git_dir=True)
    _, ref = await source.fetch(spec)
    async with ref.mount() as root:
        assert (root / ".git").is_dir()
        assert not (root / ".git/FETCH_HEAD").exists()
        assert (root / "README").read_text() == "one\n"
        config = (root / ".git/config").read_text()
        assert f"url = {url(repo)}" in config
        assert "dockyard" not in config  # no trace of the cache
        assert git_in(root, "rev-parse", "HEAD").strip() == head
        assert git_in(root, "tag").split() == ["v1"]
        assert git_in(root, "status", "--porcelain") == ""
    await ref.release()
    # without keep_git_dir there is no .git anywhere
    plain = await fetch(source, url(repo) + "#v1")
    assert not any(".git" in name.split("/") for name in plain)


async def test_subdir(cache: CacheManager, repo: TestRepo) -> None:
    source = GitSource(cache=cache)
    assert await fetch(source, url(repo) + "#main:docs") == {"guide.md": (b"guide\n", 0o644)}
    # keep_git_dir only applies to the whole tree (BuildKit)
    assert await fetch(source, url(repo) + "#main:docs", keep_git_dir=True) == {
        "guide.md": (b"guide\n", 0o644)
    }
    with pytest.raises(NotFoundError, match="subdirectory 'nope' not found"):
        await fetch(source, url(repo) + "#main:nope")
    with pytest.raises(NotFoundError, match="not a directory"):
        await fetch(source, url(repo) + "#main:README")


async def test_subdir_through_a_symlink_stays_in_the_repository(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    os.symlink("/etc", repo.path / "escape")
    os.symlink("docs", repo.path / "alias")
    repo.commit({}, "links")
    assert await fetch(source, url(repo) + "#main:alias") == {"guide.md": (b"guide\n", 0o644)}
    with pytest.raises(NotFoundError):
        await fetch(source, url(repo) + "#main:escape")  # /etc inside the repository: none


async def test_submodules(cache: CacheManager, tmp_path: Path) -> None:
    lib = TestRepo(tmp_path / "repos" / "lib")
    lib.commit({"lib.txt": "lib\n"}, "lib")
    top = TestRepo(tmp_path / "repos" / "top")
    top.commit({"top.txt": "top\n"}, "top")
    top.add_submodule("file://" + str(lib.path), "vendor/lib")
    top.commit({}, "submodule")
    source = GitSource(cache=cache)
    # file:// submodules are refused: a repository may not pull in the host's files
    with pytest.raises(Exception, match="submodules"):
        await fetch(source, url(top) + "#main")
    skipped = await fetch(source, url(top) + "#main", skip_submodules=True)
    assert skipped["vendor/lib"] == ("dir", 0o755)
    assert "vendor/lib/lib.txt" not in skipped


async def test_same_key_concurrently_checks_out_once(cache: CacheManager, repo: TestRepo) -> None:
    import asyncio

    source = GitSource(cache=cache)
    repo.tag("v1")
    specs = [GitSpec.create(url(repo), ref=r) for r in ("main", "v1", "main", "v1")]
    resolved = [await source.resolve_ref(s) for s in specs]
    refs = await asyncio.gather(
        *(source.checkout(s, r) for s, r in zip(specs, resolved, strict=True))
    )
    assert len({r.id for r in refs}) == 1
    for ref in refs:
        await ref.release()
    stats = source.statistics()
    assert stats.checkouts == 1
    assert stats.fetches == 1


class Secrets:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values
        self.asked: list[str] = []

    async def get(self, id: str) -> bytes:
        self.asked.append(id)
        try:
            return self.values[id]
        except KeyError:
            raise NotFoundError(f"secret {id!r} not found") from None


class Agents:
    def __init__(self, sock: Path | None) -> None:
        self.sock = sock

    def has(self, id: str) -> bool:
        return self.sock is not None

    @asynccontextmanager
    async def forward(
        self, id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600
    ) -> AsyncIterator[Path]:
        if self.sock is None:
            raise NotFoundError(f"no agent {id}")
        yield self.sock


SECRETS: JobValue[Secrets] = JobValue("test.secrets")
AGENTS: JobValue[Agents] = JobValue("test.agents")


async def test_instance_reads_job_values_and_logs(cache: CacheManager, repo: TestRepo) -> None:
    source = GitSource(cache=cache, secrets_key=SECRETS, ssh_key=AGENTS)  # type: ignore[arg-type]
    reporter = CollectingReporter()
    vertex = Vertex(digest="sha256:test", name="git", op=None)  # type: ignore[arg-type]
    ctx = VertexContext.detached(vertex, reporter=reporter, values={SECRETS: Secrets({})})
    request = SourceRequest.parse(
        "git://ignored#main",
        attrs={"git.fullurl": url(repo)},
        vertex=VertexRef(digest="d", name="git"),
    )
    instance = await source.resolve(request, ctx)
    key = await instance.cache_key(ctx)
    assert key == repo.rev_parse("HEAD")
    ref = await instance.snapshot(ctx)
    assert (await read(ref))["README"] == (b"one\n", 0o644)
    logs = b"".join(e.data for e in reporter.events if isinstance(e, VertexLog))
    assert b"main" in logs  # git's messages reach the vertex log


async def test_http_auth_header_comes_from_secrets_in_buildkit_order(
    cache: CacheManager,
) -> None:
    from dockyard.source._git import _auth_header

    spec = GitSpec.create(
        "https://git.example.com/r.git",
        auth_token_secret="GIT_AUTH_TOKEN",
        auth_header_secret="GIT_AUTH_HEADER",
    )
    store = Secrets({"GIT_AUTH_TOKEN": b"tok", "GIT_AUTH_HEADER.git.example.com": b"Bearer hdr"})
    found = await _auth_header(spec, [store])
    assert found is not None
    assert found[0] == "Authorization: Bearer hdr"
    assert store.asked == ["GIT_AUTH_HEADER.git.example.com"]
    store = Secrets({"GIT_AUTH_TOKEN": b"tok"})
    found = await _auth_header(spec, [store])
    assert found is not None
    # base64("x-access-token:tok")
    assert found[0] == "Authorization: basic eC1hY2Nlc3MtdG9rZW46dG9r"
    assert "tok" in found[1]
    assert store.asked == [
        "GIT_AUTH_HEADER.git.example.com",
        "GIT_AUTH_TOKEN.git.example.com",
        "GIT_AUTH_HEADER",
        "GIT_AUTH_TOKEN",
    ]
    assert await _auth_header(spec, [Secrets({})]) is None


async def test_ssh_needs_the_named_agent(cache: CacheManager, tmp_path: Path) -> None:
    source = GitSource(cache=cache)
    spec = GitSpec.create("ssh://git@127.0.0.1:1/r.git", ref="main", mount_ssh_sock="default")
    with pytest.raises(NotFoundError, match="no SSH agent 'default' was forwarded"):
        await source.resolve_ref(spec, GitCredentials(ssh_agents=(Agents(None),)))


async def test_known_hosts_file_lives_only_for_the_run(cache: CacheManager, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do case "$a" in UserKnownHostsFile=*) cat "${{a#*=}}" > {seen};; esac; done\n'
        f'echo "$SSH_AUTH_SOCK" >> {seen}\nexit 255\n'
    )
    ssh.chmod(0o755)
    source = GitSource(cache=cache, ssh=str(ssh))
    spec = GitSpec.create(
        "git@example.com:r.git",
        ref="main",
        mount_ssh_sock="default",
        known_ssh_hosts="example.com ssh-ed25519 AAAAC3Nza\n",
    )
    agents = Agents(tmp_path / "agent.sock")
    async with AsyncExitStack():
        with pytest.raises(Exception, match=r"ls-remote of git@example\.com:r\.git failed"):
            await source.resolve_ref(spec, GitCredentials(ssh_agents=(agents,)))
    assert seen.read_text() == f"example.com ssh-ed25519 AAAAC3Nza\n{tmp_path / 'agent.sock'}\n"
    assert not known_hosts_files_left("AAAAC3Nza")


async def test_the_repository_cache_is_pruned_like_any_unused_record(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    assert (await fetch(source, url(repo) + "#main"))["README"] == (b"one\n", 0o644)
    git_records = UsageFilter(types=frozenset({RecordType.SOURCE_GIT}))
    assert len(await cache.du(git_records)) == 2  # the repository and the checkout
    await cache.prune(all=True)
    assert await cache.du(git_records) == []
    # a later build starts a new repository cache and checkout
    repo.commit({"README": "after prune\n"}, "after prune")
    assert (await fetch(source, url(repo) + "#main"))["README"] == (b"after prune\n", 0o644)
    assert source.statistics().checkouts == 2


def leave_locks(root: Path) -> None:
    """What a git killed in the middle of a fetch leaves behind."""
    (root / "shallow.lock").write_text("")
    for ref in (root / "refs/dockyard").iterdir():
        Path(str(ref) + ".lock").write_text("")


async def test_lock_files_of_a_killed_git_are_cleaned_up(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    spec = GitSpec.create(url(repo), ref="main")
    await read((await source.fetch(spec))[1])
    async with source._repository(spec) as root:
        leave_locks(root)
    repo.commit({"README": "next\n"}, "next")
    assert (await fetch(source, url(repo) + "#main"))["README"] == (b"next\n", 0o644)


async def test_a_branch_that_moves_between_key_and_fetch_still_gives_the_keyed_commit(
    cache: CacheManager, repo: TestRepo
) -> None:
    source = GitSource(cache=cache)
    spec = GitSpec.create(url(repo), ref="main")
    resolved = await source.resolve_ref(spec)
    repo.commit({"README": "moved meanwhile\n"}, "moved")
    ref = await source.checkout(spec, resolved)
    assert (await read(ref))["README"] == (b"one\n", 0o644)  # the commit the key named
