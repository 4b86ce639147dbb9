"""The git source solved by the LLB solver on the real cache (overlayfs): repositories the
tests make, served by ``git daemon``, git's smart HTTP and ``file://``; credentials from
the job's session secrets and SSH agent; Dockerfile ``ADD <git url>``."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import CacheManager, ImmutableRef, RecordType, UsageFilter
from dockyard.core import CollectingReporter, ContentError, NotFoundError, VertexLog
from dockyard.dockerfile import ConvertOptions, convert, parse_dockerfile
from dockyard.executor import OciExecutor
from dockyard.llbsolver import SECRETS, SSH_AGENTS, CacheRefs, JobOptions, LlbSolver, Worker
from dockyard.solver import ResultRef, Solver, SqliteCacheKeyStorage
from dockyard.source import GitSource, HttpLimits, HttpSource
from dockyard.testing.gitserver import GitDaemon, GitHttpServer, GitSshServer, TestRepo
from tests.integration.conftest import need_tools


@dataclass
class Engine:
    cache: CacheManager
    keys: SqliteCacheKeyStorage
    git: GitSource
    http: HttpSource
    solver: LlbSolver

    async def solve(
        self, state: llb.State | llb.Definition, *, options: JobOptions | None = None
    ) -> tuple[ResultRef, CollectingReporter]:
        definition = state if isinstance(state, llb.Definition) else state.marshal()
        reporter = CollectingReporter()
        ref = await self.solver.solve(definition, options=options, reporter=reporter)
        assert ref is not None
        return ref, reporter

    async def tree(self, state: llb.State | llb.Definition, **kw: object) -> dict[str, object]:
        ref, _ = await self.solve(state, **kw)  # type: ignore[arg-type]
        try:
            value = ref.value
            assert isinstance(value, ImmutableRef)
            async with value.mount() as root:
                return read_tree(root)
        finally:
            await ref.release()


def read_tree(root: Path) -> dict[str, object]:
    """path → (content, mode) for files, ``("dir", mode)``, ``("link", target)``."""
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


@contextlib.asynccontextmanager
async def open_engine(state: Path) -> AsyncIterator[Engine]:
    cache = await CacheManager.open(state)
    keys = SqliteCacheKeyStorage(state / "metadata.db")
    git = GitSource(cache=cache, secrets_key=SECRETS, ssh_key=SSH_AGENTS)
    http = HttpSource(cache=cache, secrets_key=SECRETS, limits=HttpLimits(retry_delay=0.01))
    try:
        worker = Worker(
            refs=CacheRefs(cache),
            executor=OciExecutor(state / "executor", runtime="crun"),
            sources={"git": git, "http": http, "https": http},
            mount_dir=cache.mount_dir,
        )
        solver = Solver(result_storage=cache, key_storage=keys)
        yield Engine(cache, keys, git, http, LlbSolver(worker, solver))
        stats = cache.statistics()
        assert stats.in_use == 0, f"{stats.in_use} cache records still in use"
    finally:
        keys.close()
        await cache.close()


@pytest.fixture
async def engine(tmp_path: Path, mountinfo_unchanged: None) -> AsyncIterator[Engine]:
    need_tools("git")
    async with open_engine(tmp_path / "state") as running:
        yield running


@dataclass
class Served:
    repo: TestRepo
    daemon: GitDaemon
    http: GitHttpServer

    def urls(self, name: str = "proj") -> dict[str, str]:
        return {
            "git-daemon": self.daemon.url(name),
            "smart-http": self.http.url(name),
            "file": "file://" + str(self.repo.path.parent / name),
        }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    need_tools("git")
    repos = tmp_path / "repos"
    repo = TestRepo(repos / "proj")
    repo.commit({"README": "one\n", "docs/guide.md": "guide\n", "bin/run": "#!/bin/sh\n"}, "one")
    (repo.path / "bin/run").chmod(0o755)
    repo.commit({}, "run is executable")
    with GitDaemon(repos) as daemon, GitHttpServer(repos) as http:
        yield Served(repo, daemon, http)


ONE = {
    "README": (b"one\n", 0o644),
    "docs": ("dir", 0o755),
    "docs/guide.md": (b"guide\n", 0o644),
    "bin": ("dir", 0o755),
    "bin/run": (b"#!/bin/sh\n", 0o755),
}
TWO = {**ONE, "README": (b"two\n", 0o644)}

TRANSPORTS = ["git-daemon", "smart-http", "file"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_branch_tag_commit_and_pull_request_refs(
    engine: Engine, served: Served, transport: str
) -> None:
    repo = served.repo
    first = repo.rev_parse("HEAD")
    repo.tag("v1", annotated=True)
    repo.tag("light")
    second = repo.commit({"README": "two\n"}, "two")
    repo.update_ref("refs/pull/1/head", first)
    url = served.urls()[transport]
    assert await engine.tree(llb.git(url)) == TWO  # the default branch
    assert await engine.tree(llb.git(url, "main")) == TWO
    assert await engine.tree(llb.git(url, "v1")) == ONE
    assert await engine.tree(llb.git(url, "light")) == ONE
    assert await engine.tree(llb.git(url, first)) == ONE
    assert await engine.tree(llb.git(url, second[:9])) == TWO
    assert await engine.tree(llb.git(url, "refs/pull/1/head")) == ONE
    assert await engine.tree(llb.git(url + "#refs/pull/1/head")) == ONE
    stats = engine.git.statistics()
    assert stats.checkouts == 2  # one per tree; every other name reused a result


async def test_a_new_commit_on_the_branch_is_fetched_by_the_next_build(
    engine: Engine, served: Served
) -> None:
    url = served.daemon.url("proj")
    ref, _ = await engine.solve(llb.git(url, "main"))
    assert not ref.cached
    await ref.release()
    ref, _ = await engine.solve(llb.git(url, "main"))
    assert ref.cached  # nothing moved: the same commit, a cache hit
    await ref.release()
    assert engine.git.statistics().fetches == 1
    served.repo.commit({"README": "two\n"}, "two")
    assert await engine.tree(llb.git(url, "main")) == TWO
    assert engine.git.statistics().fetches == 2


async def test_the_same_commit_by_two_names_does_the_work_once(
    engine: Engine, served: Served
) -> None:
    served.repo.tag("v1")
    served.repo.branch("release")
    url = served.daemon.url("proj")
    a = llb.git(url, "main")
    b = llb.git(url, "v1")
    c = llb.git(url, "release")
    # one build with all three names side by side
    merged = llb.merge([a, b.file(llb.mkdir("/from-tag", 0o755)), c])
    tree = await engine.tree(merged)
    assert tree["README"] == (b"one\n", 0o644)
    stats = engine.git.statistics()
    assert (stats.fetches, stats.checkouts) == (1, 1)
    # a later build by yet another name: the key is the commit, nothing is fetched
    ref, _ = await engine.solve(llb.git(url, served.repo.rev_parse("HEAD")))
    assert ref.cached
    await ref.release()
    assert engine.git.statistics().fetches == 1


async def test_keep_git_dir_and_subdir(engine: Engine, served: Served) -> None:
    served.repo.tag("v1", annotated=True)
    url = served.http.url("proj")
    head = served.repo.rev_parse("HEAD")
    ref, _ = await engine.solve(llb.git(url, "v1", keep_git_dir=True))
    try:
        value = ref.value
        assert isinstance(value, ImmutableRef)
        async with value.mount() as root:
            assert (root / ".git").is_dir()
            git = ["git", f"--git-dir={root}/.git", f"--work-tree={root}"]
            assert _run(*git, "rev-parse", "HEAD").strip() == head
            assert _run(*git, "tag").split() == ["v1"]
            assert _run(*git, "remote", "get-url", "origin").strip() == url
            assert _run(*git, "status", "--porcelain") == ""
    finally:
        await ref.release()
    assert await engine.tree(llb.git(url, "v1", subdir="docs")) == {"guide.md": (b"guide\n", 0o644)}
    assert ".git" not in await engine.tree(llb.git(url, "v1"))


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


async def test_checksum_mismatch_is_refused_and_nothing_is_cached(
    engine: Engine, served: Served
) -> None:
    url = served.daemon.url("proj")
    with pytest.raises(ContentError) as info:
        await engine.solve(llb.git(url, "main", checksum="abcdef0"))
    head = served.repo.rev_parse("HEAD")
    assert f"expected abcdef0, got {head}" in str(info.value)
    assert engine.git.statistics().fetches == 0
    records = await engine.cache.du(UsageFilter(types=frozenset({RecordType.SOURCE_GIT})))
    assert records == []
    assert await engine.tree(llb.git(url, "main", checksum=head[:12])) == ONE


async def test_unknown_ref_names_the_ref_and_the_repository(engine: Engine, served: Served) -> None:
    url = served.http.url("proj")
    with pytest.raises(NotFoundError) as info:
        await engine.solve(llb.git(url, "no-such-branch"))
    assert str(info.value) == f"git ref 'no-such-branch' not found in repository {url}"
    assert info.value.vertex is not None


async def test_submodules_with_relative_urls(
    engine: Engine, served: Served, tmp_path: Path
) -> None:
    lib = TestRepo(tmp_path / "repos" / "lib")
    lib.commit({"lib.txt": "lib 1\n"}, "lib 1")
    lib.commit({"lib.txt": "lib 2\n"}, "lib 2")
    top = TestRepo(tmp_path / "repos" / "top")
    top.commit({"top.txt": "top\n"}, "top")
    top.add_submodule("../lib", "vendor/lib")
    top.commit({}, "add lib")
    for url in (served.daemon.url("top"), served.http.url("top")):
        tree = await engine.tree(llb.git(url, "main"))
        assert tree["vendor/lib/lib.txt"] == (b"lib 2\n", 0o644)
        assert not [name for name in tree if name.split("/")[-1] == ".git"]
        kept = await engine.tree(llb.git(url, "main", keep_git_dir=True))
        assert kept["vendor/lib/lib.txt"] == (b"lib 2\n", 0o644)
        assert kept["vendor/lib/.git"] == (b"gitdir: ../../.git/modules/vendor/lib\n", 0o644)
    skipped = await engine.tree(
        with_attrs(llb.git(served.daemon.url("top"), "main"), {"git.skipsubmodules": "true"})
    )
    assert skipped["vendor/lib"] == ("dir", 0o755)
    assert "vendor/lib/lib.txt" not in skipped


def with_attrs(state: llb.State, extra: dict[str, str]) -> llb.State:
    """``state``'s source op with more attributes (BuildKit attrs llb.git does not set)."""
    assert state.output is not None
    op = state.output.vertex
    assert isinstance(op, llb.SourceOp)
    return llb.State(llb.Output(llb.SourceOp(op.identifier, {**op.attrs, **extra}, op.constraints)))


