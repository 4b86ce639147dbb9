"""The key and the checks of ``dockyard build``'s no-op replay (:mod:`dockyard.cli._memo`):
which invocations may be replayed, what changes the key, when a memory is refused."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import _memo
from dockyard.client import DEFAULT_SOCKET, BuildResult
from dockyard.core import VertexStatus
from dockyard.core.statedir import bump_generation, read_generation

IMAGE = "sha256:" + "ab" * 32
MANIFEST = "sha256:" + "cd" * 32


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY src /src\n")
    (ctx / "src" / "a.txt").write_text("a")
    os.symlink("a.txt", ctx / "src" / "link")
    return ctx


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    (path / "content" / "blobs" / "sha256").mkdir(parents=True)
    (path / "content" / "blobs" / "sha256" / MANIFEST.removeprefix("sha256:")).write_bytes(b"{}")
    return path


@pytest.fixture(autouse=True)
def _embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def params(ctx: Path, state: Path, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "context": str(ctx),
        "dockerfile": None,
        "tags": ("app",),
        "build_args": (),
        "target": None,
        "platform": None,
        "secrets": (),
        "ssh": (),
        "outputs": (),
        "push": False,
        "load": False,
        "cache_from": (),
        "cache_to": (),
        "no_cache": False,
        "no_cache_filter": (),
        "progress": "auto",
        "iidfile": None,
        "metadata_file": None,
        "build_contexts": (),
        "labels": (),
        "annotations": (),
        "network": "default",
        "allow": (),
        "pull": False,
        "check": False,
        "quiet": False,
        "addr": None,
        "state_dir": str(state),
        "runtime": "crun",
        "snapshotter": "auto",
    }
    values.update(changes)
    return values


def key(ctx: Path, state: Path, **changes: Any) -> str:
    memo = _memo.prepare(params(ctx, state, **changes), addr=None)
    if memo is None:  # a file changed lately changed again: said without a walk
        memo = _memo.prepare(params(ctx, state, **changes), addr=None)
    assert memo is not None
    return memo.key


def test_the_same_invocation_on_the_same_inputs_has_the_same_key(
    context: Path, state: Path
) -> None:
    assert key(context, state) == key(context, state)
    # progress, quiet and the files written afterwards do not change what is built
    assert key(context, state) == key(
        context, state, progress="plain", quiet=True, iidfile="/tmp/x"
    )


def relink(path: Path, target: str) -> None:
    path.unlink()
    os.symlink(target, path)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: (c / "src" / "a.txt").write_text("b"), id="content"),
        pytest.param(lambda c: (c / "src" / "b.txt").write_text(""), id="new-file"),
        pytest.param(lambda c: (c / "src" / "a.txt").chmod(0o600), id="mode"),
        pytest.param(lambda c: (c / "src" / "a.txt").unlink(), id="removed"),
        pytest.param(lambda c: relink(c / "src" / "link", "x"), id="link"),
        pytest.param(lambda c: (c / "Dockerfile").write_text("FROM busybox\n"), id="dockerfile"),
        pytest.param(lambda c: (c / ".dockerignore").write_text("src\n"), id="dockerignore"),
        pytest.param(lambda c: (c / "Dockerfile.dockerignore").write_text("x\n"), id="own-ignore"),
        pytest.param(lambda c: os.utime(c / "src" / "a.txt", (1, 1)), id="mtime"),
    ],
)
def test_every_change_of_the_inputs_changes_the_key(
    context: Path, state: Path, change: Callable[[Path], object]
) -> None:
    before = key(context, state)
    change(context)
    assert key(context, state) != before


def test_what_the_ignore_file_leaves_out_is_not_in_the_key(context: Path, state: Path) -> None:
    (context / ".dockerignore").write_text("# comment\nnode_modules\nsrc/*.log\n!src/keep.log\n")
    (context / "node_modules" / "pkg").mkdir(parents=True)
    (context / "src" / "keep.log").write_text("k")
    before = key(context, state)
    (context / "node_modules" / "pkg" / "index.js").write_text("x")
    (context / "src" / "debug.log").write_text("x")
    assert key(context, state) == before
    (context / "src" / "keep.log").write_text("re-included")
    assert key(context, state) != before


def test_the_dockerfiles_own_ignore_file_wins(context: Path, state: Path) -> None:
    (context / ".dockerignore").write_text("src\n")
    (context / "Dockerfile.dockerignore").write_text("other\n")  # src is in the context
    before = key(context, state)
    (context / "src" / "a.txt").write_text("changed")
    assert key(context, state) != before


def test_a_malformed_ignore_pattern_leaves_it_to_the_build(context: Path, state: Path) -> None:
    (context / ".dockerignore").write_text("[\n")
    assert _memo.prepare(params(context, state), addr=None) is None


def test_rewriting_a_file_with_the_same_bytes_changes_the_key(context: Path, state: Path) -> None:
    before = key(context, state)
    path = context / "src" / "a.txt"
    stat = path.stat()
    path.write_text("a")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime set back: ctime moved
    assert key(context, state) != before


@pytest.mark.parametrize(
    "changes",
    [
        {"tags": ("other",)},
        {"target": "build"},
        {"platform": "linux/amd64"},
        {"labels": ("a=b",)},
        {"annotations": ("a=b",)},
        {"network": "none"},
        {"add_hosts": ("db:10.0.0.2",)},
        {"ulimits": ("nofile=1024:2048",)},
        {"shm_size": "128m"},
        {"cgroup_parent": "/builds"},
        {"allow": ("network.host",)},
        {"build_args": ("A=1",)},
        {"runtime": "runc"},
        {"snapshotter": "native"},
    ],
)
def test_every_flag_that_shapes_the_build_is_in_the_key(
    context: Path, state: Path, changes: dict[str, Any]
) -> None:
    assert key(context, state, **changes) != key(context, state)


def test_build_args_from_the_environment_are_in_the_key(
    context: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_ENV", "1")
    first = key(context, state, build_args=("FROM_ENV",))
    monkeypatch.setenv("FROM_ENV", "2")
    assert key(context, state, build_args=("FROM_ENV",)) != first
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "10")
    assert key(context, state, build_args=("FROM_ENV",)) != first


@pytest.mark.parametrize(
    "changes",
    [
        {"secrets": ("id=a,src=/x",)},
        {"ssh": ("default",)},
        {"outputs": ("type=local,dest=out",)},
        {"push": True},
        {"load": True},
        {"cache_from": ("type=local,src=c",)},
        {"cache_to": ("type=local,dest=c",)},
        {"no_cache": True},
        {"no_cache_filter": ("a",)},
        {"build_contexts": ("a=b",)},
        {"pull": True},
        {"check": True},
        {"context": "-"},
        {"context": "https://example.invalid/ctx.git"},
        {"dockerfile": "-"},
    ],
)
def test_invocations_that_need_the_engine_have_no_memo(
    context: Path, state: Path, changes: dict[str, Any]
) -> None:
    assert _memo.prepare(params(context, state, **changes), addr=None) is None


def test_without_a_daemon_that_answers_there_is_no_memo(
    context: Path, state: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_memo, "INFO_TIMEOUT", 0.2)
    # a daemon named but not there: its state token cannot be read
    assert _memo.prepare(params(context, state), addr="unix:///run/no-such.sock") is None
    monkeypatch.setenv("DOCKYARD_HOST", "tcp://127.0.0.1:1234")  # tcp daemons: never
    assert _memo.prepare(params(context, state), addr=None) is None
    monkeypatch.setenv("DOCKYARD_HOST", "embedded")
    assert _memo.prepare(params(context, state), addr=None) is not None
    # no state directory given and something listening on the default socket that is
    # not a daemon: the address rules pick it, and it cannot say
    monkeypatch.delenv("DOCKYARD_HOST")
    socket_path = tmp_path / "dockyardd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen(4)
    try:
        monkeypatch.setattr(_memo, "DEFAULT_SOCKET", str(socket_path))
        assert _memo.prepare(params(context, state, state_dir=None), addr=None) is None
        memo = _memo.prepare(params(context, state), addr=None)  # --state-dir: embedded
        assert memo is not None
        assert memo.daemon is None
    finally:
        listener.close()


def test_the_default_socket_is_the_clients() -> None:
    assert str(DEFAULT_SOCKET) == _memo.DEFAULT_SOCKET


def result(**changes: Any) -> BuildResult:
    values: dict[str, Any] = {
        "metadata": {"containerimage.config.digest": IMAGE, "containerimage.digest": MANIFEST},
        "replayable": True,
    }
    values.update(changes)
    return BuildResult(**values)


EVENTS = [
    VertexStatus(
        digest="sha256:1", name="[1/2] FROM busybox", started=100.0, completed=100.5, cached=True
    )
]


def remembered(context: Path, state: Path) -> _memo.Memo:
    memo = _memo.prepare(params(context, state), addr=None)
    assert memo is not None
    memo.save(result(), EVENTS, ["Image app stored"])
    return memo


def test_a_remembered_build_is_replayed(
    context: Path, state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remembered(context, state)
    memo = _memo.prepare(params(context, state), addr=None)
    assert memo is not None
    iid, meta = tmp_path / "iid", tmp_path / "meta.json"
    code = memo.replay(progress="rawjson", quiet=False, iidfile=str(iid), metadata_file=str(meta))
    assert code == 0
    assert iid.read_text() == IMAGE
    assert json.loads(meta.read_text())["containerimage.digest"] == MANIFEST
    line = json.loads(capsys.readouterr().err.splitlines()[0])
    vertex = line["vertexes"][0]
    assert vertex["name"] == "[1/2] FROM busybox"
    assert vertex["cached"] is True
    assert not vertex["started"].startswith("1970")  # moved to now

    assert memo.replay(progress="plain", quiet=True, iidfile=None, metadata_file=None) == 0
    out = capsys.readouterr()
    assert out.out.strip() == IMAGE
    assert out.err == ""

    assert memo.replay(progress="plain", quiet=False, iidfile=None, metadata_file=None) == 0
    err = capsys.readouterr().err
    assert "#1 [1/2] FROM busybox\n#1 CACHED" in err
    assert err.rstrip().endswith("Image app stored")


@pytest.mark.parametrize("epoch", [None, "86400"])
def test_the_metadata_file_gets_the_time_of_the_replay(
    context: Path,
    state: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    epoch: str | None,
) -> None:
    if epoch is not None:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    old = "2001-01-01T00:00:00Z"
    descriptor = {"digest": MANIFEST, "annotations": {"org.opencontainers.image.created": old}}
    memo = _memo.prepare(params(context, state), addr=None)
    assert memo is not None
    memo.save(result(metadata={"containerimage.digest": MANIFEST,
                               "containerimage.descriptor": descriptor}), EVENTS, [])  # fmt: skip
    meta = tmp_path / "meta.json"
    replayed = _memo.prepare(params(context, state), addr=None)
    assert replayed is not None
    assert replayed.replay(progress="quiet", quiet=True, iidfile=None, metadata_file=str(meta)) == 0
    created = json.loads(meta.read_text())["containerimage.descriptor"]["annotations"][
        "org.opencontainers.image.created"
    ]
    if epoch is None:
        stamped = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        assert abs((now - stamped).total_seconds()) < 600  # now, not the old build's time
    else:
        assert created == old  # the build's own, fixed time


def test_a_memory_is_refused_after_the_state_changed(context: Path, state: Path) -> None:
    memo = remembered(context, state)
    bump_generation(state)
    assert memo.replay(progress="quiet", quiet=True, iidfile=None, metadata_file=None) is None


def test_a_memory_made_from_an_older_generation_is_refused(context: Path, state: Path) -> None:
    memo = _memo.prepare(params(context, state), addr=None)
    assert memo is not None
    bump_generation(state)  # e.g. a prune ran while the build did
    memo.save(result(), EVENTS, [])
    again = _memo.prepare(params(context, state), addr=None)
    assert again is not None
    assert again.generation == read_generation(state)
    assert again.replay(progress="quiet", quiet=True, iidfile=None, metadata_file=None) is None


def test_a_memory_is_refused_without_its_image_or_when_unreadable(
    context: Path, state: Path
) -> None:
    memo = remembered(context, state)
    (state / "content" / "blobs" / "sha256" / MANIFEST.removeprefix("sha256:")).unlink()
    assert memo.replay(progress="quiet", quiet=True, iidfile=None, metadata_file=None) is None
    memo.path.write_bytes(b"not a pickle")
    assert memo.replay(progress="quiet", quiet=True, iidfile=None, metadata_file=None) is None
    memo.path.write_bytes(pickle.dumps({"format": _memo.FORMAT + 1}))
    assert memo.replay(progress="quiet", quiet=True, iidfile=None, metadata_file=None) is None


def test_builds_the_engine_did_not_find_replayable_are_not_remembered(
    context: Path, state: Path
) -> None:
    memo = _memo.prepare(params(context, state), addr=None)
    assert memo is not None
    memo.save(result(replayable=False), EVENTS, [])
    memo.save(result(built=False), EVENTS, [])
    assert not memo.path.exists()


def test_only_the_newest_memories_are_kept(
    context: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_memo, "KEEP", 3)
    for n in range(5):
        memo = _memo.prepare(params(context, state, tags=(f"t{n}",)), addr=None)
        assert memo is not None
        memo.save(result(), EVENTS, [])
        os.utime(memo.path, ns=(n * 10**9, n * 10**9))
    kept = sorted(p.name for p in (state / "memo").glob("*.memo"))
    assert len(kept) == 3
    assert memo is not None
    assert memo.path.name in kept


def test_a_lately_changed_file_that_changed_again_is_seen_without_a_walk(
    context: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(40):  # older files, then the one the user keeps editing
        (context / "src" / f"old{i}.txt").write_text("x")
        os.utime(context / "src" / f"old{i}.txt", (1, 1))
    stamp = context / "src" / "stamp.txt"
    stamp.write_text("1")
    first = key(context, state)  # walks, and notes the newest files
    assert list((state / "memo").glob("*.hot"))
    walks: list[str] = []
    real_walk = _memo._walk

    def counting_walk(*args: Any) -> None:
        walks.append("walk")
        real_walk(*args)

    monkeypatch.setattr(_memo, "_walk", counting_walk)
    stamp.write_text("2")
    assert _memo.prepare(params(context, state), addr=None) is None  # no memory can match
    assert walks == []
    again = _memo.prepare(params(context, state), addr=None)  # nothing changed since
    assert again is not None
    assert walks == ["walk"]
    assert again.key != first
    # a change elsewhere is found by the walk, as before
    (context / "src" / "old3.txt").write_text("y")
    third = _memo.prepare(params(context, state), addr=None)
    assert third is not None
    assert third.key != again.key


def test_noted_paths_outside_the_context_are_not_looked_at(
    context: Path, state: Path, tmp_path: Path
) -> None:
    key(context, state)
    (hot,) = (state / "memo").glob("*.hot")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    hot.write_text(f"../outside.txt\0sig\n{outside}\0sig\n")
    # neither entry is checked (nothing "changed"): the build's inputs decide
    assert _memo.prepare(params(context, state), addr=None) is not None
