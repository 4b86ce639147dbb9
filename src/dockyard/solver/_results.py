"""Reference-counted handles on results."""

from __future__ import annotations

from dockyard.core import InternalError

from .types import Result

__all__ = ["ResultRef"]


class _Shared:
    __slots__ = ("refs", "result")

    def __init__(self, result: Result) -> None:
        self.result = result
        self.refs = 1


class ResultRef:
    """A counted handle on a :class:`Result`; implements the Result protocol itself.

    Every handle is released exactly once (:meth:`release` is idempotent per handle);
    :meth:`clone` makes another handle on the same result. The underlying result's own
    ``release()`` runs when the last handle goes. ``value`` is the underlying result
    (the object an op returned or storage loaded), valid until this handle is released.

    ``cache_key`` is the canonical key the result was recorded under and ``cached`` says
    whether it was loaded from the cache rather than made by running the op (in this
    solver's lifetime).
    """

    __slots__ = ("_released", "_shared", "cache_key", "cached")

    def __init__(self, shared: _Shared, *, cache_key: str, cached: bool) -> None:
        self._shared = shared
        self._released = False
        self.cache_key = cache_key
        self.cached = cached

    @classmethod
    def adopt(cls, result: Result, *, cache_key: str = "", cached: bool = False) -> ResultRef:
        """Take ownership of ``result``: the returned handle is its only reference."""
        return cls(_Shared(result), cache_key=cache_key, cached=cached)

    @property
    def id(self) -> str:
        return self._shared.result.id

    @property
    def value(self) -> Result:
        if self._released:
            raise InternalError(f"result {self._shared.result.id} used after release")
        return self._shared.result

    @property
    def released(self) -> bool:
        return self._released

    def clone(self) -> ResultRef:
        """Another handle on the same result; the caller owns it."""
        if self._released:
            raise InternalError(f"result {self._shared.result.id} cloned after release")
        self._shared.refs += 1
        return ResultRef(self._shared, cache_key=self.cache_key, cached=self.cached)

    async def release(self) -> None:
        """Give this handle up; the last handle releases the underlying result."""
        if self._released:
            return
        self._released = True
        shared = self._shared
        shared.refs -= 1
        if shared.refs == 0:
            await shared.result.release()

    def __repr__(self) -> str:
        state = " released" if self._released else ""
        return f"<ResultRef {self._shared.result.id}{state}>"