class Secrets:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    async def get(self, id: str) -> bytes:
        try:
            return self.values[id]
        except KeyError:
            raise NotFoundError(f"secret {id!r} not found") from None


async def test_http_token_from_session_secrets(engine: Engine, tmp_path: Path) -> None:
    repo = TestRepo(tmp_path / "private" / "secret-proj")
    repo.commit({"data": "private\n"}, "private")
    token = "ghs_s3cretT0ken"
    wanted = "basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    with GitHttpServer(tmp_path / "private", auth=wanted) as server:
        url = server.url("secret-proj")
        with pytest.raises(Exception, match="ls-remote"):
            await engine.solve(llb.git(url, "main"))
        options = JobOptions(secrets=Secrets({"GIT_AUTH_TOKEN": token.encode()}))
        ref, reporter = await engine.solve(llb.git(url, "main"), options=options)
        try:
            value = ref.value
            assert isinstance(value, ImmutableRef)
            async with value.mount() as root:
                assert (root / "data").read_text() == "private\n"
            assert ref.cache_key
            assert token not in ref.cache_key
        finally:
            await ref.release()
        assert all(r.authorization == wanted for r in server.requests if r.status == 200)
        logs = b"".join(e.data for e in reporter.events if isinstance(e, VertexLog))
        assert token.encode() not in logs
        encoded = wanted.split()[1].encode()
        assert encoded not in logs
        for record in await engine.cache.du():
            assert token not in record.description


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[Path]:
    need_tools("ssh-agent", "ssh-add", "ssh-keygen")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.01)
        key = tmp_path / "id_test"
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "dockyard-test-key",
                "-f",
                str(key),
            ],
            check=True,
        )
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            check=True,
            capture_output=True,
        )
        yield sock
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait()


