"""``local://`` sources solved for real: in-process sessions, overlayfs refs."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import ImmutableRef
from dockyard.core import NotFoundError, SessionError, VertexProgress
from dockyard.session import Session
from dockyard.source import CONTENT_LABEL

from .conftest import Engine, read_tree


def _context(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "pkg" / "mod.py").write_text("X = 1\n")
    (root / "README").write_text("readme\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    return root


def _session(ctx: Path, **dirs: Path) -> Session:
    return Session(shared_key="test-machine", directories={"context": ctx, **dirs})


async def test_sync_resync_incremental_and_noop_reuses_the_snapshot(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "ctx")
    definition = llb.local("context").marshal()

    ref, reporter = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    tree = await engine.tree(ref)
    first_id = ref.id
    await ref.release()
    assert tree["src/main.py"] == (b"print('hi')\n", 0o644)
    assert tree["run.sh"] == (b"#!/bin/sh\n", 0o755)
    assert tree["src/pkg"] == ("dir", 0o755)
    stats = engine.local.statistics()
    assert (stats.syncs, stats.files_transferred, stats.copies) == (1, 4, 1)
    assert any(isinstance(e, VertexProgress) for e in reporter.events)

    # nothing changed: nothing travels, no checksum walk, the same snapshot comes back
    ref, _ = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    assert ref.id == first_id
    await ref.release()
    stats = engine.local.statistics()
    assert (stats.syncs, stats.files_transferred, stats.copies, stats.reused) == (2, 4, 1, 1)
    assert stats.checksums == 1

    # one file changes, one is added, one removed: only two contents travel
    (ctx / "src" / "main.py").write_text("print('changed')\n")
    (ctx / "new.txt").write_text("new\n")
    (ctx / "README").unlink()
    ref, _ = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    tree = await engine.tree(ref)
    assert ref.id != first_id
    await ref.release()
    assert tree["src/main.py"] == (b"print('changed')\n", 0o644)
    assert tree["new.txt"] == (b"new\n", 0o644)
    assert "README" not in tree
    stats = engine.local.statistics()
    assert (stats.syncs, stats.files_transferred, stats.copies) == (3, 6, 2)

    # back to the first content: the first snapshot is found by its content label
    (ctx / "src" / "main.py").write_text("print('hi')\n")
    (ctx / "new.txt").unlink()
    (ctx / "README").write_text("readme\n")
    ref, _ = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    assert ref.id == first_id
    value = ref.value
    assert isinstance(value, ImmutableRef)
    assert CONTENT_LABEL in value.labels
    await ref.release()
    assert engine.local.statistics().copies == 2


async def test_the_index_reads_back_only_changed_files_the_sync_did_not_see(
    engine: Engine, tmp_path: Path
) -> None:
    """Small files are hashed on their way in (the index reads none of them back); big
    ones are copied in the kernel and read back by the index, only when they changed."""
    ctx = tmp_path / "ctx"
    for d in range(20):
        (ctx / f"d{d}").mkdir(parents=True)
        for f in range(50):
            (ctx / f"d{d}" / f"f{f}").write_text(f"{d}/{f}\n")
        (ctx / f"d{d}" / "big").write_bytes(bytes([d]) * (100 << 10))
    definition = llb.local("context").marshal()
    engine.cache._racy_ns = 0  # files written just now count as settled
    ref, _ = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    await ref.release()
    assert engine.cache.statistics().files_hashed == 20
    for changed, content, read_back in (
        ("d3/f7", b"changed\n", 0),
        ("d5/big", b"x" * (200 << 10), 1),
        ("d5/f1", b"changed\n", 0),
    ):
        (ctx / changed).write_bytes(content)
        before = engine.cache.statistics().files_hashed
        ref, _ = await engine.solve(definition, session=_session(ctx))
        assert ref is not None
        assert (await engine.tree(ref))[changed] == (content, 0o644)
        await ref.release()
        assert engine.cache.statistics().files_hashed - before == read_back
    assert engine.local.statistics().files_transferred == 1020 + 3


async def test_include_exclude_patterns_and_follow_paths(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "logs" / "deep").mkdir(parents=True)
    (ctx / "src" / "tmp").mkdir(parents=True)
    (ctx / "a.log").write_text("a")
    (ctx / "keep.log").write_text("keep")
    (ctx / "logs" / "deep" / "x.log").write_text("x")
    (ctx / "src" / "tmp" / "junk").write_text("junk")
    (ctx / "src" / "app.py").write_text("app")
    (ctx / "Dockerfile.real").write_text("FROM scratch\n")
    os.symlink("Dockerfile.real", ctx / "Dockerfile")

    excluded = llb.local("context", exclude_patterns=["**/*.log", "!keep.log", "**/tmp"])
    ref, _ = await engine.solve(excluded.marshal(), session=_session(ctx))
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert sorted(tree) == [
        "Dockerfile",
        "Dockerfile.real",
        "keep.log",
        "logs",
        "logs/deep",
        "src",
        "src/app.py",
    ]

    included = llb.local(
        "context",
        include_patterns=["Dockerfile"],
        follow_paths=["Dockerfile"],
        shared_key_hint="dockerfile",
    )
    ref, _ = await engine.solve(included.marshal(), session=_session(ctx))
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert tree == {
        "Dockerfile": ("link", "Dockerfile.real"),
        "Dockerfile.real": (b"FROM scratch\n", 0o644),
    }


async def test_hostile_symlinks_stay_links(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink("/etc/passwd", ctx / "passwd")
    os.symlink("../../../../../../etc", ctx / "up")
    (ctx / "file").write_text("ok")
    ref, _ = await engine.solve(llb.local("context").marshal(), session=_session(ctx))
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert tree == {
        "passwd": ("link", "/etc/passwd"),
        "up": ("link", "../../../../../../etc"),
        "file": (b"ok", 0o644),
    }

    # copying through the links from the context stays inside it
    copied = llb.scratch().file(llb.copy(llb.local("context"), "/", "/out/"))
    ref, _ = await engine.solve(copied.marshal(), session=_session(ctx))
    assert ref is not None
    tree = await engine.tree(ref)
    await ref.release()
    assert tree["out/passwd"] == ("link", "/etc/passwd")
    assert tree["out/file"] == (b"ok", 0o644)


async def test_scratch_end_to_end(engine: Engine, tmp_path: Path) -> None:
    ref, _ = await engine.solve(llb.scratch().marshal())
    assert ref is None  # an empty Definition is the empty tree
    ctx = _context(tmp_path / "ctx")
    state = llb.scratch().file(llb.copy(llb.local("context"), "/src/main.py", "/main.py"))
    ref, _ = await engine.solve(state.marshal(), session=_session(ctx))
    assert ref is not None
    assert await engine.tree(ref) == {"main.py": (b"print('hi')\n", 0o644)}
    await ref.release()
    merged = llb.merge([llb.scratch(), llb.scratch().file(llb.mkfile("/x", 0o600, b"x"))])
    ref, _ = await engine.solve(merged.marshal())
    assert ref is not None
    assert await engine.tree(ref) == {"x": (b"x", 0o600)}
    await ref.release()


async def test_errors_name_the_directory(engine: Engine, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx")
    with pytest.raises(NotFoundError, match=r"'other'.*offers: context"):
        await engine.solve(llb.local("other").marshal(), session=_session(ctx))
    with pytest.raises(SessionError, match="no client session"):
        await engine.solve(llb.local("context").marshal())


async def test_unchanged_context_reuses_across_restarts(
    tmp_path: Path, mountinfo_unchanged: None
) -> None:
    from .conftest import open_engine

    ctx = _context(tmp_path / "ctx")
    definition = llb.local("context").marshal()
    async with open_engine(tmp_path / "state") as first:
        ref, _ = await first.solve(definition, session=_session(ctx))
        assert ref is not None
        first_id = ref.id
        await ref.release()
    async with open_engine(tmp_path / "state") as second:
        ref, _ = await second.solve(definition, session=_session(ctx))
        assert ref is not None
        assert ref.id == first_id
        await ref.release()
        stats = second.local.statistics()
        assert (stats.files_transferred, stats.copies, stats.reused) == (0, 0, 1)
    assert read_tree(ctx)  # the client's directory is untouched


async def test_dependants_of_a_changed_context_rehash_only_the_change(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    for d in range(10):
        (ctx / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (ctx / f"d{d}" / f"f{f}").write_text(f"{d}/{f}\n")
    engine.cache._racy_ns = 0  # files written just now count as settled
    copy = llb.scratch().file(llb.copy(llb.local("context"), "/d1", "/app/"))
    ref, _ = await engine.solve(copy.marshal(), session=_session(ctx))
    assert ref is not None
    await ref.release()
    (ctx / "d7" / "f3").write_text("changed\n")  # outside what the copy reads
    before = engine.cache.statistics().files_hashed
    ref, reporter = await engine.solve(copy.marshal(), session=_session(ctx))
    assert ref is not None
    await ref.release()
    hashed = engine.cache.statistics().files_hashed - before
    assert hashed <= 2, hashed
    copies = [s for s in reporter.statuses() if "copy" in s.name]
    assert copies
    assert copies[-1].cached, [s.name for s in reporter.statuses()]


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
async def test_many_changes_keep_tree_and_checksums_exact(
    tmp_path: Path, mountinfo_unchanged: None, snapshotter: str
) -> None:
    """Builds after random changes of every kind: each snapshot shows the client's tree,
    and checksums answered from its file index equal a walk of the mounted tree."""
    import random
    import shutil

    from dockyard.cache._checksum import Selector, compute_checksum

    from .conftest import open_engine

    rng = random.Random(7)
    ctx = _context(tmp_path / "ctx")
    os.symlink("src", ctx / "src-link")
    definition = llb.local("context").marshal()

    def mutate() -> None:
        files = sorted(p for p in ctx.rglob("*") if p.is_file() and not p.is_symlink())
        dirs = sorted(p for p in ctx.rglob("*") if p.is_dir() and not p.is_symlink())
        roll = rng.randrange(7)
        if roll == 0 and files:
            rng.choice(files).write_text(f"changed {rng.random()}\n")
        elif roll == 1:
            parent = rng.choice([ctx, *dirs])
            (parent / f"n{rng.randrange(1000)}").write_text("new\n")
        elif roll == 2 and files:
            rng.choice(files).unlink()
        elif roll == 3 and dirs:
            shutil.rmtree(rng.choice(dirs))
        elif roll == 4 and files:
            victim = rng.choice(files)
            victim.unlink()
            victim.mkdir()
            (victim / "inside").write_text("inside\n")
        elif roll == 5 and dirs:
            victim = rng.choice(dirs)
            shutil.rmtree(victim)
            victim.write_text("was a directory\n")
        elif files:
            os.chmod(rng.choice(files), rng.choice([0o600, 0o644, 0o755]))

    async with open_engine(tmp_path / "state", snapshotter=snapshotter) as engine:  # type: ignore[arg-type]
        assert engine.cache.snapshotter.name == snapshotter
        for _ in range(12):
            for _ in range(rng.randrange(1, 4)):
                mutate()
            ref, _ = await engine.solve(definition, session=_session(ctx))
            assert ref is not None
            value = ref.value
            assert isinstance(value, ImmutableRef)
            assert await engine.cache.file_index(value) is not None
            async with value.mount() as root:
                assert read_tree(root) == read_tree(ctx)
                paths = ["/", *("/" + p for p in read_tree(ctx)), "/src-link/main.py"]
                for path in paths:
                    sel = Selector(path=path, follow_links=True)
                    try:
                        walked = str(compute_checksum(str(root), sel).digest)
                    except NotFoundError:
                        walked = "missing"
                    try:
                        indexed = str(await engine.cache.checksum(value, path, follow_links=True))
                    except NotFoundError:
                        indexed = "missing"
                    assert indexed == walked, path
            await ref.release()


async def test_one_change_writes_a_small_layer(engine: Engine, tmp_path: Path) -> None:
    """With overlayfs the snapshot after a one-file change owns that file and the
    directories above it, not a copy of the context."""
    ctx = tmp_path / "ctx"
    for d in range(5):
        (ctx / f"d{d}").mkdir(parents=True)
        for f in range(200):
            (ctx / f"d{d}" / f"f{f}").write_bytes(os.urandom(1024))
    definition = llb.local("context").marshal()
    ref, _ = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    first = ref.id
    await ref.release()
    (ctx / "d3" / "f7").write_text("changed\n")
    ref, _ = await engine.solve(definition, session=_session(ctx))
    assert ref is not None
    second = ref.id
    await ref.release()
    assert engine.local.statistics().files_transferred == 1000 + 1
    sizes = {r.id: r for r in await engine.cache.du()}
    assert sizes[second].parents == (first,)
    assert sizes[first].size > 1000 * 1024
    assert sizes[second].size < 64 * 1024


def _stats(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below ``root`` with what a copy must keep: type, mode, owner, mtime
    (files and links), content or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                data: object = None
                mtime: int | None = None
            elif stat.S_ISLNK(st.st_mode):
                data, mtime = os.readlink(path), st.st_mtime_ns
            else:
                data, mtime = path.read_bytes(), st.st_mtime_ns
            out[path.relative_to(root).as_posix()] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                mtime,
                data,
            )
    return out


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
async def test_a_copy_rerun_after_a_change_links_what_did_not_change(
    tmp_path: Path, mountinfo_unchanged: None, snapshotter: str
) -> None:
    """COPY of a context directory, re-run because one file changed: the result is the
    same tree a full copy makes (contents, modes, owners, times), and the unchanged
    files are hard links to the earlier result's (the same inodes), not copies; the
    files that changed are new (linked from the context's new layer, or copied)."""
    import random
    import shutil

    from .conftest import open_engine

    rng = random.Random(3)
    ctx = tmp_path / "ctx"
    for d in range(4):
        (ctx / "app" / f"d{d}").mkdir(parents=True)
        for f in range(25):
            path = ctx / "app" / f"d{d}" / f"f{f}"
            path.write_bytes(os.urandom(64 + f))
            os.chmod(path, rng.choice([0o644, 0o600, 0o755]))
    os.symlink("d0/f1", ctx / "app" / "link")
    os.chown(ctx / "app" / "d1" / "f2", 1234, 5678)
    base = llb.scratch().file(llb.mkdir("/opt", 0o755))
    copy = base.file(llb.copy(llb.local("context"), "/app", "/srv/", create_dest_path=True))
    definition = copy.marshal()

    async with open_engine(tmp_path / "state", snapshotter=snapshotter) as engine:  # type: ignore[arg-type]

        async def build() -> dict[str, int]:
            ref, _ = await engine.solve(definition, session=_session(ctx))
            assert ref is not None
            value = ref.value
            assert isinstance(value, ImmutableRef)
            async with value.mount() as root:
                tree = _stats(root / "srv" / "app")
                inodes = {
                    p: os.lstat(root / "srv" / "app" / p).st_ino
                    for p, s in tree.items()
                    if s[0] == stat.S_IFREG
                }
            await ref.release()
            assert tree == _stats(ctx / "app")
            return inodes

        before = await build()

        def retime() -> None:
            # same content, new time (alone it would not re-run the copy: keys ignore times)
            os.utime(ctx / "app" / "d0" / "f4", ns=(1, 2))
            (ctx / "app" / "d0" / "f5").write_bytes(b"also changed")

        changes: list[Callable[[], object]] = [
            lambda: (ctx / "app" / "d2" / "f3").write_bytes(b"changed"),
            retime,
            lambda: os.chmod(ctx / "app" / "d3" / "f5", 0o700),
            lambda: shutil.rmtree(ctx / "app" / "d1"),
            lambda: (ctx / "app" / "d0" / "new").write_text("new"),
        ]
        copied_again = [{"d2/f3"}, {"d0/f4", "d0/f5"}, {"d3/f5"}, set(), {"d0/new"}]
        for change, expected in zip(changes, copied_again, strict=True):
            change()
            after = await build()
            assert {p for p, ino in after.items() if before.get(p) != ino} == expected
            before = after


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
async def test_a_copy_keeps_hard_link_groups_when_it_links_files(
    tmp_path: Path, mountinfo_unchanged: None, snapshotter: str
) -> None:
    """Files of the context linked into a COPY's result (from the context's layer, then
    from the earlier result) keep the hard-link groups the context has."""
    from .conftest import open_engine

    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "a").write_text("group")
    os.link(ctx / "app" / "a", ctx / "app" / "b")
    (ctx / "app" / "c").write_text("alone")
    base = llb.scratch().file(llb.mkdir("/srv", 0o755))  # a parent: the copy writes
    copy = base.file(llb.copy(llb.local("context"), "/app", "/srv/"))  # through a mount
    definition = copy.marshal()

    async with open_engine(tmp_path / "state", snapshotter=snapshotter) as engine:  # type: ignore[arg-type]

        async def build() -> dict[str, tuple[int, str]]:
            ref, _ = await engine.solve(definition, session=_session(ctx))
            assert ref is not None
            value = ref.value
            assert isinstance(value, ImmutableRef)
            async with value.mount() as root:
                out = {
                    name: (os.lstat(root / "srv" / "app" / name).st_ino,
                           (root / "srv" / "app" / name).read_text())
                    for name in ("a", "b", "c")
                }  # fmt: skip
            await ref.release()
            return out

        for change in (None, "changed"):
            if change is not None:
                (ctx / "app" / "c").write_text(change)
            tree = await build()
            assert tree["a"][0] == tree["b"][0] != tree["c"][0]
            assert (tree["a"][1], tree["b"][1]) == ("group", "group")
            assert tree["c"][1] == (change or "alone")


