"""A list that grows at its end only, shared between its branches (the stages of a
Dockerfile's chain, the environments of a line of LLB states)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Generic, TypeVar

__all__ = ["AppendLog"]

T = TypeVar("T")

# appending checks whether the log still owns the end of its list, then extends it:
# two threads appending to branches of one log must not both take the end
_LOCK = threading.Lock()


class AppendLog(Generic[T]):
    """A list of items that only grows at its end, whose :meth:`branch` es share its
    storage: a log is the first ``len(log)`` items of a list, and appends to that list
    in place while no other log has put items after them (else it copies its items
    once). A stage inherits its base stage's history and build arguments so in O(1), and
    a chain of N stages holds them once, not N copies of a growing list (quadratic time
    and memory). Appends to branches of one log may come from several threads."""

    __slots__ = ("_items", "_size")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = list(items)
        self._size = len(self._items)

    def branch(self) -> AppendLog[T]:
        """A log with the same items, whose appends leave this one as it is."""
        other: AppendLog[T] = AppendLog()
        other._items = self._items
        other._size = self._size
        return other

    def append(self, item: T) -> None:
        self.extend((item,))

    def extend(self, items: Iterable[T]) -> None:
        with _LOCK:
            if len(self._items) != self._size:
                self._items = self._items[: self._size]  # another log grew the list
            self._items.extend(items)
            self._size = len(self._items)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        return islice(self._items, self._size)

    def as_tuple(self) -> tuple[T, ...]:
        items = self._items
        return tuple(items) if len(items) == self._size else tuple(items[: self._size])
