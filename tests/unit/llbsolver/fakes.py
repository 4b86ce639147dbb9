"""Test doubles for the llbsolver ops: refs over plain directories, an executor that
runs a Python function instead of a process, secret stores and sources.

:class:`DirRefs` is at once the :class:`~dockyard.llbsolver.RefStore` and the
solver's :class:`~dockyard.solver.ResultStorage`; every ref is a directory under its
root, handed out as a single bind mount (which the ops use without mounting anything).
It counts open handles so that tests can assert that nothing leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import shutil
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.core import NotFoundError, PatternMatcher
from dockyard.executor.types import BindMount, ExecMount, OutputSink, ProcessSpec
from dockyard.llb import CacheSharing
from dockyard.llbsolver import ContentSelector, SourceRequest
from dockyard.llbsolver._glob import resolve_wildcards
from dockyard.llbsolver._paths import root_path
from dockyard.snapshot.types import Mount
from dockyard.solver import Result, VertexContext


class DirRef:
    """An immutable ref: a directory, read-only by convention."""

    def __init__(self, store: DirRefs, rid: str) -> None:
        self.store = store
        self._id = rid
        self.released = False
        store.open_handles += 1

    @property
    def id(self) -> str:
        return self._id

    @property
    def path(self) -> Path:
        return self.store.root / "refs" / self._id

    async def release(self) -> None:
        assert not self.released, f"{self._id} released twice"
        self.released = True
        self.store.open_handles -= 1

    async def mounts(self) -> Sequence[Mount]:
        assert not self.released
        return [Mount(type="bind", source=str(self.path), options=("rbind", "ro"))]

    def __repr__(self) -> str:
        return f"<DirRef {self._id}>"


class DirMutable:
    def __init__(self, store: DirRefs, path: Path) -> None:
        self.store = store
        self.path = path
        self.done = False
        store.open_mutables += 1

    async def mounts(self) -> Sequence[Mount]:
        assert not self.done
        return [Mount(type="bind", source=str(self.path), options=("rbind",))]

    async def commit(self) -> DirRef:
        assert not self.done
        self.done = True
        self.store.open_mutables -= 1
        rid = f"r{next(self.store.ids)}"
        os.rename(self.path, self.store.root / "refs" / rid)
        self.store.commits += 1
        return DirRef(self.store, rid)

    async def release(self) -> None:
        assert not self.done
        self.done = True
        self.store.open_mutables -= 1
        shutil.rmtree(self.path)


def _copy_into(src: Path, dest: Path) -> None:
    """``cp -a src/. dest/`` (later copies win)."""
    for entry in sorted(os.listdir(src)):
        s, d = src / entry, dest / entry
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d) and not (os.path.isdir(d) and not os.path.islink(d)):
                os.unlink(d)
            d.mkdir(exist_ok=True)
            _copy_into(s, d)
            shutil.copystat(s, d, follow_symlinks=False)
        else:
            if os.path.lexists(d):
                if os.path.isdir(d) and not os.path.islink(d):
                    shutil.rmtree(d)
                else:
                    os.unlink(d)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d)
        if os.geteuid() == 0:
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)


class DirRefs:
    """RefStore + ResultStorage over directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "work").mkdir(exist_ok=True)
        (root / "cache").mkdir(exist_ok=True)
        self.ids = itertools.count(1)
        self.open_handles = 0
        self.open_mutables = 0
        self.commits = 0
        self.checksums: list[tuple[str, ContentSelector]] = []
        self.cache_locks: dict[str, asyncio.Lock] = {}
        self.cache_users: dict[str, int] = {}

    def assert_no_leaks(self) -> None:
        assert self.open_handles == 0, f"{self.open_handles} ref handles still open"
        assert self.open_mutables == 0, f"{self.open_mutables} mutable refs still open"
        assert list((self.root / "work").iterdir()) == []

    def add(self, build: Callable[[Path], object]) -> DirRef:
        """A new committed ref filled by ``build(directory)``."""
        rid = f"r{next(self.ids)}"
        path = self.root / "refs" / rid
        path.mkdir()
        build(path)
        return DirRef(self, rid)

    # -- RefStore

    async def new_mutable(self, parent: object, *, description: str = "") -> DirMutable:
        path = self.root / "work" / f"m{next(self.ids)}"
        path.mkdir()
        if parent is not None:
            assert isinstance(parent, DirRef)
            _copy_into(parent.path, path)
        return DirMutable(self, path)

    async def merge(self, inputs: Sequence[object], *, description: str = "") -> DirRef:
        def build(path: Path) -> None:
            for ref in inputs:
                assert isinstance(ref, DirRef)
                _copy_into(ref.path, path)

        return self.add(build)

    async def diff(self, lower: object, upper: object, *, description: str = "") -> DirRef:
        def build(path: Path) -> None:
            if upper is None:
                return
            assert isinstance(upper, DirRef)
            low = lower.path if isinstance(lower, DirRef) else None
            for dirpath, _dirs, files in os.walk(upper.path):
                for name in files:
                    src = Path(dirpath, name)
                    rel = src.relative_to(upper.path)
                    other = low / rel if low is not None else None
                    if (
                        other is not None
                        and other.is_file()
                        and other.read_bytes() == src.read_bytes()
                    ):
                        continue
                    (path / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, path / rel, follow_symlinks=False)

        return self.add(build)

    @contextlib.asynccontextmanager
    async def cache_mount(
        self, id: str, *, sharing: CacheSharing, base: object = None
    ) -> AsyncIterator[Sequence[Mount]]:
        path = self.root / "cache" / hashlib.sha256(id.encode()).hexdigest()[:16]
        lock = self.cache_locks.setdefault(id, asyncio.Lock())
        if sharing == CacheSharing.LOCKED:
            await lock.acquire()
        private = sharing == CacheSharing.PRIVATE and self.cache_users.get(id, 0) > 0
        if private:
            path = self.root / "cache" / f"private-{next(self.ids)}"
        if not path.exists():
            path.mkdir()
            if isinstance(base, DirRef):
                _copy_into(base.path, path)
        self.cache_users[id] = self.cache_users.get(id, 0) + 1
        try:
            yield [Mount(type="bind", source=str(path), options=("rbind",))]
        finally:
            self.cache_users[id] -= 1
            if sharing == CacheSharing.LOCKED:
                lock.release()

    async def checksum(self, ref: object, selector: ContentSelector) -> str:
        assert isinstance(ref, DirRef)
        assert not ref.released
        self.checksums.append((ref.id, selector))
        return _checksum(ref.path, selector)

    # -- ResultStorage

    async def save(self, results: Sequence[Result]) -> Sequence[str]:
        return [r.id for r in results]

    async def load(self, result_id: str) -> Result | None:
        if not (self.root / "refs" / result_id).is_dir():
            return None
        return DirRef(self, result_id)


