"""Frontends by name: the engine registers them where it is assembled."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from dockyard.core import NotFoundError, UsageError

from .types import Frontend, FrontendContext, FrontendResult

__all__ = ["Frontends", "LazyFrontend"]


class LazyFrontend:
    """A :class:`~dockyard.frontend.types.Frontend` made by ``factory`` on first use, so
    that registering it costs nothing (the Dockerfile frontend imports the whole
    converter)."""

    __slots__ = ("_factory", "_frontend")

    def __init__(self, factory: Callable[[], Frontend]) -> None:
        self._factory = factory
        self._frontend: Frontend | None = None

    @property
    def frontend(self) -> Frontend:
        if self._frontend is None:
            self._frontend = self._factory()
        return self._frontend

    def parse_options(self, attrs: Mapping[str, str]) -> object:
        return self.frontend.parse_options(attrs)

    async def solve(self, ctx: FrontendContext, options: object) -> FrontendResult:
        return await self.frontend.solve(ctx, options)


class Frontends:
    """A registry of :class:`~dockyard.frontend.types.Frontend` objects by name
    (``dockerfile.v0``, ``python``). Names are case-sensitive, as in BuildKit."""

    __slots__ = ("_by_name",)

    def __init__(self, frontends: dict[str, Frontend] | None = None) -> None:
        self._by_name: dict[str, Frontend] = {}
        for name, frontend in (frontends or {}).items():
            self.register(name, frontend)

    def register(self, name: str, frontend: Frontend) -> None:
        """Add ``frontend`` as ``name``; a name is registered once."""
        if not name or any(c.isspace() for c in name):
            raise UsageError(f"invalid frontend name {name!r}")
        if name in self._by_name:
            raise UsageError(f"a frontend named {name!r} is already registered")
        self._by_name[name] = frontend

    def get(self, name: str) -> Frontend:
        """The frontend ``name``; :class:`NotFoundError` naming the known ones if none."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise NotFoundError(f"unknown frontend {name!r} (this engine has: {known})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._by_name)
