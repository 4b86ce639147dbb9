"""Values of the cache seam: record types, cache-mount sharing, usage records and filters,
layer blob info, statistics.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.core import Digest, UsageError

__all__ = [
    "CacheStatistics",
    "LayerBlob",
    "RecordType",
    "Sharing",
    "UsageFilter",
    "UsageRecord",
]


class RecordType(enum.Enum):
    """What made a record (BuildKit's usage record types); ``du`` and ``prune`` filter
    by it, and ``prune`` without ``all`` keeps ``internal`` and ``frontend`` records."""

    REGULAR = "regular"
    SOURCE_LOCAL = "source.local"
    SOURCE_IMAGE = "source.image"
    SOURCE_GIT = "source.git"
    EXEC_CACHEMOUNT = "exec.cachemount"
    FRONTEND = "frontend"
    INTERNAL = "internal"

    @classmethod
    def parse(cls, value: str) -> RecordType:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise UsageError(f"unknown cache record type {value!r} (expected {known})") from None


class Sharing(enum.Enum):
    """How concurrent users of one cache mount id share it (``RUN --mount=type=cache``).

    ``shared``: all use the same directory at once. ``private``: a user that finds it in
    use gets another directory (kept too, for later users). ``locked``: a user waits until
    the one before it is done.
    """

    SHARED = "shared"
    PRIVATE = "private"
    LOCKED = "locked"

    @classmethod
    def parse(cls, value: str) -> Sharing:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(
                f"unknown cache sharing mode {value!r} (expected shared, private or locked)"
            ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """One record as ``du`` and ``prune`` report it.

    ``size`` is the disk space the record's snapshot owns alone (not its parents');
    ``in_use`` means a live handle holds it; ``shared`` means other records are built on
    it (as parent, merge input or diff input), so removing it alone frees nothing.
    ``last_used`` is ``None`` for a record never handed out after it was made.
    """

    id: str
    size: int
    record_type: RecordType
    mutable: bool
    in_use: bool
    shared: bool
    created: float
    last_used: float | None
    usage_count: int
    description: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageFilter:
    """Which records ``du``/``prune`` consider; every given criterion must hold.

    ``types``: any of these record types (empty: all). ``ids``: the id starts with one of
    these prefixes (empty: all). ``description``: a substring of the description.
    ``mutable``/``in_use``: the flag has this value (``None``: either).
    """

    types: frozenset[RecordType] = frozenset()
    ids: tuple[str, ...] = ()
    description: str = ""
    mutable: bool | None = None
    in_use: bool | None = None

    @classmethod
    def parse(cls, filters: Iterable[str]) -> UsageFilter:
        """``key=value`` strings as ``docker builder prune --filter`` takes them:
        ``type=``, ``id=``, ``description=``, ``mutable=``, ``inuse=`` (repeat ``type``
        and ``id`` for several)."""
        types: set[RecordType] = set()
        ids: list[str] = []
        description = ""
        flags: dict[str, bool] = {}
        for item in filters:
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep or not value:
                raise UsageError(f"invalid filter {item!r} (expected key=value)")
            if key == "type":
                types.add(RecordType.parse(value))
            elif key == "id":
                ids.append(value)
            elif key == "description":
                description = value
            elif key in ("mutable", "inuse", "in_use"):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise UsageError(f"invalid filter {item!r}: expected true or false")
                flags["in_use" if key != "mutable" else "mutable"] = value.lower() in ("true", "1")
            else:
                raise UsageError(
                    f"unknown filter {key!r} (expected type, id, description, mutable, inuse)"
                )
        return cls(
            types=frozenset(types),
            ids=tuple(ids),
            description=description,
            mutable=flags.get("mutable"),
            in_use=flags.get("in_use"),
        )

    def matches(self, record: UsageRecord) -> bool:
        if self.types and record.record_type not in self.types:
            return False
        if self.ids and not any(record.id.startswith(p) for p in self.ids):
            return False
        if self.description and self.description not in record.description:
            return False
        if self.mutable is not None and record.mutable != self.mutable:
            return False
        return self.in_use is None or record.in_use == self.in_use


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerBlob:
    """A compressed layer blob made from one record's layer, remembered so that an
    unchanged layer is never compressed (or pushed) twice.

    ``variant`` names everything that changes the blob's bytes: the compression and its
    level, a clamped timestamp (``gzip``, ``zstd-3``, ``gzip;epoch=1700000000``...).
    ``diff_id`` is the digest of the uncompressed tar, ``digest`` and ``size`` those of
    the blob in the content store, ``media_type`` its OCI or Docker media type.
    ``annotations`` go on the blob's descriptor in an OCI manifest (an eStargz blob's
    TOC digest and uncompressed size), sorted by key.
    """

    variant: str
    diff_id: Digest
    digest: Digest
    media_type: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStatistics:
    """Counters since the manager was opened (``CacheManager.statistics()``).

    ``files_hashed``/``bytes_hashed``: file contents read by checksums (a stat-cache or
    checksum-cache hit reads nothing). ``checksum_hits``: checksums answered from the
    per-record cache without walking the tree.
    """

    records: int
    in_use: int
    files_hashed: int
    bytes_hashed: int
    checksum_hits: int
    checksum_misses: int