def _checksum(root: Path, selector: ContentSelector) -> str:
    if selector.wildcard:
        paths = resolve_wildcards(root, selector.path, follow_links=selector.follow_links)
    else:
        target = root_path(root, selector.path, follow_links=selector.follow_links)
        if not os.path.lexists(target):
            raise NotFoundError(f"{selector.path!r} not found")
        paths = [os.path.relpath(target, root)]
    include = PatternMatcher(selector.include_patterns) if selector.include_patterns else None
    exclude = PatternMatcher(selector.exclude_patterns) if selector.exclude_patterns else None
    h = hashlib.sha256()
    for rel in paths:
        base = root / rel
        entries = [base] + (
            sorted(p for p in base.rglob("*")) if base.is_dir() and not base.is_symlink() else []
        )
        for p in entries:
            sub = p.relative_to(base).as_posix()
            if sub != "." and include is not None and not include.matches(sub):
                continue
            if sub != "." and exclude is not None and exclude.matches(sub):
                continue
            st = os.lstat(p)
            h.update(f"{rel}/{sub}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(p.read_bytes())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
    return "sha256:" + h.hexdigest()


# -- executor -----------------------------------------------------------------------


@dataclass
class Call:
    root: Path
    mounts: list[ExecMount]
    process: ProcessSpec
    mount_dirs: dict[str, Path] = field(default_factory=dict)


Behaviour = Callable[[Call, OutputSink], Awaitable[int]]


class FakeExecutor:
    """Runs ``behaviour(call, output)`` instead of a process; records every call.

    Bind mounts of single plain directories are resolved to ``call.mount_dirs[dest]``
    (with the selector applied) so that behaviours can read and write them.
    """

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour
        self.calls: list[Call] = []

    async def run(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        output: OutputSink | None = None,
    ) -> int:
        assert len(root) == 1
        assert root[0].type == "bind"
        call = Call(root=Path(root[0].source), mounts=list(mounts), process=process)
        for m in mounts:
            if isinstance(m, BindMount) and len(m.source) == 1:
                base = Path(m.source[0].source)
                call.mount_dirs[m.dest] = root_path(base, m.selector or "/", follow_links=True)
        self.calls.append(call)
        if self.behaviour is None:
            return 0
        return await self.behaviour(call, output or (lambda _s, _d: None))


# -- secrets, ssh and sources ---------------------------------------------------------


class Secrets:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values
        self.asked: list[str] = []

    async def get(self, id: str) -> bytes:
        self.asked.append(id)
        if id not in self.values:
            raise NotFoundError(f"secret {id!r} not found")
        return self.values[id]


class SshAgents:
    def __init__(self, sockets: dict[str, Path]) -> None:
        self.sockets = sockets
        self.forwarded: list[tuple[str, int, int, int]] = []

    def has(self, id: str) -> bool:
        return id in self.sockets

    @contextlib.asynccontextmanager
    async def forward(
        self, id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600
    ) -> AsyncIterator[Path]:
        if id not in self.sockets:
            raise NotFoundError(f"no agent {id}")
        self.forwarded.append((id, uid, gid, mode))
        yield self.sockets[id]


class DirSource:
    """A source resolver whose trees are directories of the test; counts snapshots."""

    def __init__(self, refs: DirRefs, trees: dict[str, Callable[[Path], object]]) -> None:
        self.refs = refs
        self.trees = trees
        self.keys: dict[str, str] = {}
        self.snapshots: list[str] = []
        self.requests: list[SourceRequest] = []

    async def resolve(self, request: SourceRequest, ctx: VertexContext) -> DirSourceInstance:
        if request.path not in self.trees:
            raise NotFoundError(f"no tree {request.path}")
        self.requests.append(request)
        return DirSourceInstance(self, request.path)


class DirSourceInstance:
    def __init__(self, source: DirSource, name: str) -> None:
        self.source = source
        self.name = name

    async def cache_key(self, ctx: VertexContext) -> str:
        return self.source.keys.get(self.name, self.name)

    async def snapshot(self, ctx: VertexContext) -> DirRef:
        self.source.snapshots.append(self.name)
        return self.source.refs.add(self.source.trees[self.name])