class Agents:
    """The job's SSH forwarder: hands out the test agent's socket for id ``default``."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.forwarded: list[str] = []

    def has(self, id: str) -> bool:
        return id == "default"

    @contextlib.asynccontextmanager
    async def forward(
        self, id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600
    ) -> AsyncIterator[Path]:
        if id != "default":
            raise NotFoundError(f"no SSH agent {id!r}")
        self.forwarded.append(id)
        yield self.sock


async def test_ssh_through_the_forwarded_agent(
    tmp_path: Path, served: Served, ssh_agent: Path, mountinfo_unchanged: None
) -> None:
    # a stand-in for ssh that proves the agent reached it, then runs the remote command
    # (git-upload-pack '/path') on this host instead of on a server
    log = tmp_path / "ssh.log"
    fake = tmp_path / "fake-ssh"
    fake.write_text(
        "#!/bin/sh\n"
        f'ssh-add -l >> {log} 2>&1 || {{ echo "no agent" >&2; exit 255; }}\n'
        'for last; do :; done\nexec sh -c "$last"\n'
    )
    fake.chmod(0o755)
    state = tmp_path / "ssh-state"
    cache = await CacheManager.open(state)
    keys = SqliteCacheKeyStorage(state / "metadata.db")
    git = GitSource(cache=cache, secrets_key=SECRETS, ssh_key=SSH_AGENTS, ssh=str(fake))
    try:
        worker = Worker(
            refs=CacheRefs(cache),
            executor=OciExecutor(state / "executor", runtime="crun"),
            sources={"git": git},
            mount_dir=cache.mount_dir,
        )
        solver = LlbSolver(worker, Solver(result_storage=cache, key_storage=keys))
        url = f"git@localhost:{served.repo.path}"
        with pytest.raises(NotFoundError, match="no SSH agent 'default' was forwarded"):
            await solver.solve(llb.git(url, "main").marshal())
        agents = Agents(ssh_agent)
        ref = await solver.solve(
            llb.git(url, "main").marshal(), options=JobOptions(ssh_agents=agents)
        )
        assert ref is not None
        try:
            value = ref.value
            assert isinstance(value, ImmutableRef)
            async with value.mount() as root:
                assert read_tree(root) == ONE
        finally:
            await ref.release()
        assert "dockyard-test-key" in log.read_text()
        assert agents.forwarded
    finally:
        keys.close()
        await cache.close()


@pytest.fixture
def sshd(tmp_path: Path, ssh_agent: Path) -> Iterator[GitSshServer]:
    """A real sshd letting in the key that ``ssh_agent`` holds."""
    need_tools("sshd", "ssh")
    listed = subprocess.run(
        ["ssh-add", "-L"],
        env={**os.environ, "SSH_AUTH_SOCK": str(ssh_agent)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with GitSshServer(tmp_path / "sshd", listed, sshd=need_tools("sshd")["sshd"]) as server:
        yield server


@pytest.fixture
def other_host_key(tmp_path: Path) -> str:
    """The public half of a host key no server here has: ``type base64``."""
    path = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    kind, key = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{kind} {key}"


async def test_ssh_against_a_real_sshd(
    engine: Engine, tmp_path: Path, ssh_agent: Path, sshd: GitSshServer, other_host_key: str
) -> None:
    repo = TestRepo(tmp_path / "ssh-repos" / "proj")
    repo.commit({"README": "over ssh\n", "src/main.py": "print(1)\n"}, "one")
    url = sshd.url(repo.path)
    options = JobOptions(ssh_agents=Agents(ssh_agent))
    pinned = llb.git(url, "main", known_ssh_hosts=sshd.known_hosts())
    tree = await engine.tree(pinned, options=options)
    assert tree["README"] == (b"over ssh\n", 0o644)
    assert tree["src/main.py"] == (b"print(1)\n", 0o644)
    logins = sshd.accepted()
    assert logins >= 1  # the agent's key, through the real ssh and sshd

    # a pinned host key that is not the server's: ssh refuses before any login
    wrong = f"[127.0.0.1]:{sshd.port} {other_host_key}\n"
    repo.commit({"README": "changed\n"}, "two")
    with pytest.raises(Exception, match="Host key verification failed"):
        await engine.tree(llb.git(url, "main", known_ssh_hosts=wrong), options=options)
    assert sshd.accepted() == logins

    # without a pin the host key is not checked (BuildKit's default), the new commit
    # is fetched
    tree = await engine.tree(llb.git(url, "main"), options=options)
    assert tree["README"] == (b"changed\n", 0o644)
    assert sshd.accepted() > logins

    # an agent whose key the server does not know is refused by the server
    with sshd_refusing(sshd), pytest.raises(Exception, match="Permission denied"):
        await engine.tree(llb.git(url, "main", subdir="src"), options=options)


@contextlib.contextmanager
def sshd_refusing(server: GitSshServer) -> Iterator[None]:
    """``server`` restarted with no authorized key, then as it was."""
    keys = server.authorized_keys
    server.stop()
    server.authorized_keys = ""
    server.start()
    try:
        yield
    finally:
        server.stop()
        server.authorized_keys = keys
        server.start()


async def test_dockerfile_add_git(engine: Engine, served: Served, tmp_path: Path) -> None:
    app = TestRepo(tmp_path / "repos" / "app.git")
    app.commit({"src/main.py": "print('v1')\n", "README": "app\n"}, "v1")
    app.tag("v1")
    app.commit({"src/main.py": "print('v2')\n"}, "v2")
    commit = app.rev_parse("HEAD")
    http_url = served.http.url("app.git")
    daemon_url = served.daemon.url("app.git")
    text = f"""\
