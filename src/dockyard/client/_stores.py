"""A daemon build's OCI layouts on this host, offered as content stores of its session:
``--cache-to type=local,dest=DIR`` (writable), ``--cache-from type=local,src=DIR`` and
``--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`` (read-only).

The daemon never sees a path: each layout becomes a store id, and a tag is resolved
here, from the layout's own ``index.json``, into the digest the daemon is sent
(BuildKit's client does the same: ``--cache-from`` gets the manifest's digest, a named
context ``oci-layout://STORE@DIGEST``). For ``--cache-to`` the daemon sends the blobs
into the store and asks the client to name the cache manifest with the tag given here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import BuildWarning, DockyardError, Reporter, UsageError

if TYPE_CHECKING:
    from dockyard.session import LayoutStore

    from ._job import Job
    from ._options import CacheSpec

__all__ = ["OCI_LAYOUT", "ClientStores", "absolute_layout", "client_stores", "split_layout"]

OCI_LAYOUT = "oci-layout://"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStores:
    """``job`` as a daemon takes it (local caches and OCI layout contexts naming store
    ids and digests) and the content ``stores`` its session offers."""

    job: Job
    stores: Mapping[str, LayoutStore]


def split_layout(value: str) -> tuple[str, str, str]:
    """``PATH[:TAG][@DIGEST]`` → ``(path, tag, digest)`` (as the Dockerfile frontend
    splits it: a ``:`` followed by no ``/`` starts the tag)."""
    path, _, digest = value.partition("@")
    tag = ""
    head, colon, tail = path.rpartition(":")
    if colon and "/" not in tail:
        path, tag = head, tail
    return path, tag, digest


def absolute_layout(value: str) -> str:
    """``oci-layout://PATH...`` with a relative ``PATH`` made absolute (relative to the
    working directory, as buildx); other values as they are."""
    if not value.startswith(OCI_LAYOUT):
        return value
    rest = value.removeprefix(OCI_LAYOUT)
    path, tag, digest = split_layout(rest)
    if not path or path.startswith("/"):
        return value
    out = OCI_LAYOUT + str(Path(path).absolute())
    if tag:
        out += ":" + tag
    if digest:
        out += "@" + digest
    return out


async def client_stores(job: Job, reporter: Reporter) -> ClientStores:
    """See the module docstring. A ``--cache-from`` layout that cannot be read is a
    warning (the build goes on without it, as on the embedded engine); an OCI layout
    context that cannot be resolved is a :class:`~dockyard.core.DockyardError` naming
    ``--build-context``."""

    stores: dict[str, LayoutStore] = {}
    cache_to: list[CacheSpec] = []
    for index, spec in enumerate(job.cache_to):
        if spec.type != "local":
            cache_to.append(spec)
            continue
        id = f"cache-to-{index}"
        stores[id] = _cache_to_store(spec)
        attrs = {k: v for k, v in spec.attrs.items() if k not in ("dest", "tag")}
        cache_to.append(dataclasses.replace(spec, attrs={**attrs, "store": id}))
    cache_from: list[CacheSpec] = []
    for index, spec in enumerate(job.cache_from):
        if spec.type != "local":
            cache_from.append(spec)
            continue
        id = f"cache-from-{index}"
        try:
            store, digest = await asyncio.to_thread(_cache_from_store, spec)
        except DockyardError as exc:
            reporter.emit(
                BuildWarning(short=f"--cache-from {spec.text}: {exc.message}; building without it")
            )
            continue
        stores[id] = store
        cache_from.append(dataclasses.replace(spec, attrs={"store": id, "digest": digest}))
    changes: dict[str, object] = {"cache_to": tuple(cache_to), "cache_from": tuple(cache_from)}
    options = job.frontend_options
    named: Mapping[str, str] | None = getattr(options, "named_contexts", None)
    if named and any(v.startswith(OCI_LAYOUT) for v in named.values()):
        rewritten: dict[str, str] = {}
        for name, value in named.items():
            if not value.startswith(OCI_LAYOUT):
                rewritten[name] = value
                continue
            id = "context-" + hashlib.sha256(name.encode()).hexdigest()[:16]
            store, digest = await asyncio.to_thread(_context_store, name, value)
            stores[id] = store
            rewritten[name] = f"{OCI_LAYOUT}{id}@{digest}"
        changes["frontend_options"] = dataclasses.replace(options, named_contexts=rewritten)  # type: ignore[type-var]
    return ClientStores(job=dataclasses.replace(job, **changes), stores=stores)  # type: ignore[arg-type]


def _cache_to_store(spec: CacheSpec) -> LayoutStore:
    from dockyard.session import LayoutStore

    path = Path(spec.attrs["dest"]).absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--cache-to {spec.text}: {path} is not a directory")
    try:
        return LayoutStore(path=path, writable=True, tag=spec.attrs.get("tag") or "latest")
    except UsageError as exc:
        raise UsageError(f"--cache-to {spec.text}: {exc.message}") from None


def _cache_from_store(spec: CacheSpec) -> tuple[LayoutStore, str]:
    """The layout of a ``--cache-from type=local`` and the manifest to import (its
    ``digest=``, else the one tagged ``tag=``, ``latest`` by default)."""
    from dockyard.session import LayoutStore, blob_digest

    path = Path(spec.attrs["src"]).absolute()
    if not path.is_dir():
        raise DockyardError(f"cache directory {path} does not exist")
    store = LayoutStore(path=path, tag=spec.attrs.get("tag") or "latest")
    digest = spec.attrs.get("digest")
    if digest:
        return store, blob_digest(digest)
    return store, store.resolve().digest


def _context_store(name: str, value: str) -> tuple[LayoutStore, str]:
    from dockyard.session import LayoutStore, blob_digest

    flag = f"--build-context {name}={value}"
    path_text, tag, digest = split_layout(value.removeprefix(OCI_LAYOUT))
    if not path_text:
        raise UsageError(f"{flag}: names no OCI layout directory")
    path = Path(path_text).absolute()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise UsageError(
            f"{flag}: {path} {what} (a daemon reads OCI layout directories of this host "
            "through the session)"
        )
    try:
        store = LayoutStore(path=path, tag=tag or "latest")
        if digest:
            return store, blob_digest(digest)
        return store, store.resolve().digest
    except DockyardError as exc:
        exc.message = f"{flag}: {exc.message}"
        raise
