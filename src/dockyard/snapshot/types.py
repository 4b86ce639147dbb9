"""The snapshot seam: mount specs and the Snapshotter protocol (containerd's shape).

A snapshot is a directory tree identified by a key. ``prepare`` makes a writable
(*active*) snapshot on top of a committed parent, ``view`` a read-only one, ``commit``
turns an active snapshot into a committed one under a new name. Snapshotters return
*mount specs*, never mounted paths: whoever needs the files mounts them (the executor for a
container's rootfs, file ops and exporters through :mod:`dockyard.snapshot.mount`) and
unmounts them when done, so no mount outlives its user.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from dockyard.core import Digest

__all__ = ["Info", "Kind", "LayerDiffer", "LayerResult", "Mount", "Snapshotter", "Usage"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One mount(2) call: ``type`` (``overlay``, ``bind``, ``tmpfs``), ``source`` and options.

    Bind mounts use ``type="bind"`` and options such as ``rbind``, ``ro``. Overlay mounts
    carry ``lowerdir=``, ``upperdir=``, ``workdir=`` options; lowerdir lists may be longer
    than one page — the mount helper copes with that, callers need not.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()

    @property
    def readonly(self) -> bool:
        return "ro" in self.options


class Kind(enum.Enum):
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    key: str
    kind: Kind
    parent: str | None = None
    created: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """Disk space owned by one snapshot alone (not its parents)."""

    size: int = 0
    inodes: int = 0


class Snapshotter(Protocol):
    """Copy-on-write directory trees. Keys are caller-chosen unique names.

    Errors: an unknown key or parent raises ``NotFoundError``; a key in use raises
    ``DockyardError``. All methods are safe to call concurrently for different keys.
    """

    name: str

    async def stat(self, key: str) -> Info: ...

    async def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        """Create an active (writable) snapshot on top of committed ``parent``."""
        ...

    async def view(self, key: str, parent: str | None = None) -> list[Mount]:
        """Create a read-only view of committed ``parent``."""
        ...

    async def mounts(self, key: str) -> list[Mount]:
        """The mounts of an existing active snapshot or view."""
        ...

    async def commit(self, name: str, key: str) -> None:
        """Turn active snapshot ``key`` into committed snapshot ``name`` (``key`` is gone)."""
        ...

    async def remove(self, key: str) -> None:
        """Remove a snapshot that no other snapshot has as parent."""
        ...

    async def usage(self, key: str) -> Usage: ...

    def walk(self) -> AsyncIterator[Info]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerResult:
    """The digest (``diff_id``) and size of an uncompressed layer tar stream."""

    diff_id: Digest
    size: int


class LayerDiffer(Protocol):
    """Layer tars in and out of snapshots (both built-in snapshotters implement it).

    Both methods block only a worker thread; ``out`` and ``stream`` are blocking binary
    files that are written/read from that thread (wrap compressors around them).
    """

    async def diff(self, key: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerResult:
        """Write the changes of snapshot ``key`` (active or committed) against its parent
        as an uncompressed tar with OCI whiteouts, in a deterministic order; every
        timestamp is capped at ``clamp_mtime`` when given."""
        ...

    async def apply(self, key: str, stream: BinaryIO) -> LayerResult:
        """Extract an uncompressed layer tar into active snapshot ``key``; no entry can
        write outside it. The stream is read to its end."""
        ...