FROM scratch
ADD {daemon_url}#v1:src /old/
ADD --keep-git-dir=true {http_url} /repo
ADD --checksum={commit} {http_url}#main /pinned
"""
    result = await convert(parse_dockerfile(text), ConvertOptions())
    tree = await engine.tree(result.definition())
    assert tree["old/main.py"] == (b"print('v1')\n", 0o644)
    assert tree["repo/src/main.py"] == (b"print('v2')\n", 0o644)
    assert tree["repo/.git"][0] == "dir"  # type: ignore[index]
    assert tree["pinned/README"] == (b"app\n", 0o644)
    assert not any(name.startswith("pinned/.git") for name in tree)
    bad = f"FROM scratch\nADD --checksum={'0' * 40} {http_url}#main /pinned\n"
    result = await convert(parse_dockerfile(bad), ConvertOptions())
    with pytest.raises(ContentError) as info:
        await engine.solve(result.definition())
    assert str(info.value).startswith("Dockerfile:2: ")


async def test_credentials_in_the_url_never_reach_the_tree(engine: Engine, tmp_path: Path) -> None:
    lib = TestRepo(tmp_path / "private" / "lib")
    lib.commit({"lib.txt": "lib\n"}, "lib")
    top = TestRepo(tmp_path / "private" / "top")
    top.commit({"top.txt": "top\n"}, "top")
    top.add_submodule("../lib", "vendor/lib")
    top.commit({}, "add lib")
    password = "pa55w0rd-in-url"
    wanted = "Basic " + base64.b64encode(f"builder:{password}".encode()).decode()
    with GitHttpServer(tmp_path / "private", auth=wanted) as server:
        url = server.url("top", userinfo=f"builder:{password}")
        for keep in (False, True):
            ref, reporter = await engine.solve(llb.git(url, "main", keep_git_dir=keep))
            try:
                value = ref.value
                assert isinstance(value, ImmutableRef)
                async with value.mount() as root:
                    tree = read_tree(root)
                    leaks = _files_containing(root, password.encode())
                assert tree["vendor/lib/lib.txt"] == (b"lib\n", 0o644)
                assert leaks == []
                if keep:
                    assert (".git", ("dir", 0o755)) in tree.items()
            finally:
                await ref.release()
            logs = b"".join(e.data for e in reporter.events if isinstance(e, VertexLog))
            assert password.encode() not in logs
    for record in await engine.cache.du():
        assert password not in record.description


def _files_containing(root: Path, needle: bytes) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink() and needle in path.read_bytes():
                found.append(path.relative_to(root).as_posix())
    return found