async def test_a_long_chain_starts_over_on_a_linked_copy(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After MAX_LAYERS changes the next snapshot is made on a flattened copy of the tree
    (hard links, nothing transferred again): chains stay short, trees and checksums
    exact."""
    from dockyard.cache._checksum import Selector, compute_checksum
    from dockyard.source import _local

    monkeypatch.setattr(_local, "MAX_LAYERS", 3)
    ctx = _context(tmp_path / "ctx")
    definition = llb.local("context").marshal()
    depths = []
    for step in range(8):
        (ctx / "src" / f"step{step}.txt").write_text(f"step {step}\n")
        if step % 3 == 2:
            (ctx / "README").write_text(f"readme {step}\n")
        ref, _ = await engine.solve(definition, session=_session(ctx))
        assert ref is not None
        value = ref.value
        assert isinstance(value, ImmutableRef)
        depths.append(len(await engine.cache.snapshotter.layers(value.id)))
        async with value.mount() as root:
            assert read_tree(root) == read_tree(ctx)
            walked = compute_checksum(str(root), Selector(path="/")).digest
        assert await engine.cache.checksum(value, "/") == walked
        await ref.release()
    assert max(depths) <= 3
    assert depths[:4] == [1, 2, 3, 2]  # the fourth change went onto a flat copy
    # every file travelled once, plus one per change
    assert engine.local.statistics().files_transferred == 4 + 8 + 2
