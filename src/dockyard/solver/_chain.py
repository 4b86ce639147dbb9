"""What a cache exporter needs from a job: the keys and records of the vertices behind
its results (BuildKit's ``ExportTo`` walk), in a shape that knows nothing of formats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._solver import Job
from ._state import VertexState
from .types import CacheRecord, CacheSource, Edge

__all__ = ["CacheChainLink", "CacheChainRecord", "cache_chain"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheChainLink:
    """One input of a chain record: the index of the input's record in the chain, the
    dep's selector and the input's output index (what the definition key hashes)."""

    record: int
    selector: str | None
    output: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheChainRecord:
    """One vertex of a job's graph as a cache export sees it.

    ``keys`` are every cache key naming the vertex's record, ``keys[0]`` the canonical
    one its dependants build on, link keys last (keys unique to this build left out). ``inputs`` link
    to the input vertices' chain records (``None``: an input whose key is unique to
    this build, left out of the chain). ``source`` is set when the record is one a job's
    cache source found and the solver never needed its results: its result ids are that
    source's (an exporter may copy them from there without materializing them).
    ``record`` holds the results (ids of the solver's :class:`ResultStorage`) when they
    are to be exported, and ``outputs`` which of them (empty: keys only).
    """

    digest: str
    name: str
    keys: tuple[str, ...]
    inputs: tuple[CacheChainLink | None, ...]
    record: CacheRecord | None
    outputs: tuple[int, ...]
    source: CacheSource | None = None

    @property
    def canonical_key(self) -> str:
        return self.keys[0]


async def cache_chain(
    job: Job, edges: Sequence[Edge], *, all_results: bool
) -> list[CacheChainRecord]:
    """The records behind ``edges`` (vertices the job solved), inputs before dependants.

    Every vertex reachable from ``edges`` whose key the job computed is listed with its
    keys and links. Results: with ``all_results`` (BuildKit's ``mode=max``) every
    vertex's record; otherwise (``mode=min``) only the outputs ``edges`` name. A record
    comes from the solver's key storage (a result loaded from a cache source was recorded
    there when it was loaded), else it is the cache source's record the key computation
    found (``CacheChainRecord.source``); a vertex whose results are gone is listed with
    its keys only. Vertices whose key was not
    computed (a failed or cancelled solve) are left out, with everything built on them;
    so are vertices whose canonical key is unique to this build (``CacheMap.volatile``:
    a local source, whose dependants read it by content), and every such key.
    """
    wanted: dict[str, set[int]] = {}
    for edge in edges:
        wanted.setdefault(edge.vertex.digest, set()).add(edge.index)
    order = _topological(job, [edge.vertex.digest for edge in edges])
    storage = job.solver.key_storage
    index: dict[str, int] = {}
    volatile: set[str] = set()
    out: list[CacheChainRecord] = []
    for state in order:
        memo = state.key_memo
        if not memo.done or any(
            dep.digest not in index and dep.digest not in volatile for dep in state.inputs
        ):
            continue
        info = memo.value
        if info.canonical_volatile:
            volatile.add(state.digest)
            continue
        links = tuple(
            CacheChainLink(
                record=index[dep.digest],
                selector=info.selectors[i] if i < len(info.selectors) else None,
                output=edge.index,
            )
            if dep.digest in index
            else None
            for i, (dep, edge) in enumerate(zip(state.inputs, state.vertex.inputs, strict=True))
        )
        outputs: tuple[int, ...] = ()
        record: CacheRecord | None = None
        source: CacheSource | None = None
        if all_results or state.digest in wanted:
            record = await storage.lookup(info.canonical)
            if record is None and info.record is not None:
                record, source = info.record, info.source
            if record is not None:
                if all_results:
                    outputs = tuple(range(len(record.result_ids)))
                else:
                    outputs = tuple(
                        sorted(i for i in wanted[state.digest] if i < len(record.result_ids))
                    )
        index[state.digest] = len(out)
        out.append(
            CacheChainRecord(
                digest=state.digest,
                name=state.vertex.name,
                keys=tuple(k for k in state.record_keys(info) if k not in info.volatile),
                inputs=links,
                record=record if outputs else None,
                outputs=outputs,
                source=source if outputs else None,
            )
        )
    return out


def _topological(job: Job, roots: Sequence[str]) -> list[VertexState]:
    """The job's states reachable from ``roots``, inputs first (iterative DFS)."""
    held = job._held
    order: list[VertexState] = []
    seen: set[str] = set()
    stack: list[tuple[VertexState, bool]] = [(held[d], False) for d in reversed(roots) if d in held]
    while stack:
        state, expanded = stack.pop()
        if expanded:
            order.append(state)
            continue
        if state.digest in seen:
            continue
        seen.add(state.digest)
        stack.append((state, True))
        stack.extend((dep, False) for dep in reversed(state.inputs) if dep.digest not in seen)
    return order
