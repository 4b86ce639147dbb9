"""File indexes: what a committed tree holds, entry by entry, with its checksum nodes.

A :class:`FileIndex` maps each path of a tree (relative, ``/``-separated; ``""`` is the
root) to

- ``meta``: the entry's metadata as the file sync that wrote it sent it
  (:data:`EntryMeta`: mode, uid, gid, size, mtime in ns, link target, device numbers) — the
  next sync of the same directory compares against it instead of looking at files;
- ``nodes``: its content-checksum node, exactly as :mod:`dockyard.cache._checksum`
  computes it for the tree (with xattrs), so ``checksum(ref, path)`` of a plain path is
  a lookup; ``heads``: each directory's header bytes (mode, owner, xattrs).

:func:`index_tree` reads a whole tree once; :func:`update_index` makes the index of a
new layer from its parent's: only the entries a sync changed are read (from the layer's
own directory, without a mount), deleted ones are dropped, and the directories above
them are recomputed from their children's nodes.

Stored per record (``cache_indexes``) as a :mod:`marshal` blob of columns — a full index,
or the changes against the parent record's index for at most :data:`MAX_DELTAS` layers in
a row. The state directory is trusted (root's, ``0700``): marshal is only ever given the
bytes this module wrote.

Blocking: call the builders from a worker thread.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from dockyard.core import ContentError, Digest, DockyardError, NotFoundError
from dockyard.core.fspath import MAX_SYMLINKS, contains_wildcards

from ._checksum import Selector, _lp, _Walker

__all__ = [
    "MAX_DELTAS",
    "EntryMeta",
    "FileIndex",
    "IndexBuild",
    "decode_index",
    "encode_index",
    "index_tree",
    "update_index",
]

EntryMeta = tuple[int, int, int, int, int, str, int, int]
"""An entry's metadata: ``(mode, uid, gid, size, mtime_ns, linkname, devmajor, devminor)``
(the file sync's ``StatKey``)."""

MAX_DELTAS = 16
"""Layers in a row stored as changes against their parent before a full index."""

_VERSION = 1


class FileIndex:
    """The entries of one tree (see the module docstring). Treat as read-only.

    ``depth``/``touched``/``removed`` describe how it was made from its parent's index
    (for delta storage): ``touched`` paths got new values, ``removed`` paths are gone;
    ``depth`` counts the deltas since the last full index (0: made from nothing).
    """

    __slots__ = ("depth", "heads", "meta", "nodes", "removed", "touched")

    def __init__(
        self,
        meta: dict[str, EntryMeta],
        nodes: dict[str, bytes],
        heads: dict[str, bytes],
        *,
        touched: frozenset[str] = frozenset(),
        removed: frozenset[str] = frozenset(),
        depth: int = 0,
    ) -> None:
        self.meta = meta
        self.nodes = nodes
        self.heads = heads
        self.touched = touched
        self.removed = removed
        self.depth = depth

    @property
    def digest(self) -> Digest:
        """The content checksum of the whole tree (``checksum(ref, "/")``)."""
        return Digest("sha256:" + self.nodes[""].hex())

    def answers(self, sel: Selector) -> bool:
        """Whether :meth:`checksum` can answer ``sel`` (a plain path, with xattrs)."""
        return (
            sel.xattrs
            and not sel.include_patterns
            and not sel.exclude_patterns
            and not (sel.wildcard and contains_wildcards(sel.path))
        )

    def checksum(self, sel: Selector) -> Digest:
        """The digest ``compute_checksum`` gives for ``sel`` on this tree (see
        :meth:`answers`). Raises :class:`NotFoundError` when the path does not exist."""
        rel = self.resolve(sel.path, follow_final=sel.follow_links)
        if rel is None:
            raise NotFoundError(f"{sel.path!r} not found")
        return Digest("sha256:" + self.nodes[rel].hex())

    def resolve(self, path: str, *, follow_final: bool) -> str | None:
        """``path`` resolved inside the tree like ``resolve_in_root`` (symlinks stay in
        it, ``..`` stops at the root): the relative path of the entry, or ``None``."""
        normalized = os.path.normpath("/" + path.lstrip("/"))
        pending = [p for p in normalized.split("/") if p and p != "."]
        pending.reverse()
        done: list[str] = []
        links = 0
        missing = False
        meta = self.meta
        while pending:
            part = pending.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            if missing or (not pending and not follow_final):
                done.append(part)
                continue
            entry = meta.get("/".join((*done, part)))
            if entry is None:
                missing = True
                done.append(part)
                continue
            if stat.S_ISLNK(entry[0]):
                links += 1
                if links > MAX_SYMLINKS:
                    raise DockyardError(f"too many levels of symbolic links resolving {path!r}")
                target = entry[5]
                if target.startswith("/"):
                    done = []
                new = [p for p in target.split("/") if p and p != "."]
                new.reverse()
                pending.extend(new)
                continue
            done.append(part)
        rel = "/".join(done)
        return rel if rel == "" or rel in meta else None


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexBuild:
    """An index and what reading the tree for it cost."""

    index: FileIndex
    files_hashed: int
    bytes_hashed: int


def index_tree(
    root: str,
    meta: dict[str, EntryMeta],
    known: Mapping[str, tuple[int, bytes]] | None = None,
) -> IndexBuild:
    """The index of the whole tree at ``root`` (every file read once, but those in
    ``known``: ``(size, content sha256)`` by path, from whoever wrote them, used while
    the file has that size)."""
    nodes: dict[str, bytes] = {}
    heads: dict[str, bytes] = {}
    walker = _Walker(root, Selector(path="/"), None, nodes=nodes, heads=heads, known=known)
    walker.run()
    return IndexBuild(
        index=FileIndex(meta, nodes, heads),
        files_hashed=walker.files,
        bytes_hashed=walker.bytes,
    )


def _ancestors(path: str) -> Iterable[str]:
    while path:
        path = path.rpartition("/")[0]
        yield path


def update_index(
    base: FileIndex,
    layer: str,
    changes: Mapping[str, EntryMeta],
    written: Collection[str],
    deleted: Iterable[str],
    known: Mapping[str, tuple[int, bytes]] | None = None,
) -> IndexBuild:
    """The index of a tree made from ``base``'s by a sync that wrote the entries
    ``written`` into ``layer`` — an overlayfs upper directory over ``base``'s tree, or a
    full copy of it — and deleted ``deleted`` (listing everything below a deleted
    directory too). ``changes`` has the new metadata of every written entry and of any
    other entry whose metadata differs from ``base``'s (those keep their nodes).
    ``known`` as for :func:`index_tree`."""
    meta = dict(base.meta)
    nodes = dict(base.nodes)
    heads = dict(base.heads)
    removed: set[str] = set()
    for path in deleted:
        if path in changes:
            continue  # deleted, then made again (as something else)
        removed.add(path)
        meta.pop(path, None)
        nodes.pop(path, None)
        heads.pop(path, None)
    meta.update(changes)
    walker = _Walker(layer, Selector(path="/"), None, known=known)
    dirs: set[str] = set()
    for path in written:
        if path not in changes:
            raise ContentError(f"file index: no metadata for the written entry {path!r}")
        host = os.path.join(walker.root, path)
        st = os.lstat(host)
        if stat.S_ISDIR(st.st_mode):
            dirs.add(path)
        else:
            heads.pop(path, None)
            nodes[path] = walker._entry(host, path, st)
    for path in (*written, *removed):
        for parent in _ancestors(path):
            if parent in dirs:
                break  # and its ancestors are in already
            if parent == "" or (parent in meta and stat.S_ISDIR(meta[parent][0])):
                dirs.add(parent)
    for path in dirs:
        host = os.path.join(walker.root, path) if path else walker.root
        heads[path] = walker._header(host, os.lstat(host), b"")
    kids: dict[str, list[str]] = {d: [] for d in dirs}
    for path in meta:
        parent, _, name = path.rpartition("/")
        names = kids.get(parent)
        if names is not None:
            names.append(name)
    for path in sorted(dirs, key=lambda p: p.count("/") + (1 if p else 0), reverse=True):
        h = hashlib.sha256(b"D" + heads[path])
        prefix = path + "/" if path else ""
        for name in sorted(kids[path], key=os.fsencode):
            h.update(_lp(os.fsencode(name)) + nodes[prefix + name])
        nodes[path] = h.digest()
    return IndexBuild(
        index=FileIndex(
            meta,
            nodes,
            heads,
            touched=frozenset(changes) | dirs,
            removed=frozenset(removed),
            depth=base.depth + 1,
        ),
        files_hashed=walker.files,
        bytes_hashed=walker.bytes,
    )


# -- storage ---------------------------------------------------------------------------------
def encode_index(index: FileIndex, *, delta: bool) -> bytes:
    """The blob kept for ``index``: its changes against its parent with ``delta``, else
    every entry."""
    if delta:
        paths = sorted(index.touched)
        removed = sorted(index.removed)
        depth = index.depth
    else:
        paths = sorted(index.nodes)
        removed = []
        depth = 0
    meta = index.meta
    nodes = index.nodes
    heads = index.heads
    rows = [meta.get(p) for p in paths]
    columns = (
        _VERSION,
        delta,
        depth,
        paths,
        [p in meta for p in paths],
        [r[0] if r else 0 for r in rows],
        [r[1] if r else 0 for r in rows],
        [r[2] if r else 0 for r in rows],
        [r[3] if r else 0 for r in rows],
        [r[4] if r else 0 for r in rows],
        [r[5] if r else "" for r in rows],
        [r[6] if r else 0 for r in rows],
        [r[7] if r else 0 for r in rows],
        [nodes[p] for p in paths],
        [heads.get(p, b"") for p in paths],
        removed,
    )
    return marshal.dumps(columns)


def decode_index(data: bytes, parent: FileIndex | None) -> FileIndex:
    """The index a blob of :func:`encode_index` holds; a delta needs its ``parent``'s
    index. Raises :class:`ContentError` for a blob it cannot read."""
    try:
        columns = marshal.loads(data)
        version, delta, depth, paths, has_meta, *fields, nodes, heads, removed = columns
    except (ValueError, EOFError, TypeError) as exc:
        raise ContentError(f"unreadable file index: {exc}") from exc
    if version != _VERSION:
        raise ContentError(f"file index of version {version} (this Dockyard reads {_VERSION})")
    if delta:
        if parent is None:
            raise ContentError("file index: a delta without its parent's index")
        meta = dict(parent.meta)
        all_nodes = dict(parent.nodes)
        all_heads = dict(parent.heads)
        for path in removed:
            meta.pop(path, None)
            all_nodes.pop(path, None)
            all_heads.pop(path, None)
    else:
        meta, all_nodes, all_heads = {}, {}, {}
    rows: Mapping[str, EntryMeta] = {
        p: row
        for p, has, row in zip(paths, has_meta, zip(*fields, strict=True), strict=True)
        if has
    }
    meta.update(rows)
    all_nodes.update(zip(paths, nodes, strict=True))
    all_heads.update((p, h) for p, h in zip(paths, heads, strict=True) if h)
    return FileIndex(
        meta,
        all_nodes,
        all_heads,
        touched=frozenset(paths) if delta else frozenset(),
        removed=frozenset(removed),
        depth=int(depth),
    )
