"""Small helpers shared by the value types: read-only maps and field readers."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from dockyard.core import ContentError, Digest

__all__ = [
    "EMPTY_MAP",
    "Reader",
    "empty_map",
    "frozen_map",
]

EMPTY_MAP: Mapping[str, str] = MappingProxyType({})


def empty_map() -> Mapping[str, str]:
    """``default_factory`` for map fields of frozen values."""
    return EMPTY_MAP


def frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of ``value`` with keys in sorted order (Go sorts map keys)."""
    if not value:
        return EMPTY_MAP
    if isinstance(value, MappingProxyType) and list(value) == sorted(value):
        return value
    return MappingProxyType({k: value[k] for k in sorted(value)})


class Reader:
    """Typed access to the fields of one JSON object, with errors naming the document."""

    __slots__ = ("obj", "what")

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise ContentError(f"invalid {what}: expected a JSON object")
        self.obj: dict[str, Any] = obj
        self.what = what

    def fail(self, message: str) -> ContentError:
        return ContentError(f"invalid {self.what}: {message}")

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def text(self, key: str, default: str = "") -> str:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{key!r} must be a string")
        return value

    def required_text(self, key: str) -> str:
        if self.obj.get(key) is None:
            raise self.fail(f"{key!r} is missing")
        return self.text(key)

    def integer(self, key: str, default: int = 0) -> int:
        value = self.obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key!r} must be an integer")
        return value

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(f"{key!r} must be a boolean")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{key!r} must be a list of strings")
        return tuple(value)

    def text_map(self, key: str) -> Mapping[str, str]:
        value = self.obj.get(key)
        if value is None:
            return EMPTY_MAP
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.fail(f"{key!r} must be an object of strings")
        return frozen_map(value)

    def key_set(self, key: str) -> tuple[str, ...]:
        """A Go ``map[string]struct{}`` (``{"80/tcp": {}}``) as sorted keys."""
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail(f"{key!r} must be an object")
        return tuple(sorted(value))

    def digest(self, key: str) -> Digest:
        text = self.required_text(key)
        try:
            return Digest.parse(text)
        except ValueError as exc:
            raise self.fail(f"{key!r}: {exc}") from exc

    def items(self, key: str) -> list[Any]:
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{key!r} must be a list")
        return value

    def child(self, key: str) -> Any:
        value = self.obj.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(f"{key!r} must be an object")
        return value
