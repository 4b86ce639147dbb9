"""The cache manager as the solver's ResultStorage, with content checksums as deps: the
wiring the LLB ops will use, exercised with small ops that write files into refs."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from dockyard.cache import CacheManager, ImmutableRef
from dockyard.solver import (
    CacheMap,
    Dep,
    Result,
    Solver,
    SqliteCacheKeyStorage,
    Vertex,
    VertexContext,
)

from .helpers import contents, write

EXECS: Counter[str] = Counter()


class WriteOp:
    """Writes ``files`` on top of its input (if any), like a file op."""

    def __init__(self, manager: CacheManager, name: str, files: dict[str, str]) -> None:
        self.manager = manager
        self.name = name
        self.files = files

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        digest = hashlib.sha256(repr(sorted(self.files.items())).encode()).hexdigest()
        return CacheMap(digest="sha256:" + digest)

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        EXECS[self.name] += 1
        parent = inputs[0] if inputs else None
        assert parent is None or isinstance(parent, ImmutableRef)
        mut = await self.manager.new_mutable(parent, description=self.name)

        def fill(root: Path) -> None:
            for name, text in self.files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)

        await write(mut, fill)
        return [await mut.commit()]

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()


class CopyOp:
    """Copies ``src`` of its second input onto its first; keyed by the content of ``src``."""

    def __init__(self, manager: CacheManager, src: str) -> None:
        self.manager = manager
        self.src = src

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        async def digest(result: Result, ctx: VertexContext) -> str:
            assert isinstance(result, ImmutableRef)
            return await self.manager.checksum(result, self.src)

        return CacheMap(
            digest="sha256:" + hashlib.sha256(f"copy {self.src}".encode()).hexdigest(),
            deps=(Dep(), Dep(selector=self.src, compute_digest=digest)),
        )

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        EXECS["copy"] += 1
        dest, source = inputs
        assert isinstance(dest, ImmutableRef)
        assert isinstance(source, ImmutableRef)
        files = {k: v for k, v in (await contents(source)).items() if k.startswith("src/")}
        mut = await self.manager.new_mutable(dest, description="copy")

        def fill(root: Path) -> None:
            (root / "src").mkdir(exist_ok=True)
            for name, text in files.items():
                if text != "<dir>":
                    (root / name).write_text(text)

        await write(mut, fill)
        return [await mut.commit()]

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()


def graph(manager: CacheManager, src_text: str, other_text: str) -> Vertex:
    base = Vertex(digest="base", name="base", op=WriteOp(manager, "base", {"etc/os": "busybox"}))
    ctx_files = {"src/app.py": src_text, "docs/readme": other_text}
    context = Vertex(
        digest=f"context-{src_text}-{other_text}",
        name="context",
        op=WriteOp(manager, "context", ctx_files),
    )
    return Vertex(
        digest=f"copy-{src_text}-{other_text}",
        name="copy",
        op=CopyOp(manager, "/src"),
        inputs=(base.output(), context.output()),
    )


async def build(state: Path, src_text: str, other_text: str) -> dict[str, str]:
    manager = await CacheManager.open(state, snapshotter="native")
    keys = SqliteCacheKeyStorage(state / "metadata.db")
    try:
        solver = Solver(result_storage=manager, key_storage=keys)
        async with solver.new_job() as job:
            ref = await job.solve(graph(manager, src_text, other_text).output())
            assert isinstance(ref.value, ImmutableRef)
            return await contents(ref.value)
    finally:
        keys.close()
        await manager.close()


async def test_results_survive_restarts_and_content_keys_hit(tmp_path: Path) -> None:
    state = tmp_path / "state"
    EXECS.clear()
    expected = {"etc": "<dir>", "etc/os": "busybox", "src": "<dir>", "src/app.py": "v1"}
    assert await build(state, "v1", "doc1") == expected
    assert Counter({"base": 1, "context": 1, "copy": 1}) == EXECS

    # a new process: everything comes from the cache, nothing runs
    EXECS.clear()
    assert await build(state, "v1", "doc1") == expected
    assert Counter() == EXECS

    # an unrelated change in the context: the copy hits by the content of /src
    EXECS.clear()
    assert await build(state, "v1", "doc2") == expected
    assert Counter({"context": 1}) == EXECS

    # a change that matters
    EXECS.clear()
    assert (await build(state, "v2", "doc2"))["src/app.py"] == "v2"
    assert Counter({"context": 1, "copy": 1}) == EXECS

    # pruned results are made again
    manager = await CacheManager.open(state, snapshotter="native")
    assert await manager.prune()
    await manager.close()
    EXECS.clear()
    assert await build(state, "v1", "doc1") == expected
    assert Counter({"base": 1, "context": 1, "copy": 1}) == EXECS
