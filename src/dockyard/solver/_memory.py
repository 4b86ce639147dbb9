"""An in-memory :class:`CacheKeyStorage` (for tests and for builds without a state dir)."""

from __future__ import annotations

from collections.abc import Sequence

from .types import CacheRecord

__all__ = ["InMemoryCacheKeyStorage"]


class InMemoryCacheKeyStorage:
    """Keys and records in dicts; forgets everything with the process.

    A record nobody points at any more is dropped when its last key is re-pointed.
    """

    __slots__ = ("_keys", "_records", "_users")

    def __init__(self) -> None:
        self._keys: dict[str, CacheRecord] = {}
        self._records: dict[str, CacheRecord] = {}
        self._users: dict[str, int] = {}

    async def lookup(self, key: str) -> CacheRecord | None:
        return self._keys.get(key)

    async def save(self, keys: Sequence[str], record: CacheRecord) -> None:
        if not keys:
            return
        stored = self._records.setdefault(record.id, record)
        self._users.setdefault(record.id, 0)
        for key in keys:
            old = self._keys.get(key)
            if old is not None and old.id == stored.id:
                continue
            self._keys[key] = stored
            self._users[stored.id] += 1
            if old is not None:
                self._users[old.id] -= 1
                if self._users[old.id] == 0:
                    del self._users[old.id]
                    del self._records[old.id]

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._keys)

    def records(self) -> list[CacheRecord]:
        """Every record, for inspection."""
        return list(self._records.values())
